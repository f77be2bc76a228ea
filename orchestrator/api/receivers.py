"""The API's subscriptions: a person's erasure (pipes.governance.person_erasing) reaches the answers
kept for Idempotency-Key repeats of the cards it touched."""

from __future__ import annotations

from django.dispatch import receiver

from pipes.governance import person_erasing

from .idempotency import idempotency_records_erase


@receiver(person_erasing, dispatch_uid="api.person_erasing")
def on_person_erasing(sender, card_ids: list[int], identifiers: list[str], **kwargs) -> None:
    idempotency_records_erase(card_ids=card_ids, identifiers=identifiers)
