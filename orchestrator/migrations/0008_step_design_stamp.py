"""A step written changes its pipe's design stamp (pipes.designcache), like a phase or a field: the rail
keeps which phases have steps in the design cache, so a move into a phase without steps needs no query
to know it (pipes migration 0009 defines the stamp and its PostgreSQL functions)."""

from django.db import migrations

POSTGRES = """
CREATE TRIGGER trilho_design_stamp AFTER INSERT OR UPDATE OR DELETE ON orchestrator_step
    FOR EACH ROW EXECUTE FUNCTION trilho_design_phase_row_changed();
"""
POSTGRES_REVERSE = "DROP TRIGGER IF EXISTS trilho_design_stamp ON orchestrator_step;"

_BUMP = (
    "UPDATE pipes_designstamp SET version = random() "
    "WHERE pipe_id IN (SELECT pipe_id FROM pipes_phase WHERE id IN ({}))"
)
SQLITE = [
    "CREATE TRIGGER trilho_stamp_orchestrator_step_ins AFTER INSERT ON orchestrator_step "
    f"BEGIN {_BUMP.format('NEW.phase_id')}; END",
    "CREATE TRIGGER trilho_stamp_orchestrator_step_upd AFTER UPDATE ON orchestrator_step "
    f"BEGIN {_BUMP.format('OLD.phase_id, NEW.phase_id')}; END",
    "CREATE TRIGGER trilho_stamp_orchestrator_step_del AFTER DELETE ON orchestrator_step "
    f"BEGIN {_BUMP.format('OLD.phase_id')}; END",
]
SQLITE_REVERSE = [
    f"DROP TRIGGER IF EXISTS trilho_stamp_orchestrator_step_{op}" for op in ("ins", "upd", "del")
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
        ("orchestrator", "0007_email_outbox_heartbeat"),
        ("pipes", "0009_design_stamp"),
    ]

    operations = [migrations.RunPython(install, uninstall)]
