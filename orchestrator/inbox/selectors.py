"""Reads of the inbox: the tasks a person may decide (sorted by SLA urgency), the nav badge's count,
the permission-checking task getter and everything the review screen shows."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import Count, Exists, F, OuterRef, Q, QuerySet, Subquery
from django.db.models.functions import Coalesce
from django.http import Http404, QueryDict
from django.utils import timezone
from django.utils.translation import gettext as _

from orchestrator.models import ReviewStatus, ReviewTask, Risk, TraceKind
from pipes.choices import FieldType
from pipes.conditions import evaluate
from pipes.fieldtypes import is_filled
from pipes.masking import field_text, title_shown
from pipes.models import Card, Field, Phase
from pipes.parsing import parse_id
from pipes.roles import PipeAccess, pipe_access, pipe_users_with, pipes_for_user

from .models import Decision, InboxItem, ReviewDelegation, ReviewSignoff

VIEWS = ("waiting", "open", "overdue", "decided")
LIST_LIMIT = 200
DUE_SOON = dt.timedelta(hours=4)


# ---------------------------------------------------------------- the review's fields


def review_fields(*, task: ReviewTask, card: Card) -> dict[str, Field]:
    """Fields a reviewer sets with the decision, in form order: the agent's writable fields, else the
    fields of the card's phase (the same rule as orchestrator.rail.services._review_decide); never attachments."""
    step = task.run.step
    if step is not None and step.agent is not None and step.agent.writable_fields:
        keys = set(step.agent.writable_fields)
        wanted = Q(key__in=keys)
    else:
        wanted = Q(phase_id=card.phase_id)
    return {
        f.key: f
        for f in Field.objects.filter(wanted, pipe_id=card.pipe_id).exclude(type=FieldType.ATTACHMENT)
    }


def draft_values(*, task: ReviewTask, card: Card, fields: Mapping[str, Field]) -> dict[str, Any]:
    """What the review's inputs start with: the card's values, overridden by the agent's proposed values."""
    proposed = (task.proposal or {}).get("values") or {}
    return {k: proposed.get(k, card.values.get(k)) for k in fields}


def move_needs(
    *, task: ReviewTask, card: Card, decision: str, values: Mapping[str, Any] | None = None
) -> list[Field]:
    """Required fields of the card's phase that the move `decision` leads to still needs, as `values`
    (the card's values unless given) leave them: the same rule as pipes.services.card_move (a forward
    move needs the fields of the phase it leaves, those their conditions show). Empty when the decision
    stays in the phase or goes back."""
    step = task.run.step
    target_key = step.next_phase_key(decision) if step is not None else ""
    if not target_key or target_key == card.phase.key:
        return []
    target = Phase.objects.filter(pipe_id=card.pipe_id, key=target_key).only("position").first()
    if target is None or target.position <= card.phase.position:
        return []
    values = card.values if values is None else values
    leaving = Field.objects.filter(pipe_id=card.pipe_id, phase_id=card.phase_id, required=True).order_by(
        "position", "pk"
    )
    return [f for f in leaving if evaluate(f.condition, values) and not is_filled(f, values.get(f.key))]


def needed_keys(*, task: ReviewTask, card: Card, decision: str) -> set[str]:
    """Keys of the required fields of the phase `decision` leaves, whatever their conditions say (the
    page shows or hides conditional ones live): what the review screen asks for that decision."""
    step = task.run.step
    target_key = step.next_phase_key(decision) if step is not None else ""
    if not target_key or target_key == card.phase.key:
        return set()
    target = Phase.objects.filter(pipe_id=card.pipe_id, key=target_key).only("position").first()
    if target is None or target.position <= card.phase.position:
        return set()
    return set(
        Field.objects.filter(pipe_id=card.pipe_id, phase_id=card.phase_id, required=True).values_list(
            "key", flat=True
        )
    )


def reason_fields(*, fields: Mapping[str, Field], keys: set[str]) -> list[Field]:
    """Of the review's fields a rejection needs (`keys`), those that ask why: long texts that appear only
    under a condition (e.g. "Why is it rejected?" once Decision is Rejected). The reviewer's comment
    fills them, so the reason is typed once."""
    return [f for f in fields.values() if f.key in keys and f.type == FieldType.LONG_TEXT and f.condition]


# ---------------------------------------------------------------- the inbox


@dataclass(frozen=True)
class InboxFilters:
    """The inbox's tab and pipe filter, from the query string."""

    view: str = "waiting"
    pipe_id: int | None = None

    @classmethod
    def from_query(cls, query: QueryDict) -> InboxFilters:
        view = query.get("view", "waiting")
        return cls(view=view if view in VIEWS else "waiting", pipe_id=parse_id(query.get("pipe", "")))

    def params(self, **extra: Any) -> str:
        query = QueryDict(mutable=True)
        values = {"view": self.view, "pipe": self.pipe_id or "", **extra}
        query.update({k: str(v) for k, v in values.items() if v not in ("", None)})
        return "?" + query.urlencode()


def _scoped(user: AbstractBaseUser, now: dt.datetime) -> tuple[QuerySet[ReviewTask], dict[str, Q]]:
    """Tasks of pipes `user` reviews (annotated), and the condition of each inbox view.

    Open tasks are theirs when assigned to them or to nobody (any reviewer of the pipe), and for the
    pipe's admins when they escalated. "Waiting for me" leaves out their own requests and the tasks
    they already approved (four-eyes). All of it is SQL: counting is one query."""
    review_pipes = pipes_for_user(user, ("review_pipe",)).values("pk")
    admin_pipes = pipes_for_user(user, ("administer_pipe",)).values("pk")
    tasks = ReviewTask.objects.filter(pipe_id__in=review_pipes).annotate(
        signed_by_me=Exists(ReviewSignoff.objects.filter(task=OuterRef("pk"), user=user)),
    )
    mine = (
        Q(assignee=user)
        | Q(assignee__isnull=True)
        | Q(inbox__escalated_at__isnull=False, pipe_id__in=admin_pipes)
    )
    open_q = Q(status=ReviewStatus.OPEN) & mine
    return tasks, {
        "open": open_q,
        "waiting": open_q & ~Q(card__created_by=user) & Q(signed_by_me=False),
        "overdue": open_q & Q(inbox__due_at__lt=now),
        "decided": Q(decided_by=user) | Q(signed_by_me=True),
    }


def inbox_waiting_count(*, user: AbstractBaseUser) -> int:
    """How many tasks wait for `user` (the nav badge): one query."""
    if not user.is_authenticated or not user.is_active:
        return 0
    tasks, views = _scoped(user, timezone.now())
    return tasks.filter(views["waiting"]).count()


def inbox_counts(*, user: AbstractBaseUser, pipe_id: int | None = None) -> dict[str, int]:
    """Tasks per inbox view, in one aggregate query."""
    tasks, views = _scoped(user, timezone.now())
    if pipe_id:
        tasks = tasks.filter(pipe_id=pipe_id)
    return tasks.aggregate(**{name: Count("pk", filter=q) for name, q in views.items()})


@dataclass
class InboxRow:
    """One task as the inbox lists it, every value ready to print."""

    task: ReviewTask
    due_at: dt.datetime | None
    overdue: bool
    due_soon: bool
    escalated: bool
    approvals: int
    approvals_required: int
    waiting_for_me: bool
    own_request: bool
    bulk_ok: bool
    confidence: int | None
    title: str = ""  # the card's title, masked where its title field is PII the user may not see
    # Approving moves the card on; these required fields (empty on the card and in the agent's draft)
    # must be filled first: in the bulk bar, once for the selection (bulk_ok), or on the review screen.
    bulk_needs: list[Field] = field(default_factory=list)
    bulk_blocked: str = ""  # why a low-risk task is still left out of bulk approval

    @property
    def four_eyes(self) -> bool:
        return self.approvals_required > 1


def _confidence_pct(value: Any) -> int | None:
    if value is None:
        return None
    try:
        return int((Decimal(str(value)) * 100).quantize(Decimal("1")))
    except (InvalidOperation, ValueError):
        return None


def inbox_rows(*, user: AbstractBaseUser, filters: InboxFilters) -> list[InboxRow]:
    """The tasks of the chosen view, most urgent first (decided ones: latest first)."""
    now = timezone.now()
    tasks, views = _scoped(user, now)
    if filters.pipe_id:
        tasks = tasks.filter(pipe_id=filters.pipe_id)
    approvals = (
        ReviewSignoff.objects.filter(task=OuterRef("pk"), decision=Decision.APPROVE)
        .values("task")
        .annotate(n=Count("pk"))
        .values("n")
    )
    qs = (
        tasks.filter(views[filters.view])
        .select_related("card__pipe", "pipe", "run__step__agent", "assignee", "inbox", "decided_by")
        .annotate(approvals=Coalesce(Subquery(approvals), 0))
    )
    if filters.view == "decided":
        qs = qs.order_by(F("decided_at").desc(nulls_first=True), "-pk")
    else:
        qs = qs.order_by(F("inbox__due_at").asc(nulls_last=True), "created_at", "pk")
    rows = []
    titles: dict[int, Callable[[str], str]] = {}  # per pipe: the same few queries however many tasks
    leaving_cache: dict[tuple[int, int], tuple[list[Field], set[str]]] = {}
    for task in qs[:LIST_LIMIT]:
        if task.pipe_id not in titles:
            pipe = task.card.pipe
            titles[task.pipe_id] = title_shown(
                pipe=pipe, can_view_pii=pipe_access(user=user, pipe=pipe).can_view_pii
            )
        item = getattr(task, "inbox", None)
        due_at = item.due_at if item else None
        is_open = task.status == ReviewStatus.OPEN
        required = item.approvals_required if item else 1
        step = task.run.step
        own = task.card.created_by_id == user.pk
        bulk_candidate = bool(
            is_open
            and not own
            and not task.signed_by_me
            and step is not None
            and step.risk == Risk.LOW
            and required == 1
            and Decision.APPROVE in task.allowed_decisions
        )
        needs: list[Field] = []
        blocked = ""
        if bulk_candidate:
            needs, settable = _approval_needs(task, leaving_cache)
            if not settable:
                blocked = _("Open it to approve: %(fields)s must be filled first.") % {
                    "fields": ", ".join(f.label for f in needs)
                }
        rows.append(
            InboxRow(
                task=task,
                due_at=due_at,
                overdue=bool(is_open and due_at and due_at < now),
                due_soon=bool(is_open and due_at and now <= due_at < now + DUE_SOON),
                escalated=bool(item and item.escalated_at),
                approvals=task.approvals,
                approvals_required=required,
                waiting_for_me=is_open and not own and not task.signed_by_me,
                own_request=own,
                bulk_ok=bulk_candidate and not blocked,
                confidence=_confidence_pct(task.confidence),
                title=titles[task.pipe_id](task.card.title),
                bulk_needs=needs if not blocked else [],
                bulk_blocked=blocked,
            )
        )
    return rows


def _approval_needs(
    task: ReviewTask, cache: dict[tuple[int, int], tuple[list[Field], set[str]]]
) -> tuple[list[Field], bool]:
    """The required fields approving `task` still needs (the card's values with the agent's draft), and
    whether the review may set them all (so the reviewer can fill them in the bulk bar).

    The phase's required fields and the review's settable keys are read once per step and phase."""
    step, card = task.run.step, task.card
    key = (step.pk, card.phase_id)
    if key not in cache:
        target = Phase.objects.filter(pipe_id=card.pipe_id, key=step.on_approve).only("position").first()
        phase_position = Phase.objects.filter(pk=card.phase_id).values_list("position", flat=True).first()
        forward = target is not None and phase_position is not None and target.position > phase_position
        leaving = (
            list(
                Field.objects.filter(pipe_id=card.pipe_id, phase_id=card.phase_id, required=True).order_by(
                    "position", "pk"
                )
            )
            if forward
            else []
        )
        if step.agent_id and step.agent.writable_fields:
            settable = set(step.agent.writable_fields)
        else:
            settable = {f.key for f in leaving}
        cache[key] = (leaving, settable)
    leaving, settable = cache[key]
    if not leaving:
        return [], True
    values = {**card.values, **((task.proposal or {}).get("values") or {})}
    needs = [f for f in leaving if evaluate(f.condition, values) and not is_filled(f, values.get(f.key))]
    return needs, all(f.key in settable and f.type != FieldType.ATTACHMENT for f in needs)


def fields_by_keys(*, pipe_id: int, keys: list[str]) -> list[Field]:
    """The pipe's fields named by `keys`, in form order (those the bulk bar posted)."""
    return list(Field.objects.filter(pipe_id=pipe_id, key__in=keys).order_by("position", "pk"))


def bulk_field_groups(rows: list[InboxRow]) -> list[tuple[int, list[Field]]]:
    """Per step, the fields its bulk-approvable tasks need, in form order: the bulk bar asks them once."""
    groups: dict[int, dict[str, Field]] = {}
    for row in rows:
        if row.bulk_ok and row.bulk_needs:
            groups.setdefault(row.task.run.step_id, {}).update({f.key: f for f in row.bulk_needs})
    return [
        (step_id, sorted(fields.values(), key=lambda f: (f.position, f.pk)))
        for step_id, fields in groups.items()
    ]


def inbox_pipes(*, user: AbstractBaseUser) -> list:
    """Pipes the pipe filter offers: those `user` reviews."""
    return list(pipes_for_user(user, ("review_pipe",)).select_related("organization").order_by("name"))


def inbox_neighbours(*, user: AbstractBaseUser, task: ReviewTask) -> tuple[int | None, int | None]:
    """(previous, next) task waiting for `user`, in inbox order; next is the first one when `task` is not listed."""
    tasks, views = _scoped(user, timezone.now())
    ids = list(
        tasks.filter(views["waiting"])
        .order_by(F("inbox__due_at").asc(nulls_last=True), "created_at", "pk")
        .values_list("pk", flat=True)[:500]
    )
    if task.pk not in ids:
        others = [i for i in ids if i != task.pk]
        return None, (others[0] if others else None)
    at = ids.index(task.pk)
    return (ids[at - 1] if at > 0 else None), (ids[at + 1] if at + 1 < len(ids) else None)


# ---------------------------------------------------------------- one task


def task_get_for_user(*, user: AbstractBaseUser, task_id: int) -> tuple[ReviewTask, PipeAccess]:
    """The review task and `user`'s access to its pipe; Http404 unless they review that pipe."""
    task = (
        ReviewTask.objects.select_related(
            "pipe__organization",
            "card__pipe__organization",
            "card__phase",
            "card__created_by",
            "run__step__agent",
            "run__entry__phase",
            "assignee",
            "decided_by",
        )
        .filter(pk=task_id)
        .first()
    )
    if task is None:
        raise Http404
    access = pipe_access(user=user, pipe=task.pipe)
    if not access.can_review:
        raise Http404
    return task, access


@dataclass
class ShownValue:
    label: str
    text: str
    masked: bool = False


@dataclass
class Proposal:
    """The agent's draft as the reviewer reads it."""

    decision: str
    confidence: int | None
    reasoning: str
    values: list[ShownValue]
    files: list[dict]


def task_proposal(*, task: ReviewTask, fields: Mapping[str, Field], access: PipeAccess) -> Proposal | None:
    """The agent's proposal (values masked per `access`) and the files its run consumed, if it proposed."""
    if not task.proposal:
        return None
    values = []
    proposed = task.proposal.get("values") or {}
    # A key the review does not set (the agent's writable fields changed since it proposed) is still the
    # pipe's field: shown by its label and masked as the card shows it, never raw.
    others = {
        f.key: f
        for f in Field.objects.filter(pipe_id=task.pipe_id, key__in=[k for k in proposed if k not in fields])
    }
    for key, value in proposed.items():
        f = fields.get(key) or others.get(key)
        if f is None:
            values.append(ShownValue(key, str(value)))
            continue
        values.append(
            ShownValue(
                f.label,
                field_text(f, value, can_view_pii=access.can_view_pii),
                f.pii and not access.can_view_pii,
            )
        )
    files: list[dict] = []
    for event in task.run.events.filter(kind=TraceKind.FILES).order_by("seq"):
        files += [f for f in event.data or [] if isinstance(f, dict)]
    seen: set = set()
    unique = []
    for f in files:
        if f.get("sha256") not in seen:
            seen.add(f.get("sha256"))
            unique.append(f)
    return Proposal(
        decision=str(task.proposal.get("decision", "")),
        confidence=_confidence_pct(task.proposal.get("confidence", task.confidence)),
        reasoning=task.reasoning or str(task.proposal.get("reasoning") or ""),
        values=values,
        files=unique,
    )


def task_signoffs(*, task: ReviewTask) -> list[ReviewSignoff]:
    return list(ReviewSignoff.objects.filter(task=task).select_related("user").order_by("created_at", "pk"))


def task_delegations(*, task: ReviewTask) -> list[ReviewDelegation]:
    return list(
        ReviewDelegation.objects.filter(task=task)
        .select_related("from_user", "to_user", "by")
        .order_by("created_at")
    )


def task_item(*, task: ReviewTask) -> InboxItem | None:
    return InboxItem.objects.filter(task=task).first()


def delegation_candidates(*, task: ReviewTask, user: AbstractBaseUser) -> list:
    """Reviewers of the pipe `task` may be handed to: not the requester, the current assignee, or a signer."""
    signed = ReviewSignoff.objects.filter(task=task).values("user_id")
    skip = {task.card.created_by_id, task.assignee_id, user.pk}
    return [
        u for u in pipe_users_with(task.pipe, "review_pipe").exclude(pk__in=signed)[:100] if u.pk not in skip
    ]


def requestable_fields(*, card: Card) -> list[Field]:
    """Fields a requester can be asked to correct (they see them)."""
    return list(
        Field.objects.filter(pipe_id=card.pipe_id, visible_to_requester=True)
        .exclude(type__in=[FieldType.ASSIGNEE, FieldType.LABEL, FieldType.CONNECTION])
        .select_related("phase")
        .order_by(F("phase__position").asc(nulls_first=True), "position", "pk")
    )


def send_back_phases(*, card: Card) -> list[Phase]:
    """Earlier phases the card may go back to from its phase (by the process's allowed transitions)."""
    current = card.phase
    allowed = list(current.allowed_next.all())
    earlier = Phase.objects.filter(pipe_id=card.pipe_id, position__lt=current.position, is_final=False)
    return [p for p in earlier.order_by("position") if not allowed or p in allowed]


@dataclass
class Blocker:
    """Why the person looking cannot decide the task now."""

    message: str
    level: str = "info"


def decide_blocker(
    *, task: ReviewTask, user: AbstractBaseUser, access: PipeAccess, signoffs: list[ReviewSignoff]
) -> Blocker | None:
    """The reason `user` cannot decide `task` now (the same rules the services enforce), or None."""
    if task.status == ReviewStatus.DECIDED:
        who = (
            task.decided_by.get_full_name() or task.decided_by.get_username()
            if task.decided_by
            else _("the rail")
        )
        return Blocker(
            _("Decided (%(decision)s) by %(who)s.") % {"decision": task.decision, "who": who}, "success"
        )
    if task.status == ReviewStatus.CANCELLED:
        return Blocker(_("Cancelled: the card left the phase of this review."))
    if task.card.created_by_id == user.pk:
        return Blocker(_("You filed this request, so another reviewer decides it."), "warning")
    if any(s.user_id == user.pk for s in signoffs):
        return Blocker(_("You approved it; a second, different reviewer must confirm it."), "info")
    if task.assignee_id and task.assignee_id != user.pk and not access.can_administer:
        name = task.assignee.get_full_name() or task.assignee.get_username()
        return Blocker(_("Assigned to %(name)s.") % {"name": name}, "info")
    return None


def task_timeline_events(*, card: Card, limit: int = 12) -> list:
    return list(card.events.order_by("-seq")[:limit])


@dataclass
class DecisionButton:
    value: str
    label: str
    style: str
    key: str = ""


DECISION_STYLES = {
    "approve": ("btn-success", "a"),
    "reject": ("btn-danger", "r"),
}


def decision_buttons(task: ReviewTask) -> list[DecisionButton]:
    labels = {"approve": _("Approve"), "reject": _("Reject")}
    buttons = []
    for value in task.allowed_decisions:
        style, key = DECISION_STYLES.get(value, ("", ""))
        buttons.append(
            DecisionButton(value, labels.get(value, value.replace("_", " ").capitalize()), style, key)
        )
    order = {"approve": 0, "reject": 2}
    return sorted(buttons, key=lambda b: order.get(b.value, 1))


@dataclass
class ReviewContext:
    """Everything beside the card detail that the review screen shows (built by review_context)."""

    item: InboxItem | None
    fields: dict[str, Field]
    proposal: Proposal | None
    signoffs: list[ReviewSignoff]
    delegations: list[ReviewDelegation]
    blocker: Blocker | None
    buttons: list[DecisionButton]
    first_approval: ReviewSignoff | None
    extra: dict = field(default_factory=dict)
    # The personal-data fields the agent's draft sets, which this reviewer may not see: they may not
    # approve it (inbox_decide refuses), only reject it or ask for changes.
    unseen_draft: list[str] = field(default_factory=list)


def draft_personal_labels(*, task: ReviewTask) -> list[str]:
    """The labels of the personal-data fields the agent's draft of `task` sets, in the form's order."""
    proposed = (task.proposal or {}).get("values") or {}
    if not proposed:
        return []
    return list(
        Field.objects.filter(pipe_id=task.pipe_id, key__in=list(proposed), pii=True)
        .order_by("position", "pk")
        .values_list("label", flat=True)
    )


def review_context(
    *, task: ReviewTask, user: AbstractBaseUser, access: PipeAccess, card: Card
) -> ReviewContext:
    fields = review_fields(task=task, card=card)
    signoffs = task_signoffs(task=task)
    first = next((s for s in signoffs if s.decision == Decision.APPROVE and not s.final), None)
    return ReviewContext(
        item=task_item(task=task),
        fields=fields,
        proposal=task_proposal(task=task, fields=fields, access=access),
        signoffs=signoffs,
        delegations=task_delegations(task=task),
        blocker=decide_blocker(task=task, user=user, access=access, signoffs=signoffs),
        buttons=decision_buttons(task),
        first_approval=first,
        unseen_draft=[] if access.can_view_pii else draft_personal_labels(task=task),
    )
