"""The rail's subscription to pipes' facts: a recorded phase entry is sent to a worker.

If the broker is unreachable the entry stays undispatched; the periodic sweep
(orchestrator.tasks.sweep_phase_entries) sends it later, so no entry is lost.

A file attached to a card is sent to a worker too, to have its text extracted there
(agents.documents), never in a web request.
"""

import logging

from django.db.models import Exists, F, OuterRef
from django.dispatch import receiver
from django.utils import timezone

from agents.documents import document_text_request
from pipes.choices import EventKind
from pipes.hooks import card_changed, phase_entered
from pipes.models import CardFile, PhaseEntry

from .models import Step, Trigger

log = logging.getLogger(__name__)


def dispatch_entry(entry_id: int) -> bool:
    """Send the entry to a worker; False (and the entry left to the sweep) when the broker is down."""
    from .tasks import run_phase_entry

    try:
        run_phase_entry.apply_async(args=[entry_id], retry=False)
    except Exception:  # noqa: BLE001 - any broker failure leaves the entry to the sweep
        log.warning("broker unavailable; phase entry %s left for the sweep", entry_id, exc_info=True)
        return False
    PhaseEntry.objects.filter(pk=entry_id).update(
        dispatched_at=timezone.now(), dispatch_count=F("dispatch_count") + 1
    )
    return True


@receiver(phase_entered)
def on_phase_entered(sender, entry_id: int, **kwargs) -> None:
    """Send the entry to a worker, unless its phase has no steps: then it is done here, in one UPDATE.

    Most phases of a board have no steps; a move into one then costs no broker round trip."""
    now = timezone.now()
    if (
        PhaseEntry.objects.filter(pk=entry_id, processed_at__isnull=True)
        .exclude(Exists(Step.objects.filter(phase_id=OuterRef("phase_id"))))
        .update(processed_at=now, dispatched_at=now)
    ):
        return
    dispatch_entry(entry_id)


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
    from .tasks import extract_document

    if not document_text_request(card_file):
        return False
    try:
        extract_document.apply_async(args=[card_file.pk], retry=False)
    except Exception:  # noqa: BLE001 - any broker failure leaves the file pending
        log.warning("broker unavailable; text of file %s not extracted yet", card_file.pk, exc_info=True)
        return False
    return True


@receiver(card_changed)
def on_files_added(sender, card_id: int, kind: str, **kwargs) -> None:
    """Files came with a new card or were attached: their text is extracted on a worker right away,
    so a reviewer's preview and an agent's prompt find it ready."""
    if kind not in (EventKind.CREATED, EventKind.FILE_ADDED):
        return
    for card_file in CardFile.objects.filter(card_id=card_id, extracted_text__isnull=True):
        dispatch_document_extraction(card_file)
