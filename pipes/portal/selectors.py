"""Reads of the request portal: the forms a person may use, their own requests, and what requesters may see.

Every getter here is the only way a portal view reaches an object, and it checks access:
a card that is not the person's own is a 404, so guessing ids tells nothing.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import PermissionDenied
from django.db.models import Count, Max, Prefetch, Q, QuerySet
from django.http import Http404
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from ..choices import EventKind, FieldType
from ..conditions import evaluate
from ..fieldtypes import display_value, is_filled
from ..models import Card, CardEvent, CardFile, Field, Label, Phase, Pipe
from ..roles import pipe_access, pipes_for_user

# ---------------------------------------------------------------- forms on the portal home


def pipe_turnaround_hours(pipe: Pipe) -> int | None:
    """Hours a request usually takes: the SLAs of the phases before the end, added up (None without SLAs)."""
    hours = [p.sla_hours for p in pipe.phases.all() if not p.is_final and p.sla_hours]
    return sum(hours) if hours else None


def turnaround_text(hours: int | None) -> str:
    if not hours:
        return ""
    if hours < 48:
        return ngettext("Usually within %(n)d hour", "Usually within %(n)d hours", hours) % {"n": hours}
    days = math.ceil(hours / 24)
    return ngettext("Usually within %(n)d day", "Usually within %(n)d days", days) % {"n": days}


@dataclass
class PortalForm:
    """A start form as the portal home lists it."""

    pipe: Pipe
    turnaround: str

    @property
    def tone(self) -> int:
        """One of six icon colors, stable per pipe."""
        return self.pipe.pk % 6


@dataclass
class PortalOrgGroup:
    organization: Any
    forms: list[PortalForm] = field(default_factory=list)


@dataclass
class PortalGroup:
    """Forms under one portal heading, split by organization."""

    name: str
    organizations: list[PortalOrgGroup] = field(default_factory=list)

    @property
    def count(self) -> int:
        return sum(len(o.forms) for o in self.organizations)


def portal_pipes_for_user(*, user: AbstractBaseUser, q: str = "") -> QuerySet[Pipe]:
    """Pipes whose start form `user` may use, matching the search text `q`."""
    pipes = (
        pipes_for_user(user, ("request_pipe",))
        .filter(archived_at__isnull=True)
        .select_related("organization")
        .prefetch_related(Prefetch("phases", queryset=Phase.objects.order_by("position", "id")))
    )
    for word in q.split()[:6]:
        pipes = pipes.filter(
            Q(name__icontains=word)
            | Q(description__icontains=word)
            | Q(portal_group__icontains=word)
            | Q(organization__name__icontains=word)
        )
    return pipes.order_by("portal_group", "organization__name", "name")


def portal_groups(pipes: Iterable[Pipe]) -> list[PortalGroup]:
    """Pipes grouped by portal heading (named ones first, alphabetically), then by organization."""
    by_group: dict[str, dict[int, PortalOrgGroup]] = defaultdict(dict)
    for pipe in pipes:
        orgs = by_group[pipe.portal_group.strip()]
        org_group = orgs.setdefault(pipe.organization_id, PortalOrgGroup(organization=pipe.organization))
        org_group.forms.append(PortalForm(pipe=pipe, turnaround=turnaround_text(pipe_turnaround_hours(pipe))))
    names = sorted((n for n in by_group if n), key=str.lower) + ([""] if "" in by_group else [])
    groups = []
    for name in names:
        orgs = sorted(by_group[name].values(), key=lambda o: o.organization.name.lower())
        for org_group in orgs:
            org_group.forms.sort(key=lambda f: f.pipe.name.lower())
        groups.append(PortalGroup(name=name or _("Other requests"), organizations=orgs))
    return groups


def portal_pipe_for_request(*, user: AbstractBaseUser, pipe_id: int) -> Pipe:
    """The pipe whose start form `user` is about to fill: 404 when they cannot see it, 403 when they only see it."""
    pipe = Pipe.objects.select_related("organization").filter(pk=pipe_id).first()
    if pipe is None:
        raise Http404
    access = pipe_access(user=user, pipe=pipe)
    if access.can_request:
        return pipe
    if access.can_view_board:
        raise PermissionDenied(_("You may not file requests in %(pipe)s.") % {"pipe": pipe.name})
    raise Http404


def public_pipe_get(*, org_slug: str, pipe_slug: str) -> Pipe:
    """A pipe whose start form is published to people without an account (404 otherwise)."""
    pipe = (
        Pipe.objects.select_related("organization")
        .filter(organization__slug=org_slug, slug=pipe_slug, public_form=True)
        .first()
    )
    if pipe is None:
        raise Http404
    return pipe


def start_fields(pipe: Pipe) -> list[Field]:
    return list(pipe.fields.filter(phase__isnull=True).order_by("position", "id"))


# ---------------------------------------------------------------- a requester's own cards


def requester_status(phase: Phase) -> str:
    """What a requester is told about a card in `phase`."""
    return phase.requester_status or phase.name


def requester_cards(*, user: AbstractBaseUser, state: str = "open") -> QuerySet[Card]:
    """Cards `user` filed ("open", "closed" or "all"), newest change first."""
    cards = Card.objects.filter(created_by=user).select_related("pipe__organization", "phase")
    if state == "open":
        cards = cards.filter(finished_at__isnull=True)
    elif state == "closed":
        cards = cards.filter(finished_at__isnull=False)
    return cards.order_by("-updated_at", "-id")


def requester_card_counts(*, user: AbstractBaseUser) -> dict[str, int]:
    counts = Card.objects.filter(created_by=user).aggregate(
        open=Count("pk", filter=Q(finished_at__isnull=True)),
        closed=Count("pk", filter=Q(finished_at__isnull=False)),
    )
    return {"open": counts["open"], "closed": counts["closed"], "all": counts["open"] + counts["closed"]}


def requester_card_get(*, user: AbstractBaseUser, card_id: int) -> Card:
    """One of `user`'s own requests; anything else is a 404."""
    card = (
        Card.objects.select_related("pipe__organization", "phase")
        .filter(pk=card_id, created_by=user, created_by__isnull=False)
        .first()
    )
    if card is None or not user.is_authenticated:
        raise Http404
    return card


def card_by_tracking_token(*, token: str) -> Card:
    if len(token) < 20 or len(token) > 64:
        raise Http404
    card = Card.objects.select_related("pipe__organization", "phase").filter(tracking_token=token).first()
    if card is None:
        raise Http404
    return card


def _comments_to_requester_filter(card_ids: Iterable[int]) -> Q:
    return Q(card_id__in=list(card_ids), kind=EventKind.COMMENTED, payload__to_requester=True)


@dataclass
class RequestRow:
    """A line of My requests."""

    card: Card
    status: str
    needs_me: int
    messages: int


def _answered_requests(cards: list[Card]) -> set[int]:
    """Ids of cards whose requester changed fields after the team last asked them for changes."""
    asked = {c.pk: c.created_by_id for c in cards if c.requested_fields and not c.is_finished}
    if not asked:
        return set()
    last_ask = dict(
        CardEvent.objects.filter(
            card_id__in=asked, kind=EventKind.COMMENTED, payload__has_key="requested_fields"
        )
        .values("card_id")
        .annotate(seq=Max("seq"))
        .values_list("card_id", "seq")
    )
    replies = CardEvent.objects.filter(
        card_id__in=asked, kind__in=[EventKind.FIELDS_CHANGED, EventKind.FILE_ADDED]
    ).values_list("card_id", "seq", "actor_user_id")
    return {
        card_id
        for card_id, seq, actor_id in replies
        if actor_id is not None and actor_id == asked[card_id] and seq > last_ask.get(card_id, seq)
    }


def requester_pending(card: Card, fields: Iterable[Field], *, answered: bool) -> list[Field]:
    """What is still needed from the requester: unfilled phase fields, and fields the team asked to correct."""
    if card.is_finished:
        return []
    requested = set() if answered else set(card.requested_fields or [])
    return [
        f
        for f in fields
        if f.key in requested
        or (
            f.phase_id == card.phase_id
            and f.requester_editable
            and evaluate(f.condition, card.values)
            and not is_filled(f, card.values.get(f.key))
        )
    ]


def requester_rows(cards: Iterable[Card]) -> list[RequestRow]:
    """My requests' lines, in a fixed number of queries whatever the number of cards."""
    cards = list(cards)
    if not cards:
        return []
    phase_ids = {c.phase_id for c in cards}
    requested_keys = {k for c in cards for k in c.requested_fields or []}
    fields_by_pipe: dict[int, list[Field]] = defaultdict(list)
    for f in Field.objects.filter(
        Q(phase_id__in=phase_ids, requester_editable=True)
        | Q(pipe_id__in={c.pipe_id for c in cards}, key__in=requested_keys, visible_to_requester=True)
    ):
        fields_by_pipe[f.pipe_id].append(f)
    messages = dict(
        CardEvent.objects.filter(_comments_to_requester_filter(c.pk for c in cards))
        .values_list("card_id")
        .annotate(n=Count("pk"))
        .values_list("card_id", "n")
    )
    answered = _answered_requests(cards)
    return [
        RequestRow(
            card=card,
            status=requester_status(card.phase),
            needs_me=len(
                requester_pending(card, fields_by_pipe.get(card.pipe_id, []), answered=card.pk in answered)
            ),
            messages=messages.get(card.pk, 0),
        )
        for card in cards
    ]


def requester_last_ask(card: Card) -> CardEvent | None:
    """The team's latest request for corrections (a comment naming requested_fields)."""
    return (
        CardEvent.objects.filter(card=card, kind=EventKind.COMMENTED, payload__has_key="requested_fields")
        .order_by("-seq")
        .first()
    )


def requester_answered(card: Card) -> bool:
    """True when the requester already changed fields since the team last asked for changes."""
    return card.pk in _answered_requests([card])


def requester_editable_fields(card: Card) -> list[Field]:
    """Fields the requester may fill now: the current phase's requester fields (whose condition applies),
    and the fields the team asked them to correct (Card.requested_fields)."""
    if card.is_finished:
        return []
    requested = list(card.requested_fields or [])
    fields = (
        Field.objects.filter(pipe=card.pipe_id)
        .filter(
            Q(phase=card.phase, requester_editable=True) | Q(key__in=requested, visible_to_requester=True)
        )
        .select_related("phase")
    )
    fields = sorted(
        fields, key=lambda f: (f.phase_id is not None, f.phase.position if f.phase else 0, f.position, f.pk)
    )
    return [f for f in fields if f.key in requested or evaluate(f.condition, card.values)]


@dataclass
class ShownValue:
    """A field value as the requester sees it."""

    field: Field
    text: str
    files: list[CardFile] = field(default_factory=list)


def requester_values(card: Card, *, exclude: Iterable[str] = ()) -> list[ShownValue]:
    """Filled fields of `card` marked visible to requesters, start form first (PII included: it is theirs)."""
    skip = set(exclude)
    fields = [
        f
        for f in card.pipe.fields.select_related("phase").order_by("phase__position", "position", "id")
        if f.visible_to_requester and f.key not in skip and is_filled(f, card.values.get(f.key))
    ]
    fields.sort(key=lambda f: (f.phase_id is not None, f.phase.position if f.phase else 0, f.position))
    file_ids = [i for f in fields if f.type == FieldType.ATTACHMENT for i in card.values.get(f.key) or []]
    files = {cf.pk: cf for cf in CardFile.objects.filter(card=card, pk__in=file_ids)}
    label_ids = [i for f in fields if f.type == FieldType.LABEL for i in card.values.get(f.key) or []]
    labels = dict(Label.objects.filter(pk__in=label_ids).values_list("pk", "name"))
    person_ids = [i for f in fields if f.type == FieldType.ASSIGNEE for i in card.values.get(f.key) or []]
    people = {}
    if person_ids:
        from django.contrib.auth import get_user_model

        people = {
            u.pk: u.get_full_name() or u.get_username()
            for u in get_user_model().objects.filter(pk__in=person_ids)
        }
    linked_ids = [i for f in fields if f.type == FieldType.CONNECTION for i in card.values.get(f.key) or []]
    linked = {c.pk: c.reference for c in Card.objects.filter(pk__in=linked_ids).select_related("pipe")}
    shown = []
    for f in fields:
        value = card.values.get(f.key)
        if f.type == FieldType.ATTACHMENT:
            shown.append(ShownValue(field=f, text="", files=[files[i] for i in value if i in files]))
        elif f.type == FieldType.LABEL:
            shown.append(ShownValue(field=f, text=", ".join(labels.get(i, "") for i in value)))
        elif f.type == FieldType.ASSIGNEE:
            shown.append(ShownValue(field=f, text=", ".join(people.get(i, "") for i in value)))
        elif f.type == FieldType.CONNECTION:
            shown.append(ShownValue(field=f, text=", ".join(linked.get(i, f"#{i}") for i in value)))
        else:
            shown.append(ShownValue(field=f, text=display_value(f, value)))
    return shown


def requester_file_get(*, card: Card, file_id: int) -> CardFile:
    """A file of the requester's own card that sits in a field visible to requesters (404 otherwise)."""
    visible = set(
        card.pipe.fields.filter(visible_to_requester=True, type=FieldType.ATTACHMENT).values_list(
            "key", flat=True
        )
    )
    card_file = CardFile.objects.filter(card=card, pk=file_id).first()
    if card_file is None or card_file.field_key not in visible:
        raise Http404
    if file_id not in (card.values.get(card_file.field_key) or []):
        raise Http404
    return card_file


@dataclass
class ThreadEntry:
    """A message between the team and the requester."""

    event: CardEvent
    text: str
    from_requester: bool


def requester_thread(card: Card) -> list[ThreadEntry]:
    """Comments addressed to the requester, and the requester's own comments, oldest first."""
    events = CardEvent.objects.filter(card=card, kind=EventKind.COMMENTED).filter(
        Q(payload__to_requester=True) | Q(actor_user_id=card.created_by_id)
    )
    entries = []
    for event in events.order_by("seq"):
        payload = event.payload or {}
        from_requester = card.created_by_id is not None and event.actor_user_id == card.created_by_id
        if not payload.get("to_requester") and not from_requester:
            continue
        entries.append(
            ThreadEntry(event=event, text=str(payload.get("text", "")), from_requester=from_requester)
        )
    return entries


@dataclass
class StatusStep:
    """A stage of a request as requesters see it: done, current or ahead."""

    label: str
    state: str  # "done", "current", "todo", or "finished" (where a closed request ended)


def requester_steps(card: Card) -> list[StatusStep]:
    """The request's path in requester words: the statuses of the open phases, then where it ends."""
    phases = list(card.pipe.phases.order_by("position", "id"))
    labels = list(dict.fromkeys(requester_status(p) for p in phases if not p.is_final))
    if card.phase.is_final:
        return [StatusStep(label=label, state="done") for label in labels] + [
            StatusStep(label=requester_status(card.phase), state="finished")
        ]
    here = labels.index(requester_status(card.phase))
    steps = [
        StatusStep(label=label, state="done" if i < here else "current" if i == here else "todo")
        for i, label in enumerate(labels)
    ]
    finals = [p for p in phases if p.is_final]
    if finals:
        steps.append(StatusStep(label=requester_status(finals[0]), state="todo"))
    return steps


@dataclass
class HistoryEntry:
    when: Any
    text: str


def requester_history(card: Card) -> list[HistoryEntry]:
    """When the request was filed and each change of the status requesters see, newest first."""
    phases = {p.key: p for p in card.pipe.phases.all()}
    entries = [HistoryEntry(when=card.created_at, text=_("Request submitted"))]
    last_status = None
    first = card.events.filter(kind=EventKind.CREATED).first()
    if first and first.payload and first.payload.get("phase") in phases:
        last_status = requester_status(phases[first.payload["phase"]])
    for event in card.events.filter(kind=EventKind.MOVED).order_by("seq"):
        target = phases.get((event.payload or {}).get("to"))
        if target is None:
            continue
        status = requester_status(target)
        if status != last_status:
            entries.append(HistoryEntry(when=event.created_at, text=_("Status: %(s)s") % {"s": status}))
            last_status = status
    entries.reverse()
    return entries
