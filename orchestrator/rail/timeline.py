"""How the rail's step events read on a card's timeline, in the reader's language.

Registered with pipes.selectors (which knows nothing of the rail) by orchestrator.apps: the reason from
the event's data (orchestrator.rail.reasons), else from its prose; for the rail's own events, the
mechanism that acted ("Local model: Classify the request"), not the English label stored with the event.
"""

from __future__ import annotations

from django.utils.translation import gettext as _

from pipes.choices import ActorKind
from pipes.models import CardEvent
from pipes.selectors import StepDisplay

from ..models import Mechanism
from .reasons import Reason
from .reasons_prose import prose_display


def step_event_display(event: CardEvent) -> StepDisplay:
    payload = event.payload if isinstance(event.payload, dict) else {}
    reason = Reason.from_data(payload.get("reason_data"))
    comment = ""
    if reason is None:
        text = prose_display(event.reason)
    else:
        text = reason.text()
        if reason.parts and reason.parts[0].code == "review_decided":
            comment = str(payload.get("comment") or "")  # the reviewer's words, under what they decided
    return StepDisplay(text=text, actor=_actor(event, payload), comment=comment)


def _actor(event: CardEvent, payload: dict) -> str:
    step, mechanism = payload.get("step"), payload.get("mechanism")
    if event.actor_kind != ActorKind.SYSTEM or not step:
        return ""  # a person or an agent: their own name
    if mechanism == Mechanism.HUMAN:
        return _("Rail")  # the rail handed the step to a person
    if mechanism in Mechanism.values and mechanism != Mechanism.AUTO:
        return _("%(mechanism)s: %(step)s") % {"mechanism": Mechanism(mechanism).label, "step": step}
    return ""
