"""The one write path: every change to a card goes through these functions.

Each public function runs in one transaction and, for every kind of actor (a person, an
agent acting within its scope, or the system):

1. checks the actor may do it;
2. parses and validates values by field type;
3. enforces the process (start-form required fields, required fields of the phase being
   left, allowed transitions, conditional fields, WIP limits);
4. locks the card row and checks its version, so no update is lost;
5. appends a hash-chained event to the card's timeline;
6. records phase entries, announced to the rail after commit (pipes.hooks).

A rejected call raises CardError (or a subclass) naming each offending field and changes nothing.

The package re-exports the public names so callers import from `pipes.services`:
errors (refusals), actors (who writes, authority limits), common (what every write shares),
cards (card writes), files (attachments), overdue (SLA marks), erasure (personal data).
"""

from .actors import Actor, Authority, authority_check
from .cards import (
    card_assign,
    card_check_start,
    card_comment,
    card_create,
    card_move,
    card_record_step,
    card_request_changes,
    card_set_due,
    card_set_labels,
    card_set_rail_status,
    card_update_fields,
)
from .common import card_lock, card_lock_held, card_writes_join, card_writes_together
from .erasure import ERASED, CardErasureResult, card_erase_personal_data, scrub_personal_data
from .errors import (
    NON_FIELD,
    CardAlreadySubmittedError,
    CardAuthorityError,
    CardConflictError,
    CardError,
    CardPermissionError,
    CardTransitionError,
)
from .files import card_attach_files
from .overdue import OVERDUE_KINDS, card_mark_overdue, cards_clear_overdue

__all__ = [
    "NON_FIELD",
    "CardError",
    "CardPermissionError",
    "CardConflictError",
    "CardTransitionError",
    "CardAlreadySubmittedError",
    "CardAuthorityError",
    "Authority",
    "Actor",
    "authority_check",
    "card_check_start",
    "card_lock",
    "card_lock_held",
    "card_writes_join",
    "card_writes_together",
    "card_create",
    "card_update_fields",
    "card_move",
    "card_assign",
    "card_set_labels",
    "card_set_due",
    "card_comment",
    "card_request_changes",
    "card_record_step",
    "card_set_rail_status",
    "card_attach_files",
    "OVERDUE_KINDS",
    "card_mark_overdue",
    "cards_clear_overdue",
    "ERASED",
    "CardErasureResult",
    "scrub_personal_data",
    "card_erase_personal_data",
]
