"""The errors a refused write raises: CardError and its kinds, each naming the offending fields."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from django.utils.translation import gettext as _

from ..models import Card

NON_FIELD = "__all__"


# ---------------------------------------------------------------- errors


class CardError(Exception):
    """A rejected change. `errors` maps field keys (or "__all__") to plain-language reasons."""

    code = "invalid"

    def __init__(
        self, errors: Mapping[str, Sequence[str] | str] | str, *, fields: Mapping[str, str] | None = None
    ):
        if isinstance(errors, str):
            errors = {NON_FIELD: [errors]}
        self.errors: dict[str, list[str]] = {
            k: [v] if isinstance(v, str) else list(v) for k, v in errors.items()
        }
        self.field_labels: dict[str, str] = dict(fields or {})
        super().__init__(self.message)

    @property
    def message(self) -> str:
        parts = []
        for key, reasons in self.errors.items():
            label = self.field_labels.get(key)
            text = " ".join(reasons)
            parts.append(f"{label}: {text}" if label and key != NON_FIELD else text)
        return " ".join(parts)

    @property
    def field_keys(self) -> list[str]:
        return [k for k in self.errors if k != NON_FIELD]


class CardPermissionError(CardError):
    """The actor may not do this."""

    code = "forbidden"


class CardConflictError(CardError):
    """Someone else changed the card since the actor loaded it."""

    code = "conflict"


class CardTransitionError(CardError):
    """The card may not move there (yet): missing required fields, a disallowed transition or a full phase."""

    code = "transition"


class CardAlreadySubmittedError(CardError):
    """The same form submission already filed a card (a double click, a retried post): `card` is that one."""

    code = "duplicate"

    def __init__(self, card: Card):
        super().__init__(_("This form was already sent as %(ref)s.") % {"ref": card.reference})
        self.card = card


class CardAuthorityError(CardPermissionError):
    """An agent may not change a card whose amount is above its authority limit, unreadable or in another
    currency: a person decides. `rail_reason` says why in the rail's English words; `rail_code` and
    `rail_params` say it as data the rail renders in the reader's language (orchestrator.rail.reasons)."""

    code = "authority"

    def __init__(self, errors, *, fields=None, rail_reason: str = "", rail_code: str = "", rail_params=None):
        super().__init__(errors, fields=fields)
        self.rail_reason = rail_reason
        self.rail_code = rail_code
        self.rail_params = dict(rail_params or {})
