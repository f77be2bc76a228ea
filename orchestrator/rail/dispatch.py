"""The rail's subscription to pipes' facts: a recorded phase entry is sent to a worker.

If the broker is unreachable the entry stays undispatched; the periodic sweep (`entries_sweep`,
run by the task orchestrator.tasks.sweep_phase_entries) sends it later, so no entry is lost.

A file attached to a card is sent to a worker too, to have its text extracted there
(agents.documents), never in a web request.
"""

import logging
from datetime import timedelta

from celery import current_app
from django.conf import settings
from django.db.models import Exists, F, OuterRef, Q, Subquery
from django.dispatch import receiver
from django.utils import timezone

from agents.documents import document_text_request
from pipes import designcache
from pipes.choices import EventKind, RailStatus
from pipes.hooks import card_changed, mail_queued, phase_entered, register_entry_check
from pipes.models import CardFile, Phase, PhaseEntry, Pipe

from ..models import Mechanism, RunStatus, Step, StepRun, Trigger

log = logging.getLogger(__name__)

# The tasks this module sends, by the names they are registered under (orchestrator.rail.tasks). Sent by
# name so that dispatch never imports the tasks, which import it; the names are what queued messages
# and the beat schedule carry, so they never change.
RUN_PHASE_ENTRY = "orchestrator.tasks.run_phase_entry"
EXTRACT_DOCUMENT = "orchestrator.tasks.extract_document"
SEND_MAIL = "orchestrator.tasks.send_mail"


# Actions that call another system: a step with one is never run in one transaction (the rail's loop)
# and its phase's entries never take the fast lane. An email is no such call: it is written to the
# outbox with the result and sent after commit.
CALLS_OUT = frozenset({"http"})


def step_is_quick(mechanism: str, actions: list | None) -> bool:
    """An automation whose actions call no other system: its run is a few milliseconds of database work."""
    return mechanism == Mechanism.AUTOMATION and not any(
        isinstance(action, dict) and action.get("type") in CALLS_OUT for action in actions or []
    )


def dispatch_entry(entry_id: int, *, recorded: bool = False, fast: bool = False) -> bool:
    """Send the entry to a worker; False (and the entry left to the sweep) when the broker is down.

    `recorded`: the write path recorded the entry handed on already (dispatched_at, and this send in
    dispatch_count; pipes.hooks.phase_entered's `sent`), so a send costs no UPDATE; a refused one
    clears that record, as if the entry had never been sent. `fast`: its phase's steps are all quick
    (step_is_quick); it goes to the fast lane when one is set (settings.TRILHO_FAST_QUEUE), else to the
    default queue like any other entry."""
    lane = {"queue": settings.TRILHO_FAST_QUEUE} if fast and settings.TRILHO_FAST_QUEUE else {}
    try:
        current_app.send_task(RUN_PHASE_ENTRY, args=[entry_id], retry=False, **lane)
    except Exception:  # noqa: BLE001 - any broker failure leaves the entry to the sweep
        log.warning("broker unavailable; phase entry %s left for the sweep", entry_id, exc_info=True)
        if recorded:
            PhaseEntry.objects.filter(pk=entry_id, processed_at__isnull=True).update(
                dispatched_at=None, dispatch_count=F("dispatch_count") - 1
            )
        return False
    if not recorded:
        PhaseEntry.objects.filter(pk=entry_id).update(
            dispatched_at=timezone.now(), dispatch_count=F("dispatch_count") + 1
        )
    return True


def _phases_with_steps(pipe: Pipe) -> frozenset[int]:
    return frozenset(
        Step.objects.filter(phase__pipe_id=pipe.pk).values_list("phase_id", flat=True).distinct()
    )


_STEPS_CACHE = ("rail.phases_with_steps", _phases_with_steps)


def _quick_phases(pipe: Pipe) -> frozenset[int]:
    """The phases whose steps, whatever their trigger, are all quick (step_is_quick)."""
    quick, slow = set(), set()
    for phase_id, mechanism, actions in Step.objects.filter(phase__pipe_id=pipe.pk).values_list(
        "phase_id", "mechanism", "actions"
    ):
        (quick if step_is_quick(mechanism, actions) else slow).add(phase_id)
    return frozenset(quick - slow)


_QUICK_CACHE = ("rail.quick_phases", _quick_phases)


def phase_is_quick(pipe_id: int, phase_id: int, stamp: int | None = None) -> bool:
    """Whether an entry into this phase may take the fast lane: from the design cache, no query once known."""
    return phase_id in designcache.cached(Pipe(pk=pipe_id), *_QUICK_CACHE, stamp)


def phase_has_steps(phase: Phase, stamp: int | None) -> bool:
    """Whether `phase` has steps: from the design cache (a step written changes the pipe's stamp)."""
    return phase.pk in designcache.cached(Pipe(pk=phase.pipe_id), *_STEPS_CACHE, stamp)


def entry_needs_rail(card, phase: Phase, stamp: int | None) -> bool:
    """Whether a card entering `phase` has anything for the rail to do: steps to run there, or a step
    under way in the phase it left (a review to cancel, a running or failed badge to clear: the card's
    rail status says so). A move into a phase without steps of an idle card asks no query."""
    return card.rail_status not in ("", RailStatus.IDLE) or phase_has_steps(phase, stamp)


register_entry_check(entry_needs_rail)


@receiver(phase_entered)
def on_phase_entered(
    sender, entry_id: int, pipe_id=None, phase_id=None, stamp=None, sent: bool = False, **kwargs
) -> None:
    """Send the entry to a worker, unless its phase has no steps: then it is done here, in one UPDATE.

    Most phases of a board have no steps; a move into one then costs no broker round trip. An entry
    into a phase that had steps at the design the write read (the design cache says so, no query) is
    sent at once: the worker runs the steps of the design it reads; to the fast lane, when one is
    set, if those steps are all quick (step_is_quick)."""
    known = phase_id is not None and pipe_id is not None
    if not (known and phase_id in designcache.cached(Pipe(pk=pipe_id), *_STEPS_CACHE, stamp)):
        now = timezone.now()
        if (
            PhaseEntry.objects.filter(pk=entry_id, processed_at__isnull=True)
            .exclude(Exists(Step.objects.filter(phase_id=OuterRef("phase_id"))))
            .update(processed_at=now, dispatched_at=now, dispatch_count=F("dispatch_count") - int(sent))
        ):
            return  # done here: the send the write path counted never happens
    fast = known and bool(settings.TRILHO_FAST_QUEUE) and phase_is_quick(pipe_id, phase_id, stamp)
    dispatch_entry(entry_id, recorded=sent, fast=fast)


@receiver(card_changed)
def on_card_changed(sender, card_id: int, kind: str, **kwargs) -> None:
    """A card became late or expired: if its phase has steps for that, its stay is run again.

    The entry is re-opened first, so the periodic sweep sends it if the broker is down now."""
    if kind not in (Trigger.LATE, Trigger.EXPIRED):
        return
    entry_id = (
        PhaseEntry.objects.filter(card_id=card_id, left_at__isnull=True, phase__steps__trigger=kind)
        .values_list("pk", flat=True)
        .first()
    )
    if entry_id is None:
        return
    PhaseEntry.objects.filter(pk=entry_id).update(processed_at=None, dispatched_at=None)
    dispatch_entry(entry_id)


def dispatch_document_extraction(card_file: CardFile) -> bool:
    """Send `card_file` to a worker for its text, unless it has it or a request is out; False when not sent.

    With the broker down the file stays pending; the next preview of it sends it again once the
    request is stale (agents.documents.document_text_request), and an agent extracts it inline."""
    if not document_text_request(card_file):
        return False
    try:
        current_app.send_task(EXTRACT_DOCUMENT, args=[card_file.pk], retry=False)
    except Exception:  # noqa: BLE001 - any broker failure leaves the file pending
        log.warning("broker unavailable; text of file %s not extracted yet", card_file.pk, exc_info=True)
        return False
    return True


@receiver(card_changed)
def on_files_added(sender, card_id: int, kind: str, **kwargs) -> None:
    """Files came with a new card or were attached: their text is extracted on a worker right away,
    so a reviewer's preview and an agent's prompt find it ready."""
    if kind not in (EventKind.CREATED, EventKind.FILE_ADDED) or kwargs.get("files") is False:
        return  # the write path says the change brought no files: nothing to ask for
    for card_file in CardFile.objects.filter(card_id=card_id, extracted_text__isnull=True):
        dispatch_document_extraction(card_file)


@receiver(mail_queued)
def on_mail_queued(sender, mail_id: int, **kwargs) -> bool:
    """An email written to the outbox (pipes.mailbox) is sent by a worker, not by the request that wrote
    it: True, it is handed on. With the broker down it waits for the sweep (pipes.mailbox.mail_sweep),
    never for the mail server. False where emails are sent in-process (settings.TRILHO_MAIL_BY_WORKER:
    off with the tests' in-memory broker, which no worker drains)."""
    if not settings.TRILHO_MAIL_BY_WORKER:
        return False
    try:
        current_app.send_task(SEND_MAIL, args=[mail_id], retry=False)
    except Exception:  # noqa: BLE001 - any broker failure leaves the message to the sweep
        log.warning("broker unavailable; email %s left for the sweep", mail_id, exc_info=True)
    return True


# ---------------------------------------------------------------- the outbox sweep


def entries_sweep(*, older_than_seconds: int = 30) -> int:
    """Re-dispatch entries nobody finished: never sent (the broker was down), or sent long ago and
    still unprocessed (a worker died holding them). Returns how many were sent."""
    cutoff = timezone.now() - timedelta(seconds=older_than_seconds)
    _reopen_overdue(cutoff)
    pending = PhaseEntry.objects.filter(processed_at__isnull=True).filter(
        Q(dispatched_at__isnull=True, entered_at__lte=cutoff) | Q(dispatched_at__lte=cutoff)
    )
    sent = 0
    for entry_id in pending.order_by("entered_at").values_list("pk", flat=True)[:500]:
        sent += dispatch_entry(entry_id)
    return sent


def stale_leases_sweep() -> int:
    """Send again, at once, each unfinished entry whose running step's lease ran out (its worker died
    or stopped renewing it) and that was not sent since. Beat runs this every few seconds, so a step
    killed mid-run runs again within seconds of its lease running out. Returns how many were sent."""
    stale = StepRun.objects.filter(
        entry_id=OuterRef("pk"), status=RunStatus.RUNNING, lease_until__lt=timezone.now()
    ).order_by("-lease_until")
    pending = (
        PhaseEntry.objects.filter(processed_at__isnull=True)
        .annotate(stale_since=Subquery(stale.values("lease_until")[:1]))
        .filter(stale_since__isnull=False)
        .filter(Q(dispatched_at__isnull=True) | Q(dispatched_at__lt=F("stale_since")))
    )
    sent = 0
    for entry_id in pending.order_by("entered_at").values_list("pk", flat=True)[:500]:
        sent += dispatch_entry(entry_id)
    return sent


def _reopen_overdue(cutoff) -> int:
    """Re-open stays whose card became late or expired but whose steps for that never started.

    The SLA mark re-opens the stay after its commit (on_card_changed); if that process died
    in between, the sweep finds the stay here. Cheap when no phase has such steps."""
    reopened = 0
    for trigger, mark in ((Trigger.LATE, "late_at"), (Trigger.EXPIRED, "expired_at")):
        not_started = Step.objects.filter(trigger=trigger, phase_id=OuterRef("phase_id")).exclude(
            Exists(StepRun.objects.filter(entry_id=OuterRef(OuterRef("pk")), step_id=OuterRef("pk")))
        )
        stays = PhaseEntry.objects.filter(
            phase_id__in=Step.objects.filter(trigger=trigger).values("phase_id"),
            left_at__isnull=True,
            processed_at__isnull=False,
            card__updated_at__lte=cutoff,
            **{f"card__{mark}__isnull": False},
        )
        if trigger == Trigger.LATE:
            stays = stays.filter(card__late_at__gte=F("entered_at"))  # late in this stay, not an earlier one
        ids = list(stays.filter(Exists(not_started)).values_list("pk", flat=True)[:500])
        reopened += PhaseEntry.objects.filter(pk__in=ids).update(processed_at=None, dispatched_at=None)
    return reopened
