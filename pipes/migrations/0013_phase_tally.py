"""PhaseTally: each phase's number of cards, kept by triggers on PostgreSQL (SQLite counts the cards).

Inserts and deletes are tallied once per statement from their transition tables (a bulk insert of
100,000 cards updates each phase's row once); a move (an UPDATE that changes phase_id) once per card.
Every trigger locks the rows it changes in phase order first, so moves in opposite directions never
deadlock on them; TRUNCATE zeroes the tallies."""

import django.db.models.deletion
from django.db import migrations, models

POSTGRES = """
INSERT INTO pipes_phasetally (phase_id, cards)
    SELECT p.id, (SELECT COUNT(*) FROM pipes_card c WHERE c.phase_id = p.id) FROM pipes_phase p;

CREATE FUNCTION trilho_phase_tally_created() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO pipes_phasetally (phase_id, cards) VALUES (NEW.id, 0) ON CONFLICT (phase_id) DO NOTHING;
    RETURN NULL;
END $$;
CREATE TRIGGER trilho_phase_tally AFTER INSERT ON pipes_phase
    FOR EACH ROW EXECUTE FUNCTION trilho_phase_tally_created();

-- Add `n` cards to each phase of `phases` (their rows locked in phase order first).
CREATE FUNCTION trilho_phase_tally_add(phases bigint[], n bigint[]) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    PERFORM 1 FROM pipes_phasetally WHERE phase_id = ANY(phases) ORDER BY phase_id FOR UPDATE;
    UPDATE pipes_phasetally t SET cards = t.cards + d.n
        FROM unnest(phases, n) AS d(phase_id, n) WHERE t.phase_id = d.phase_id;
END $$;

CREATE FUNCTION trilho_cards_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM trilho_phase_tally_add(array_agg(phase_id), array_agg(n))
        FROM (SELECT phase_id, COUNT(*) AS n FROM new_cards GROUP BY phase_id) d;
    RETURN NULL;
END $$;
CREATE TRIGGER trilho_phase_tally_insert AFTER INSERT ON pipes_card
    REFERENCING NEW TABLE AS new_cards FOR EACH STATEMENT EXECUTE FUNCTION trilho_cards_inserted();

CREATE FUNCTION trilho_cards_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM trilho_phase_tally_add(array_agg(phase_id), array_agg(-n))
        FROM (SELECT phase_id, COUNT(*) AS n FROM old_cards GROUP BY phase_id) d;
    RETURN NULL;
END $$;
CREATE TRIGGER trilho_phase_tally_delete AFTER DELETE ON pipes_card
    REFERENCING OLD TABLE AS old_cards FOR EACH STATEMENT EXECUTE FUNCTION trilho_cards_deleted();

CREATE FUNCTION trilho_card_moved() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM trilho_phase_tally_add(ARRAY[OLD.phase_id, NEW.phase_id], ARRAY[-1, 1]::bigint[]);
    RETURN NULL;
END $$;
CREATE TRIGGER trilho_phase_tally_move AFTER UPDATE OF phase_id ON pipes_card
    FOR EACH ROW WHEN (OLD.phase_id IS DISTINCT FROM NEW.phase_id) EXECUTE FUNCTION trilho_card_moved();

CREATE FUNCTION trilho_cards_truncated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE pipes_phasetally SET cards = 0;
    RETURN NULL;
END $$;
CREATE TRIGGER trilho_phase_tally_truncate AFTER TRUNCATE ON pipes_card
    FOR EACH STATEMENT EXECUTE FUNCTION trilho_cards_truncated();
"""

POSTGRES_REVERSE = """
DROP TRIGGER IF EXISTS trilho_phase_tally_truncate ON pipes_card;
DROP TRIGGER IF EXISTS trilho_phase_tally_move ON pipes_card;
DROP TRIGGER IF EXISTS trilho_phase_tally_delete ON pipes_card;
DROP TRIGGER IF EXISTS trilho_phase_tally_insert ON pipes_card;
DROP TRIGGER IF EXISTS trilho_phase_tally ON pipes_phase;
DROP FUNCTION IF EXISTS trilho_cards_truncated();
DROP FUNCTION IF EXISTS trilho_card_moved();
DROP FUNCTION IF EXISTS trilho_cards_deleted();
DROP FUNCTION IF EXISTS trilho_cards_inserted();
DROP FUNCTION IF EXISTS trilho_phase_tally_add(bigint[], bigint[]);
DROP FUNCTION IF EXISTS trilho_phase_tally_created();
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
        ("pipes", "0012_label_design_stamp"),
    ]

    operations = [
        migrations.CreateModel(
            name="PhaseTally",
            fields=[
                (
                    "phase",
                    models.OneToOneField(
                        on_delete=django.db.models.deletion.CASCADE,
                        primary_key=True,
                        related_name="+",
                        serialize=False,
                        to="pipes.phase",
                    ),
                ),
                ("cards", models.BigIntegerField(default=0)),
            ],
            options={
                "verbose_name": "phase tally",
                "verbose_name_plural": "phase tallies",
            },
        ),
        migrations.RunPython(install, uninstall),
    ]
