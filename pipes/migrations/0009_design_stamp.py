"""DesignStamp: a per-pipe value that database triggers change whenever the pipe's phases, fields or
transitions change, whoever writes them (pipes.designcache keys its cache on it)."""

import django.db.models.deletion
from django.db import migrations, models

POSTGRES = """
CREATE SEQUENCE trilho_design_stamp_seq;
INSERT INTO pipes_designstamp (pipe_id, version) SELECT id, nextval('trilho_design_stamp_seq') FROM pipes_pipe;
CREATE FUNCTION trilho_design_bump(pid bigint) RETURNS void LANGUAGE sql AS $$
    UPDATE pipes_designstamp SET version = nextval('trilho_design_stamp_seq') WHERE pipe_id = pid
$$;
CREATE FUNCTION trilho_pipe_created() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO pipes_designstamp (pipe_id, version) VALUES (NEW.id, nextval('trilho_design_stamp_seq'));
    RETURN NULL;
END $$;
CREATE TRIGGER trilho_pipe_created AFTER INSERT ON pipes_pipe
    FOR EACH ROW EXECUTE FUNCTION trilho_pipe_created();
-- A row of a table with a pipe_id column (phases, fields) was written: its pipe's design changed.
CREATE FUNCTION trilho_design_row_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'INSERT' THEN PERFORM trilho_design_bump(OLD.pipe_id); END IF;
    IF TG_OP = 'INSERT' OR (TG_OP = 'UPDATE' AND NEW.pipe_id IS DISTINCT FROM OLD.pipe_id) THEN
        PERFORM trilho_design_bump(NEW.pipe_id);
    END IF;
    RETURN NULL;
END $$;
-- A row of a table with a phase_id column (steps) was written: the design of the phase's pipe changed.
CREATE FUNCTION trilho_design_phase_row_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'INSERT' THEN
        PERFORM trilho_design_bump((SELECT pipe_id FROM pipes_phase WHERE id = OLD.phase_id));
    END IF;
    IF TG_OP = 'INSERT' OR (TG_OP = 'UPDATE' AND NEW.phase_id IS DISTINCT FROM OLD.phase_id) THEN
        PERFORM trilho_design_bump((SELECT pipe_id FROM pipes_phase WHERE id = NEW.phase_id));
    END IF;
    RETURN NULL;
END $$;
CREATE FUNCTION trilho_transition_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'INSERT' THEN
        PERFORM trilho_design_bump((SELECT pipe_id FROM pipes_phase WHERE id = OLD.from_phase_id));
    END IF;
    IF TG_OP <> 'DELETE' THEN
        PERFORM trilho_design_bump((SELECT pipe_id FROM pipes_phase WHERE id = NEW.from_phase_id));
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER trilho_design_stamp AFTER INSERT OR UPDATE OR DELETE ON pipes_phase
    FOR EACH ROW EXECUTE FUNCTION trilho_design_row_changed();
CREATE TRIGGER trilho_design_stamp AFTER INSERT OR UPDATE OR DELETE ON pipes_field
    FOR EACH ROW EXECUTE FUNCTION trilho_design_row_changed();
CREATE TRIGGER trilho_design_stamp AFTER INSERT OR UPDATE OR DELETE ON pipes_phase_allowed_next
    FOR EACH ROW EXECUTE FUNCTION trilho_transition_changed();
"""

POSTGRES_REVERSE = """
DROP TRIGGER IF EXISTS trilho_design_stamp ON pipes_phase_allowed_next;
DROP TRIGGER IF EXISTS trilho_design_stamp ON pipes_field;
DROP TRIGGER IF EXISTS trilho_design_stamp ON pipes_phase;
DROP TRIGGER IF EXISTS trilho_pipe_created ON pipes_pipe;
DROP FUNCTION IF EXISTS trilho_transition_changed();
DROP FUNCTION IF EXISTS trilho_design_phase_row_changed();
DROP FUNCTION IF EXISTS trilho_design_row_changed();
DROP FUNCTION IF EXISTS trilho_pipe_created();
DROP FUNCTION IF EXISTS trilho_design_bump(bigint);
DROP SEQUENCE IF EXISTS trilho_design_stamp_seq;
"""


def sqlite_row_triggers(table: str, column: str = "pipe_id") -> list[str]:
    """SQLite's triggers for one table whose `column` names a pipe (or, for "from_phase_id", a phase of
    one): random() changes the stamp (64 bits, never reused after a rollback)."""

    def pipes(*rows: str) -> str:
        ids = ", ".join(f"{row}.{column}" for row in rows)
        if column == "pipe_id":
            return ids
        return f"SELECT pipe_id FROM pipes_phase WHERE id IN ({ids})"

    bump = "UPDATE pipes_designstamp SET version = random() WHERE pipe_id IN ({})"
    return [
        f"CREATE TRIGGER trilho_stamp_{table}_ins AFTER INSERT ON {table} BEGIN {bump.format(pipes('NEW'))}; END",
        f"CREATE TRIGGER trilho_stamp_{table}_upd AFTER UPDATE ON {table} BEGIN "
        f"{bump.format(pipes('OLD', 'NEW'))}; END",
        f"CREATE TRIGGER trilho_stamp_{table}_del AFTER DELETE ON {table} BEGIN {bump.format(pipes('OLD'))}; END",
    ]


SQLITE = [
    "INSERT INTO pipes_designstamp (pipe_id, version) SELECT id, random() FROM pipes_pipe",
    "CREATE TRIGGER trilho_pipe_created AFTER INSERT ON pipes_pipe BEGIN "
    "INSERT INTO pipes_designstamp (pipe_id, version) VALUES (NEW.id, random()); END",
    *sqlite_row_triggers("pipes_phase"),
    *sqlite_row_triggers("pipes_field"),
    *sqlite_row_triggers("pipes_phase_allowed_next", "from_phase_id"),
]


def install(apps, schema_editor):
    connection = schema_editor.connection
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(POSTGRES)
        elif connection.vendor == "sqlite":
            for statement in SQLITE:
                cursor.execute(statement)
        else:  # pragma: no cover - Trilho runs on PostgreSQL or SQLite
            raise RuntimeError(f"design stamps need triggers written for {connection.vendor}")


def uninstall(apps, schema_editor):
    connection = schema_editor.connection
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(POSTGRES_REVERSE)
        elif connection.vendor == "sqlite":
            cursor.execute("SELECT name FROM sqlite_master WHERE type = 'trigger' AND name LIKE 'trilho_%'")
            for (name,) in cursor.fetchall():
                cursor.execute(f'DROP TRIGGER "{name}"')


class Migration(migrations.Migration):
    dependencies = [
        ("pipes", "0008_pipe_archived_at"),
    ]

    operations = [
        migrations.CreateModel(
            name="DesignStamp",
            fields=[
                (
                    "pipe",
                    models.OneToOneField(
                        on_delete=django.db.models.deletion.CASCADE,
                        primary_key=True,
                        related_name="+",
                        serialize=False,
                        to="pipes.pipe",
                    ),
                ),
                ("version", models.BigIntegerField(default=0)),
            ],
            options={
                "verbose_name": "design stamp",
                "verbose_name_plural": "design stamps",
            },
        ),
        migrations.RunPython(install, uninstall),
    ]
