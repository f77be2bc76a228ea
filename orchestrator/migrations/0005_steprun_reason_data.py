"""A step run's reason as data (codes and parameters) beside its English sentence; older runs keep only
the sentence, which pages still render (orchestrator.rail.reasons_prose). Adding a nullable column:
reversible, no data touched."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("orchestrator", "0004_api_tokens_idempotency"),
    ]

    operations = [
        migrations.AddField(
            model_name="steprun",
            name="reason_data",
            field=models.JSONField(
                blank=True,
                help_text="The reason as codes and parameters (orchestrator.rail.reasons); empty on older runs.",
                null=True,
            ),
        ),
    ]
