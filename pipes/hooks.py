"""Facts the process model announces; the rail (orchestrator) subscribes. pipes knows nothing of it.

Each signal is sent after the transaction that caused it commits, but card_event_recorded.
"""

from django.dispatch import Signal

# sent with entry_id: a card entered a phase (a PhaseEntry row was recorded).
phase_entered = Signal()
# sent with card_id, kind, field_keys: something on a card changed.
card_changed = Signal()
# sent with event (a CardEvent just saved) and card, INSIDE the transaction that records it: what a
# subscriber writes (an outbox row) commits or rolls back with the fact. Keep receivers to a few queries.
card_event_recorded = Signal()
