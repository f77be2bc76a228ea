"""The demo: Acme Ltda, a person per role, the four process templates and a few hundred cards.

Cards are created, filled, assigned, labelled, commented and moved only through
pipes.services, so every one has a real, verifiable timeline. They are written on a
simulated clock: each card starts some days or weeks ago and spends a believable time in
each phase (some longer than the phase's SLA), so the boards show fresh work, old work,
late work and finished work, as a real company's would. Everything is drawn from
random.Random(seed): the same seed gives the same companies, amounts and journeys.

The data it draws from is in demo_data.py, the card plans of each template and the simulated clock in
demo_plans.py.
"""

from __future__ import annotations

import copy
import datetime as dt
import random
import time
import zoneinfo
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import make_password
from django.contrib.contenttypes.models import ContentType
from django.db import transaction
from django.test.utils import override_settings
from django.utils import timezone
from guardian.models import GroupObjectPermission, UserObjectPermission

from pipes.choices import OrgRole, PipeRole
from pipes.design import SYSTEM, design_grant, design_import, process_template_load
from pipes.models import Card, CardFile, Membership, Organization, Phase, Pipe
from pipes.services import (
    CardTransitionError,
    card_assign,
    card_attach_files,
    card_comment,
    card_create,
    card_move,
    card_set_due,
    card_set_labels,
    card_update_fields,
)

from .demo_data import ascii_text, company, person_name
from .demo_plans import PLANS, TIME_ZONE, CardPlan, Seed, simulated_clock
from .demo_pt_br import definition_pt_br, value_english, value_pt_br

DEMO_PASSWORD = "trilho-demo"
ORG_NAME = "Acme Ltda"
ORG_SLUG = "acme"
DEFAULT_CARDS = 250

# Share of the cards each template gets; accounts payable is the busiest desk.
TEMPLATE_SHARES = {
    "accounts_payable": 0.4,
    "supplier_onboarding": 0.2,
    "credit_analysis": 0.2,
    "employee_onboarding": 0.2,
}


@dataclass(frozen=True)
class DemoUser:
    """A demo person and what they may do."""

    username: str
    first_name: str
    last_name: str
    role: str  # "owner" (of the organization) or a pipe role
    does: str


DEMO_USERS = [
    DemoUser("owner", "Otávio", "Mendes", "owner", "owns Acme Ltda: every pipe, and the designer at /admin/"),
    DemoUser("ana.admin", "Ana", "Lima", PipeRole.ADMIN, "designs the four pipes and manages who takes part"),
    DemoUser("marcos", "Marcos", "Pereira", PipeRole.MEMBER, "works the cards on the boards"),
    DemoUser("rita", "Rita", "Carvalho", PipeRole.REVIEWER, "decides reviews in her inbox"),
    DemoUser("renato", "Renato", "Alves", PipeRole.REQUESTER, "files requests in the portal"),
    DemoUser("vera", "Vera", "Costa", PipeRole.VIEWER, "follows the boards, read-only"),
]


class DemoExists(Exception):
    """The demo organization or one of its people is already there."""


@dataclass
class DemoSummary:
    """What seeding created."""

    organization: Organization
    pipes: list[Pipe]
    cards: int
    events: int
    seconds: float
    by_phase: dict[str, Counter] = field(default_factory=dict)


def demo_exists() -> bool:
    User = get_user_model()
    return (
        Organization.objects.filter(slug=ORG_SLUG).exists()
        or User.objects.filter(username__in=[u.username for u in DEMO_USERS]).exists()
    )


@transaction.atomic
def demo_reset() -> None:
    """Remove the demo organization (pipes, cards, files) and the demo people."""
    org = Organization.objects.filter(slug=ORG_SLUG).first()
    if org is not None:
        pipe_ids = [str(pk) for pk in org.pipes.values_list("pk", flat=True)]
        files = [cf.file.name for cf in CardFile.objects.filter(card__pipe__organization=org)]
        # Cards protect their phases, and what other apps hang on phases (the rail's steps) may
        # protect what hangs on the pipe (its agents): remove cards, then phases, then the rest.
        Card.objects.filter(pipe__organization=org).delete()
        Phase.objects.filter(pipe__organization=org).delete()
        org.delete()
        pipe_type = ContentType.objects.get_for_model(Pipe)
        # Object permissions point at pipes by text id, without a foreign key: remove them too.
        UserObjectPermission.objects.filter(content_type=pipe_type, object_pk__in=pipe_ids).delete()
        GroupObjectPermission.objects.filter(content_type=pipe_type, object_pk__in=pipe_ids).delete()
        transaction.on_commit(lambda: _delete_files(files))
    get_user_model().objects.filter(username__in=[u.username for u in DEMO_USERS]).delete()


def _delete_files(names: list[str]) -> None:
    from django.core.files.storage import default_storage

    for name in names:
        default_storage.delete(name)


# ---------------------------------------------------------------- seeding


LANGUAGES = ("en", "pt-br")


def demo_language(code: str | None) -> str:
    """The demo's language for a language code (pt-BR, pt_BR, pt...): Portuguese or English."""
    return "pt-br" if (code or "").lower().replace("_", "-").startswith("pt") else "en"


def _identity(value: Any) -> Any:
    return value


# What card plans write goes through _say on its way to the write path (the demo's language), and
# what they read of a card through _unsay: the plans decide on the English texts.
_say: Any = _identity
_unsay: Any = _identity


def _as_planned(card: Card) -> Card:
    """The card as its plan reads it (its values in the plan's English)."""
    if _unsay is _identity:
        return card
    planned = copy.copy(card)
    planned.values = _unsay(card.values)
    return planned


def demo_seed(*, cards: int = DEFAULT_CARDS, seed: int = 7, language: str = "en") -> DemoSummary:
    """Create the demo in one transaction, in `language` ("en" or "pt-br": names, processes and
    cards for a Brazilian audience). Raises DemoExists when any of it is there already."""
    global _say, _unsay
    portuguese = demo_language(language) == "pt-br"
    _say, _unsay = (value_pt_br, value_english) if portuguese else (_identity, _identity)
    try:
        return _demo_seed(cards=cards, seed=seed, portuguese=portuguese)
    finally:
        _say = _unsay = _identity


def _demo_seed(*, cards: int, seed: int, portuguese: bool) -> DemoSummary:
    started = time.monotonic()
    if demo_exists():
        raise DemoExists(ORG_SLUG)
    rng = random.Random(seed)
    # The people and companies of the demo are made up: their notifications go nowhere.
    with (
        override_settings(EMAIL_BACKEND="django.core.mail.backends.dummy.EmailBackend"),
        transaction.atomic(),
    ):
        org = Organization.objects.create(name=ORG_NAME, slug=ORG_SLUG, time_zone=TIME_ZONE, currency="BRL")
        users = _create_users(org)
        pipes = {}
        for name in TEMPLATE_SHARES:
            definition = process_template_load(name)
            if portuguese:
                definition = definition_pt_br(definition)
            pipe = design_import(actor=SYSTEM, organization=org, definition=definition)
            for person in DEMO_USERS:
                if person.role != "owner":
                    design_grant(actor=SYSTEM, pipe=pipe, user=users[person.username], role=person.role)
            pipes[name] = pipe
        companies = [company(rng) for _ in range(40)]
        jobs = _schedule(rng, cards)
        with simulated_clock() as clock:
            for name, created_at in jobs:
                pipe = pipes[name]
                context = Seed(
                    rng=rng,
                    clock=clock,
                    pipe=pipe,
                    phases={p.key: p for p in pipe.phases.all()},
                    options={f.key: _unsay(list(f.options)) for f in pipe.fields.all() if f.options},
                    labels=list(pipe.labels.all()),
                    users=users,
                    companies=companies,
                )
                _card_journey(context, PLANS[name], created_at)
    return _summary(org, list(pipes.values()), time.monotonic() - started)


def _create_users(org: Organization) -> dict[str, Any]:
    User = get_user_model()
    users = {}
    password = make_password(DEMO_PASSWORD)  # one slow hash for everyone: they share the password
    for person in DEMO_USERS:
        user = User.objects.create(
            username=person.username,
            password=password,
            email=f"{ascii_text(person.first_name).lower()}.{ascii_text(person.last_name).lower()}@acme.example",
            first_name=person.first_name,
            last_name=person.last_name,
            is_staff=person.role == "owner",  # the owner designs pipes in the admin
        )
        if person.role == "owner":
            Membership.objects.create(organization=org, user=user, role=OrgRole.OWNER)
        users[person.username] = user
    return users


def _business_time(rng: random.Random, moment: dt.datetime) -> dt.datetime:
    """`moment`, or the start of the next working period (Monday to Friday, 8:00 to 18:00 local)."""
    tz = zoneinfo.ZoneInfo(TIME_ZONE)
    local = moment.astimezone(tz)
    if local.hour >= 18:
        local = (local + dt.timedelta(days=1)).replace(hour=8, minute=0)
    elif local.hour < 8:
        local = local.replace(hour=8, minute=0)
    else:
        return moment.astimezone(dt.UTC)
    while local.weekday() >= 5:
        local += dt.timedelta(days=1)
    local += dt.timedelta(minutes=rng.randint(0, 120), seconds=rng.randint(0, 59))
    return local.astimezone(dt.UTC)


def _schedule(rng: random.Random, cards: int) -> list[tuple[str, dt.datetime]]:
    """(template, creation moment) of every card, oldest first; more cards are recent than old."""
    now = timezone.now()
    tz = zoneinfo.ZoneInfo(TIME_ZONE)
    jobs = []
    counts = {name: int(cards * share) for name, share in TEMPLATE_SHARES.items()}
    counts["accounts_payable"] += cards - sum(counts.values())
    for name, count in counts.items():
        for _ in range(count):
            days_ago = min(rng.expovariate(1 / 14), 75)
            local = (now - dt.timedelta(days=days_ago)).astimezone(tz)
            local = local.replace(
                hour=rng.randint(8, 17), minute=rng.randint(0, 59), second=rng.randint(0, 59)
            )
            moment = _business_time(rng, local.astimezone(dt.UTC))
            jobs.append((name, min(moment, now - dt.timedelta(minutes=rng.randint(20, 240)))))
    jobs.sort(key=lambda job: job[1])
    return jobs


def _card_journey(s: Seed, plan: CardPlan, created_at: dt.datetime) -> None:
    """Create one card and walk it along its path as far as the time until now allows."""
    rng, clock = s.rng, s.clock
    limit = clock.real_now() - dt.timedelta(minutes=5)
    clock.at(created_at)
    values, files, actor, email = plan.start(s)
    card = card_create(actor=actor, pipe=s.pipe, values=_say(values), files=files, requester_email=email)
    moment = created_at
    worker = s.worker()
    if rng.random() < 0.8:
        clock.at(moment := moment + dt.timedelta(minutes=rng.randint(5, 50)))
        card = card_assign(actor=s.actor(worker), card=card, users=[s.users[worker]])
    if plan.template == "employee_onboarding":
        start = dt.date.fromisoformat(card.values["start_date"])
        due = dt.datetime.combine(start, dt.time(9, 0), tzinfo=zoneinfo.ZoneInfo(TIME_ZONE))
        clock.at(moment := moment + dt.timedelta(minutes=rng.randint(1, 30)))
        card = card_set_due(actor=s.actor("ana.admin"), card=card, due_at=due)
    if s.labels and rng.random() < 0.25:
        clock.at(moment := moment + dt.timedelta(minutes=rng.randint(1, 30)))
        card = card_set_labels(actor=s.actor("marcos"), card=card, labels=[rng.choice(s.labels)])

    path = plan.path(s, _unsay(card.values))
    for current, nxt in zip(path, path[1:], strict=False):
        phase = s.phases[current]
        # Most cards leave within their SLA; some wait much longer (a supplier who does not answer).
        factor = rng.uniform(0.2, 1.3) if rng.random() < 0.8 else rng.uniform(1.3, 4)
        leave_at = moment + dt.timedelta(hours=factor * (phase.sla_hours or 24))
        leave_at = _business_time(
            rng, max(leave_at, plan.not_before(s, _as_planned(card), current) or leave_at)
        )
        if leave_at > limit:
            break
        work_at = max(moment, leave_at - dt.timedelta(minutes=rng.randint(5, 45)))
        clock.at(work_at)
        card = _apply(s, plan, card, current, nxt, worker)
        text = plan.comment(s, current, nxt)
        if text:
            clock.at(work_at + dt.timedelta(minutes=1, seconds=rng.randint(0, 59)))
            author = "rita" if current in ("approval", "compliance", "committee") else worker
            card_comment(actor=s.actor(author), card=card, text=_say(text))
        clock.at(leave_at)
        try:
            card = card_move(actor=s.actor(worker), card=card, to_phase=s.phases[nxt])
        except CardTransitionError:
            break  # the next phase is full (a blocking WIP limit): the card waits here
        moment = leave_at
    if not card.phase.is_final:
        _work_in_progress(s, plan, card, card.phase.key, moment, limit)


def _apply(s: Seed, plan: CardPlan, card: Card, phase: str, nxt: str | None, worker: str) -> Card:
    values, uploads = plan.fill(s, _as_planned(card), phase, nxt)
    if values:
        card = card_update_fields(actor=s.actor(worker), card=card, values=_say(values))
    for key, files in uploads.items():
        card_attach_files(actor=s.actor(worker), card=card, uploads=files, field_key=key)
        card.refresh_from_db()
    return card


def _work_in_progress(
    s: Seed, plan: CardPlan, card: Card, phase: str, since: dt.datetime, limit: dt.datetime
) -> None:
    """A card that stays in `phase`: sometimes partly filled in, sometimes with a question from the requester."""
    rng = s.rng

    def at(share: float) -> bool:
        moment = _business_time(rng, since + (limit - since) * share)
        if moment > limit:
            return False
        s.clock.at(moment)
        return True

    if rng.random() < 0.5 and at(rng.uniform(0.1, 0.5)):
        card = _apply(s, plan, card, phase, None, s.worker())
    if plan.template == "employee_onboarding" and phase == "documents" and rng.random() < 0.5 and at(0.6):
        buddy = person_name(rng).rsplit(" ", 1)[0]
        card = card_update_fields(actor=s.actor("renato"), card=card, values={"onboarding_buddy": buddy})
    if card.created_by_id == s.users["renato"].pk and rng.random() < 0.12 and at(rng.uniform(0.7, 0.95)):
        card_comment(
            actor=s.actor("renato"), card=card, text=_say("Any news on this one? The team is asking.")
        )


def _summary(org: Organization, pipes: list[Pipe], seconds: float) -> DemoSummary:
    from django.db.models import Count

    from pipes.models import CardEvent

    by_phase = {}
    for pipe in pipes:
        counts = dict(pipe.cards.values_list("phase_id").annotate(n=Count("id")).values_list("phase_id", "n"))
        by_phase[pipe.name] = Counter({phase.name: counts.get(phase.pk, 0) for phase in pipe.phases.all()})
    return DemoSummary(
        organization=org,
        pipes=pipes,
        cards=Card.objects.filter(pipe__organization=org).count(),
        events=CardEvent.objects.filter(card__pipe__organization=org).count(),
        seconds=seconds,
        by_phase=by_phase,
    )
