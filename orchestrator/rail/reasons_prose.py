"""Reasons the rail stored as English prose only, before reasons were codes (orchestrator.rail.reasons).

Old runs, review tasks and timeline events keep their sentences; `prose_display` translates the phrases
the rail used to write, piece by piece ("…; …" and "… → human"); anything else (a rule's own reason, a
process's text, an error from another system) is shown as written. Nothing new is written this way.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, pgettext_lazy

_TIERS = {"local": gettext_lazy("local"), "foundation": gettext_lazy("foundation")}

# (pattern of one piece, its translation given the pattern's named groups)
_PIECES: list[tuple[re.Pattern, Callable[[dict], str]]] = []


def _piece(pattern: str):
    def register(render: Callable[[dict], str]):
        _PIECES.append((re.compile(f"^{pattern}$"), render))
        return render

    return register


def _tier(groups: dict) -> str:
    return str(_TIERS.get(groups.get("tier", ""), groups.get("tier", "")))


_piece(r"the card left the phase before its steps ran")(
    lambda g: _("the card left the phase before its steps ran")
)
_piece(r"the card left the phase before the review")(lambda g: _("the card left the phase before the review"))
_piece(r"the card left the phase while the step ran")(
    lambda g: _("the card left the phase while the step ran")
)
_piece(r"the step is decided by a person")(lambda g: _("the step is decided by a person"))
_piece(r"condition not met: step skipped")(lambda g: _("condition not met: step skipped"))
_piece(r"risk high")(lambda g: _("risk high"))
_piece(r"the step has no agent")(lambda g: _("the step has no agent"))
_piece(r"automation: (?P<kinds>.+)")(lambda g: _("automation: %(kinds)s") % g)
_piece(r"rule (?P<n>\d+) matched")(lambda g: _("rule %(n)s matched") % g)
_piece(r"no (?P<tier>local|foundation) model configured")(
    lambda g: _("no %(tier)s model configured") % {"tier": _tier(g)}
)
_piece(r"monthly token budget (?P<budget>[\d,]+) spent")(
    lambda g: _("monthly token budget %(budget)s spent") % g
)
_piece(r"(?P<tier>local|foundation) model (?P<model>\S+) unreachable")(
    lambda g: _("%(tier)s model %(model)s unreachable") % {**g, "tier": _tier(g)}
)
_piece(r"(?P<tier>local|foundation) model (?P<model>\S+) refused the request")(
    lambda g: _("%(tier)s model %(model)s refused the request") % {**g, "tier": _tier(g)}
)
_piece(r"(?P<tier>local|foundation) answer invalid")(
    lambda g: _("%(tier)s answer invalid") % {"tier": _tier(g)}
)
_piece(r"(?P<tier>local|foundation) model (?P<model>\S+) escalated")(
    lambda g: _("%(tier)s model %(model)s escalated") % {**g, "tier": _tier(g)}
)
_piece(r"(?P<tier>local|foundation) confidence (?P<confidence>[\d.]+) below (?P<threshold>[\d.]+)")(
    lambda g: _("%(tier)s confidence %(confidence)s below %(threshold)s") % {**g, "tier": _tier(g)}
)
_piece(
    r"(?P<tier>local|foundation) model (?P<model>\S+) decided (?P<decision>\S+) "
    r"with confidence (?P<confidence>[\d.]+)"
)(
    lambda g: (
        _("%(tier)s model %(model)s decided %(decision)s with confidence %(confidence)s")
        % {**g, "tier": _tier(g)}
    )
)
_piece(
    r"(?P<tier>local|foundation) model (?P<model>\S+) proposed (?P<decision>\S+) "
    r"with confidence (?P<confidence>[\d.]+)"
)(
    lambda g: (
        _("%(tier)s model %(model)s proposed %(decision)s with confidence %(confidence)s")
        % {**g, "tier": _tier(g)}
    )
)
_piece(r"(?P<decision>\S+) proposed without a model")(
    lambda g: _("%(decision)s proposed without a model") % g
)
_piece(r"four eyes: two people approve")(lambda g: _("four eyes: two people approve"))
_piece(r"(?P<field>\S+) (?P<amount>\S+) exceeds authority (?P<limit>\S+)")(
    lambda g: _("%(field)s %(amount)s exceeds authority %(limit)s") % g
)
_piece(r"(?P<field>\S+) empty, authority (?P<limit>\S+) needs an amount")(
    lambda g: _("%(field)s empty, authority %(limit)s needs an amount") % g
)
_piece(r"(?P<field>\S+) unreadable, authority (?P<limit>\S+) needs an amount")(
    lambda g: _("%(field)s unreadable, authority %(limit)s needs an amount") % g
)
_piece(r"(?P<field>\S+) in (?P<currency>\S+), authority (?P<limit>\S+) is in (?P<limit_currency>\S+)")(
    lambda g: _("%(field)s in %(currency)s, authority %(limit)s is in %(limit_currency)s") % g
)
_piece(r"the agent's answer could not be applied \((?P<why>.*)\)")(
    lambda g: _("the agent's answer could not be applied (%(why)s)") % g
)

# Whole reasons a person's action leaves on the timeline (review decisions, retries, escalations);
# what follows their colon is the person's own text or field labels, shown as written.
_WHOLE: list[tuple[re.Pattern, Callable[[dict], str]]] = [
    (
        re.compile(r"^Decided (?P<decision>\S+)(?P<rest>: .*)?$", re.S),
        lambda g: _("Decided %(decision)s") % g + (g["rest"] or ""),
    ),
    (re.compile(r"^Retry of (?P<step>.+)$", re.S), lambda g: _("Retry of %(step)s") % g),
    (
        re.compile(
            r"^Approved \((?P<n>\d+) of (?P<m>\d+)\): a second reviewer must confirm(?P<rest>: .*)?$", re.S
        ),
        lambda g: (
            _("Approved (%(n)d of %(m)d): a second reviewer must confirm")
            % {"n": int(g["n"]), "m": int(g["m"])}
            + (g["rest"] or "")
        ),
    ),
    (
        re.compile(r"^Delegated the review to (?P<name>[^:]+)(?P<rest>: .*)?$", re.S),
        lambda g: _("Delegated the review to %(name)s") % g + (g["rest"] or ""),
    ),
    (
        re.compile(r"^Edited the agent's draft: (?P<fields>.+)$", re.S),
        lambda g: _("Edited the agent's draft: %(fields)s") % g,
    ),
    (
        re.compile(r"^Asked the requester to correct: (?P<fields>.+)$", re.S),
        lambda g: _("Asked the requester to correct: %(fields)s") % g,
    ),
    (
        re.compile(r"^Review overdue \(SLA (?P<hours>\d+) h\): escalated to the pipe's admins$"),
        lambda g: (
            _("Review overdue (SLA %(hours)d h): escalated to the pipe's admins") % {"hours": int(g["hours"])}
        ),
    ),
]

_HUMAN = pgettext_lazy("the rail hands a step over to", "human")


def _one(piece: str) -> str:
    for pattern, render in _PIECES:
        match = pattern.match(piece)
        if match:
            return render(match.groupdict())
    return piece


def _pieces(text: str) -> str:
    return "; ".join(_one(p) for p in text.split("; "))


def prose_display(reason: str | None) -> str:
    """A reason stored as prose only (before reasons were codes), in the active language where the rail's
    phrases are known; anything else is shown as written."""
    if not reason:
        return ""
    text = str(reason)
    for pattern, render in _WHOLE:
        match = pattern.match(text)
        if match:
            return render(match.groupdict())
    if text.startswith("no model reachable (") and text.endswith(") → human"):
        inner = text[len("no model reachable (") : -len(") → human")]
        return _("no model reachable (%(why)s)") % {"why": _pieces(inner)} + f" → {_HUMAN}"
    head, arrow, tail = text.rpartition(" → ")
    if not arrow:
        return _pieces(text)
    if tail == "human":
        return f"{_pieces(head)} → {_HUMAN}"
    decision = re.fullmatch(r"(?P<decision>\S+) without a model", tail)
    if decision:
        return f"{_pieces(head)} → " + _("%(decision)s without a model") % decision.groupdict()
    return text
