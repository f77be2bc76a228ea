"""Who writes: a person, an agent within its scope, or the system; the gates that check them, and an agent's authority limit."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.utils.translation import gettext as _

from ..choices import ActorKind, FieldType
from ..fieldtypes import display_value
from ..models import Card, Field, Pipe
from ..roles import PipeAccess, pipe_access
from .errors import CardAuthorityError, CardPermissionError

# ---------------------------------------------------------------- actors


@dataclass(frozen=True)
class Authority:
    """An agent's authority limit: it may change a card only while `field` holds at most `limit`.

    The limit is in `currency`, or in the pipe's organization's currency when that is empty; a number
    field has no currency and is read in the limit's."""

    field: str
    limit: Decimal
    currency: str = ""


@dataclass(frozen=True)
class Actor:
    """Who is changing a card: a person, an agent within its scope, or the system.

    `public`: an anonymous requester filing through a pipe's public start form (a system actor that may
    only create cards, and only where the start form is public)."""

    kind: str
    user: AbstractBaseUser | None = None
    name: str = ""
    pipe_id: int | None = None  # agents act on one pipe
    writable_fields: frozenset[str] = field(default_factory=frozenset)
    allowed_phases: frozenset[str] = field(default_factory=frozenset)  # phase keys an agent may move to
    authority: Authority | None = None  # an agent's authority limit, if it has one
    may_see_pii: bool = False  # an agent's: it is shown personal data (else masked), and may change it
    public: bool = False

    @classmethod
    def for_user(cls, user: AbstractBaseUser) -> Actor:
        return cls(kind=ActorKind.USER, user=user)

    @classmethod
    def system(cls, name: str = "Trilho") -> Actor:
        return cls(kind=ActorKind.SYSTEM, name=name)

    @classmethod
    def anonymous(cls, name: str) -> Actor:
        """Someone without an account, through a pipe's public start form."""
        return cls(kind=ActorKind.SYSTEM, name=name, public=True)

    @classmethod
    def agent(
        cls,
        *,
        name: str,
        pipe_id: int,
        writable_fields: Iterable[str] = (),
        allowed_phases: Iterable[str] = (),
        authority: Authority | None = None,
        may_see_pii: bool = False,
    ) -> Actor:
        return cls(
            kind=ActorKind.AGENT,
            name=name,
            pipe_id=pipe_id,
            writable_fields=frozenset(writable_fields),
            allowed_phases=frozenset(allowed_phases),
            authority=authority,
            may_see_pii=may_see_pii,
        )

    @property
    def label(self) -> str:
        if self.kind == ActorKind.USER and self.user is not None:
            return self.user.get_full_name() or self.user.get_username()
        return self.name or str(self.kind)

    @property
    def user_id(self) -> int | None:
        return self.user.pk if self.user is not None else None


def _access(actor: Actor, pipe: Pipe) -> PipeAccess:
    return pipe_access(user=actor.user, pipe=pipe)


def _deny(message: str) -> CardPermissionError:
    return CardPermissionError(message)


def _check_agent_pipe(actor: Actor, pipe: Pipe) -> None:
    if actor.pipe_id != pipe.pk:
        raise _deny(
            _("Agent %(name)s does not act on the pipe %(pipe)s.") % {"name": actor.name, "pipe": pipe.name}
        )


def _is_own_request(actor: Actor, card: Card) -> bool:
    return actor.user is not None and card.created_by_id == actor.user.pk


def _refuse_public(actor: Actor) -> None:
    """Someone without an account only files requests; every other change needs a person, agent or system."""
    if actor.public:
        raise _deny(_("Without an account you may only file a request through a public form."))


_AMOUNT_TYPES = (FieldType.NUMBER, FieldType.CURRENCY, FieldType.PERCENTAGE)


def _plain_amount(value: Decimal) -> str:
    """52000 → "52,000"; 10000.50 → "10,000.50" (for the rail's one-line reasons)."""
    return f"{value:,.0f}" if value == value.to_integral() else f"{value:,.2f}"


def _read_amount(f: Field | None, value: Any) -> tuple[Decimal, str] | None:
    """(amount, currency) of a stored number, percentage or currency value ("" when it has no currency);
    None when it cannot be read as one."""
    if f is None or f.type not in _AMOUNT_TYPES:
        return None
    currency = ""
    if f.type == FieldType.CURRENCY:
        if not isinstance(value, dict) or not isinstance(value.get("currency"), str):
            return None
        value, currency = value.get("amount"), value["currency"]
    if isinstance(value, bool) or not isinstance(value, str | int | float | Decimal):
        return None
    try:
        amount = Decimal(str(value).strip())
    except InvalidOperation:
        return None
    return (amount, currency) if amount.is_finite() else None


def authority_check(
    *, actor: Actor, pipe: Pipe, values: Mapping[str, Any], fields: Mapping[str, Field] | None = None
) -> None:
    """Raise CardAuthorityError unless `values` hold, in the agent's authority field, a readable amount
    in the limit's currency and at most the limit: an empty, unreadable or foreign amount is not the
    agent's to decide. Nothing to check for other actors, or an agent without a limit.

    The write path calls it on what the card would hold after an agent's change; the rail may call it
    earlier, to spare a model call whose answer could not be applied. `fields`: the pipe's fields by
    key, if the caller has them."""
    authority = actor.authority
    if actor.kind != ActorKind.AGENT or authority is None:
        return
    if fields is None:
        fields = {f.key: f for f in pipe.fields.all()}
    key, limit = authority.field, authority.limit
    f = fields.get(key)
    limit_currency = authority.currency or pipe.organization.currency
    limit_text = _plain_amount(limit)
    shown_limit = (
        f"{limit_currency} {limit_text}" if f is not None and f.type == FieldType.CURRENCY else limit_text
    )
    names = {"agent": actor.name, "limit": shown_limit}
    value = values.get(key)
    read = _read_amount(f, value)
    params: dict[str, str] = {}
    if value in (None, "", {}):
        message = _(
            "This is empty, and %(agent)s may act only on an amount within its authority of %(limit)s."
        )
        reason = f"{key} empty, authority {limit_text} needs an amount"
        code = "authority_empty"
    elif read is None:
        message = _("%(agent)s cannot read this as an amount within its authority of %(limit)s.")
        reason = f"{key} unreadable, authority {limit_text} needs an amount"
        code = "authority_unreadable"
    elif read[1] and read[1] != limit_currency:
        names |= {"currency": read[1], "limit_currency": limit_currency}
        message = _(
            "This amount is in %(currency)s, but the authority of %(agent)s (%(limit)s) is in %(limit_currency)s."
        )
        reason = f"{key} in {read[1]}, authority {limit_text} is in {limit_currency}"
        code, params = "authority_currency", {"currency": read[1], "limit_currency": limit_currency}
    elif read[0] > limit:
        names |= {"amount": display_value(f, value)}
        message = _("%(amount)s is above the authority of %(agent)s (%(limit)s).")
        reason = f"{key} {_plain_amount(read[0])} exceeds authority {limit_text}"
        code, params = "authority_exceeded", {"amount": _plain_amount(read[0])}
    else:
        return
    raise CardAuthorityError(
        {key: [message % names, _("A person decides.")]},
        fields={key: f.label if f is not None else key},
        rail_reason=reason,
        rail_code=code,
        rail_params={"field": key, "label": f.label if f is not None else key, "limit": limit_text, **params},
    )
