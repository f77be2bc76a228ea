"""Board search at scale on PostgreSQL: trigram indexes on a card's title and on its values as text,
which the board's search uses as a prefilter beside its exact condition (pipes.board.selectors). Other
databases search without them."""

from django.db import migrations

POSTGRES = [
    "CREATE EXTENSION IF NOT EXISTS pg_trgm",
    "CREATE INDEX IF NOT EXISTS card_title_trgm ON pipes_card USING gin ((UPPER(title::text)) gin_trgm_ops)",
    "CREATE INDEX IF NOT EXISTS card_values_trgm ON pipes_card USING gin ((UPPER(values::text)) gin_trgm_ops)",
]
POSTGRES_REVERSE = ["DROP INDEX IF EXISTS card_values_trgm", "DROP INDEX IF EXISTS card_title_trgm"]


def install(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        for statement in POSTGRES:
            schema_editor.execute(statement)


def uninstall(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        for statement in POSTGRES_REVERSE:
            schema_editor.execute(statement)


class Migration(migrations.Migration):
    dependencies = [("pipes", "0010_card_count_index")]

    operations = [migrations.RunPython(install, uninstall)]
