"""Cards are numbered per pipe (AP-1, AP-2...): existing cards get their numbers in creation order,
and each pipe's counter starts after its last card."""

from django.db import migrations, models


def number_existing_cards(apps, schema_editor):
    Card = apps.get_model("pipes", "Card")
    Pipe = apps.get_model("pipes", "Pipe")
    for pipe in Pipe.objects.only("pk").iterator():
        number = 0
        batch = []
        for card in Card.objects.filter(pipe_id=pipe.pk).order_by("created_at", "id").only("pk").iterator():
            number += 1
            card.number = number
            batch.append(card)
            if len(batch) >= 1000:
                Card.objects.bulk_update(batch, ["number"])
                batch = []
        if batch:
            Card.objects.bulk_update(batch, ["number"])
        Pipe.objects.filter(pk=pipe.pk).update(last_card_number=number)


class Migration(migrations.Migration):
    dependencies = [
        ("pipes", "0006_card_submission_key"),
    ]

    operations = [
        migrations.AddField(
            model_name="card",
            name="number",
            field=models.PositiveIntegerField(blank=True, editable=False, null=True, verbose_name="number"),
        ),
        migrations.AddField(
            model_name="pipe",
            name="last_card_number",
            field=models.PositiveIntegerField(default=0, editable=False),
        ),
        migrations.RunPython(number_existing_cards, migrations.RunPython.noop),
        migrations.AddConstraint(
            model_name="card",
            constraint=models.UniqueConstraint(fields=("pipe", "number"), name="uniq_card_number"),
        ),
    ]
