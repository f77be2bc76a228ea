"""Facts the process model announces; the rail (orchestrator) subscribes. pipes knows nothing of it.

Each signal is sent after the transaction that caused it commits, but card_event_recorded.
"""

from django.dispatch import Signal

# sent with entry_id: a card entered a phase (a PhaseEntry row was recorded); from the write path also
# with pipe_id, phase_id, stamp (the design stamp the write read) and sent=True: the entry was recorded
# handed on (dispatched_at set, dispatch_count counting this send), for the subscriber to send it now,
# and to clear that mark if it cannot.
phase_entered = Signal()
# sent with card_id, kind, field_keys (and requester_email and files, from the write path: whether the
# change brought files, None when not known): something on a card changed.
card_changed = Signal()
# sent with event (a CardEvent just saved) and card, INSIDE the transaction that records it: what a
# subscriber writes (an outbox row) commits or rolls back with the fact. Keep receivers to a few queries.
card_event_recorded = Signal()
# sent with mail_id, after the transaction that wrote the Mail row commits (pipes.mailbox): a receiver
# that hands it to a worker answers True; with none that does, it is sent in the sending process.
mail_queued = Signal()

# Asked inside the transaction that records a phase entry: does anything need the entry sent on (the
# rail: the phase has steps, or the card has a step under way elsewhere to wind up -- a review to
# cancel, a badge to clear)? Each check is called as check(card, phase, stamp) -- the card as the write
# left it, stamp the pipe's design stamp the write read, or None -- and answers True or False. An entry
# no check needs is recorded processed at once: no phase_entered, no broker message. With no check
# registered (pipes alone) every entry is announced.
entry_checks: list = []


def register_entry_check(check) -> None:
    if check not in entry_checks:
        entry_checks.append(check)


def entry_needed(card, phase, stamp) -> bool:
    return not entry_checks or any(check(card, phase, stamp) for check in entry_checks)
