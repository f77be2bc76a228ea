"""Indexes for the SLA report: stays by phase and end, finished cards by pipe and finish."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("pipes", "0004_event_kinds_late_expired"),
    ]

    operations = [
        migrations.AddIndex(
            model_name="card",
            index=models.Index(fields=["pipe", "finished_at", "created_at", "id"], name="card_finished_idx"),
        ),
        migrations.AddIndex(
            model_name="phaseentry",
            index=models.Index(
                fields=["phase", "left_at", "entered_at", "card"], name="entry_phase_left_idx"
            ),
        ),
    ]
