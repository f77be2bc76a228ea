"""A card remembers the form submission that filed it, so a second post of the same form files no second card."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("pipes", "0005_sla_report_indexes"),
    ]

    operations = [
        migrations.AddField(
            model_name="card",
            name="submission_key",
            field=models.CharField(blank=True, max_length=64),
        ),
        migrations.AddConstraint(
            model_name="card",
            constraint=models.UniqueConstraint(
                condition=~models.Q(submission_key=""),
                fields=("pipe", "submission_key"),
                name="uniq_card_submission",
            ),
        ),
    ]
