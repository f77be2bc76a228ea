"""The outbound webhooks' subscriptions, each inside the transaction of its fact (so the outbox row
commits or rolls back with it): pipes' timeline events (pipes.hooks.card_event_recorded), a review
task decided and a step run failed (the rail's rows, as the inbox subscribes to them); and a person's
erasure (pipes.governance.person_erasing), which reaches the deliveries of the cards it touched."""

from __future__ import annotations

from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from orchestrator.models import OutboundWebhook, ReviewStatus, ReviewTask, RunStatus, StepRun, WebhookEvent
from pipes.choices import EventKind
from pipes.governance import person_erasing
from pipes.hooks import card_event_recorded
from pipes.models import Card, CardEvent

from .outbound import deliveries_erase, events_record, forget_active_hooks

# timeline event kind -> webhook event
CARD_EVENTS = {
    EventKind.CREATED: WebhookEvent.CARD_CREATED,
    EventKind.MOVED: WebhookEvent.CARD_MOVED,
    EventKind.FIELDS_CHANGED: WebhookEvent.CARD_FIELDS_UPDATED,
    EventKind.LATE: WebhookEvent.CARD_LATE,
    EventKind.EXPIRED: WebhookEvent.CARD_EXPIRED,
}


def _actor(event: CardEvent) -> dict:
    return {"kind": event.actor_kind, "name": event.actor_label}


@receiver(card_event_recorded, dispatch_uid="webhooks.card_event_recorded")
def on_card_event(sender, event: CardEvent, card: Card, **kwargs) -> None:
    name = CARD_EVENTS.get(event.kind)
    if name is None:
        return
    payload = event.payload or {}
    data: dict = {"actor": _actor(event), "reason": event.reason}
    if name == WebhookEvent.CARD_CREATED:
        data["values"] = payload.get("values", {})
    elif name == WebhookEvent.CARD_MOVED:
        data |= {"from": payload.get("from"), "to": payload.get("to")}
    elif name == WebhookEvent.CARD_FIELDS_UPDATED:
        data["changes"] = payload.get("changes", {})
    pipe = card.pipe
    events_record(pipe=pipe, event=name, card=card, data=data, occurred_at=event.created_at)
    entered_final = name in (WebhookEvent.CARD_CREATED, WebhookEvent.CARD_MOVED) and card.phase.is_final
    if entered_final:
        events_record(
            pipe=pipe,
            event=WebhookEvent.CARD_FINISHED,
            card=card,
            data={"actor": _actor(event), "phase": card.phase.key},
            occurred_at=event.created_at,
        )


@receiver(post_save, sender=ReviewTask, dispatch_uid="webhooks.review_decided")
def on_review_saved(
    sender, instance: ReviewTask, created: bool, update_fields=None, raw: bool = False, **kwargs
):
    if raw or created or instance.status != ReviewStatus.DECIDED:
        return
    if update_fields is not None and "status" not in update_fields:
        return
    card = Card.objects.select_related("pipe", "phase").get(pk=instance.card_id)
    decider = instance.decided_by
    events_record(
        pipe=card.pipe,
        event=WebhookEvent.REVIEW_DECIDED,
        card=card,
        data={
            "review_id": instance.pk,
            "question": instance.question,
            "decision": instance.decision,
            "comment": instance.comment,
            "decided_by": (decider.get_full_name() or decider.get_username()) if decider else None,
        },
        occurred_at=instance.decided_at,
    )


@receiver(post_save, sender=StepRun, dispatch_uid="webhooks.step_failed")
def on_run_saved(sender, instance: StepRun, created: bool, update_fields=None, raw: bool = False, **kwargs):
    if raw or instance.status != RunStatus.FAILED:
        return
    if update_fields is not None and "status" not in update_fields:
        return
    card = Card.objects.select_related("pipe", "phase").get(pk=instance.card_id)
    events_record(
        pipe=card.pipe,
        event=WebhookEvent.STEP_FAILED,
        card=card,
        data={
            "run_id": instance.pk,
            "step": instance.step_name,
            "mechanism": instance.mechanism,
            "attempts": instance.attempts,
            "error": instance.error[:500],
        },
        occurred_at=instance.finished_at,
    )


@receiver(person_erasing, dispatch_uid="webhooks.person_erasing")
def on_person_erasing(sender, card_ids: list[int], identifiers: list[str], **kwargs) -> None:
    """A person's erasure reaches the outbox and the delivery log of the cards it touched."""
    deliveries_erase(card_ids=card_ids, identifiers=identifiers)


for _signal in (post_save, post_delete):
    _signal.connect(
        forget_active_hooks, sender=OutboundWebhook, dispatch_uid=f"webhooks.forget_active.{id(_signal)}"
    )
