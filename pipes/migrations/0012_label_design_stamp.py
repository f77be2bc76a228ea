"""Label edits move the pipe's design stamp too: a board tile shows its labels' names and colours,
and tiles are kept rendered by the design stamp (pipes.board.views._tile_context)."""

from django.db import migrations

POSTGRES = """
CREATE TRIGGER trilho_design_stamp AFTER INSERT OR UPDATE OR DELETE ON pipes_label
    FOR EACH ROW EXECUTE FUNCTION trilho_design_row_changed();
"""

POSTGRES_REVERSE = "DROP TRIGGER IF EXISTS trilho_design_stamp ON pipes_label;"

BUMP = "UPDATE pipes_designstamp SET version = random() WHERE pipe_id IN ({})"
SQLITE = [
    f"CREATE TRIGGER trilho_stamp_pipes_label_ins AFTER INSERT ON pipes_label BEGIN {BUMP.format('NEW.pipe_id')}; END",
    f"CREATE TRIGGER trilho_stamp_pipes_label_upd AFTER UPDATE ON pipes_label BEGIN "
    f"{BUMP.format('OLD.pipe_id, NEW.pipe_id')}; END",
    f"CREATE TRIGGER trilho_stamp_pipes_label_del AFTER DELETE ON pipes_label BEGIN {BUMP.format('OLD.pipe_id')}; END",
]
SQLITE_REVERSE = [
    "DROP TRIGGER IF EXISTS trilho_stamp_pipes_label_ins",
    "DROP TRIGGER IF EXISTS trilho_stamp_pipes_label_upd",
    "DROP TRIGGER IF EXISTS trilho_stamp_pipes_label_del",
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
            for statement in SQLITE_REVERSE:
                cursor.execute(statement)


class Migration(migrations.Migration):
    dependencies = [
        ("pipes", "0011_card_search_trigram"),
    ]

    operations = [
        migrations.RunPython(install, uninstall),
    ]
