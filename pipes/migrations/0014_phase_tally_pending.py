"""Phase tallies without a long chain of row versions in a transaction that writes many cards.

A transaction that changed a phase's tally row once (migration 0013) sends that phase's further
changes to `pipes_phasetally_pending` instead: PostgreSQL would otherwise keep every version of the
row the transaction made, and walk them all at each update (3,000 cards created in one transaction
took 13.9 s instead of 7.7). The pending rows are folded into the tally at commit (a deferred
constraint trigger: the first of them folds them all), so no other transaction ever sees them; a
reader in the same transaction adds them (pipes.board.selectors). Which phases a transaction touched
is kept in a transaction-local setting, which a rolled-back savepoint rolls back with its update."""

from django.db import migrations

POSTGRES = """
CREATE TABLE pipes_phasetally_pending (
    id bigserial PRIMARY KEY,
    xact xid8 NOT NULL DEFAULT pg_current_xact_id(),
    phase_id bigint NOT NULL,
    n bigint NOT NULL
);
CREATE INDEX pipes_phasetally_pending_xact ON pipes_phasetally_pending (xact);
CREATE INDEX pipes_phasetally_pending_phase ON pipes_phasetally_pending (phase_id);

CREATE OR REPLACE FUNCTION trilho_phase_tally_add(phases bigint[], n bigint[]) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    touched text := coalesce(current_setting('trilho.tally_touched', true), '');
    first_ids bigint[] := '{}';
    first_n bigint[] := '{}';
    i int;
BEGIN
    IF phases IS NULL THEN
        RETURN;
    END IF;
    FOR i IN 1 .. coalesce(array_length(phases, 1), 0) LOOP
        IF position(',' || phases[i] || ',' IN touched) > 0 THEN
            INSERT INTO pipes_phasetally_pending (phase_id, n) VALUES (phases[i], n[i]);
        ELSE
            first_ids := first_ids || phases[i];
            first_n := first_n || n[i];
            touched := touched || ',' || phases[i] || ',';
        END IF;
    END LOOP;
    IF array_length(first_ids, 1) IS NOT NULL THEN
        PERFORM 1 FROM pipes_phasetally WHERE phase_id = ANY(first_ids) ORDER BY phase_id FOR UPDATE;
        UPDATE pipes_phasetally t SET cards = t.cards + d.n
            FROM unnest(first_ids, first_n) AS d(phase_id, n) WHERE t.phase_id = d.phase_id;
        PERFORM set_config('trilho.tally_touched', touched, true);
    END IF;
END $$;

CREATE FUNCTION trilho_phase_tally_fold() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    WITH gone AS (
        DELETE FROM pipes_phasetally_pending WHERE xact = pg_current_xact_id() RETURNING phase_id, n
    )
    UPDATE pipes_phasetally t SET cards = t.cards + d.n
        FROM (SELECT phase_id, SUM(n) AS n FROM gone GROUP BY phase_id) d
        WHERE t.phase_id = d.phase_id;
    RETURN NULL;
END $$;
CREATE CONSTRAINT TRIGGER trilho_phase_tally_fold AFTER INSERT ON pipes_phasetally_pending
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION trilho_phase_tally_fold();

CREATE OR REPLACE FUNCTION trilho_cards_truncated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM pipes_phasetally_pending;
    UPDATE pipes_phasetally SET cards = 0;
    RETURN NULL;
END $$;
"""

POSTGRES_REVERSE = """
DROP TRIGGER IF EXISTS trilho_phase_tally_fold ON pipes_phasetally_pending;
DROP FUNCTION IF EXISTS trilho_phase_tally_fold();
DROP TABLE IF EXISTS pipes_phasetally_pending;
CREATE OR REPLACE FUNCTION trilho_phase_tally_add(phases bigint[], n bigint[]) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    PERFORM 1 FROM pipes_phasetally WHERE phase_id = ANY(phases) ORDER BY phase_id FOR UPDATE;
    UPDATE pipes_phasetally t SET cards = t.cards + d.n
        FROM unnest(phases, n) AS d(phase_id, n) WHERE t.phase_id = d.phase_id;
END $$;
CREATE OR REPLACE FUNCTION trilho_cards_truncated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE pipes_phasetally SET cards = 0;
    RETURN NULL;
END $$;
"""


def install(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        with schema_editor.connection.cursor() as cursor:
            cursor.execute(POSTGRES)


def uninstall(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        with schema_editor.connection.cursor() as cursor:
            cursor.execute(POSTGRES_REVERSE)


class Migration(migrations.Migration):
    dependencies = [
        ("pipes", "0013_phase_tally"),
    ]

    operations = [
        migrations.RunPython(install, uninstall),
    ]
