"""The board's two hottest fragments, a card tile and a column head, written in Python.

Every card move answers with one tile and two column heads, and a board shows a head per phase and
a tile per card: rendered by the template engine (about 75 nodes, 70 variable lookups and a dozen
translation tags), they cost more CPU than the move's whole write. Here they are one function each,
with the same HTML, the same translations (the same msgids as the template tags had) and the same
escaping (every value escaped; only markup written here is not). `board.html` draws them with
`{% board_tile card %}` and `{% column_head column %}`.
"""

from __future__ import annotations

from django import template
from django.utils.formats import date_format, localize
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe
from django.utils.timezone import template_localtime
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from .trilho import display_name, fragment_cached, hours, initials

register = template.Library()


def _tile_body(card, *, oob: bool, move_error: bool, can_move: bool, move_label: str, qs: str) -> str:
    """The tile up to its move alert: it changes only with its card (see `Tile.cache_key`)."""
    classes = "card"
    if card.is_late:
        classes += " is-late"
    if card.finished_at:
        classes += " is-finished"
    if move_error:
        classes += " has-alert"
    ref = escape(card.reference)
    swap = ' hx-swap-oob="outerHTML"' if oob else ""
    parts = [
        f'<article class="{classes}" id="card-{card.pk:d}" role="listitem" data-card-id="{card.pk:d}" '
        f'data-version="{card.version:d}" data-phase-id="{card.phase_id:d}" data-created="{escape(card.order_key)}" '
        f'data-stamp="{escape(card.stamp)}" data-move-url="{escape(card.move_url)}"'
        f"{swap}>\n"
        f'<div class="card-top">\n<span class="card-ref">{ref}</span>'
    ]
    if card.is_late:
        parts.append(f'<span class="badge badge-danger">{escape(_("Late"))}</span>')
    if card.is_overdue:
        parts.append(f'<span class="badge badge-warning">{escape(_("Overdue"))}</span>')
    if card.rail_badge:
        tone, text = card.rail_badge
        title = f' title="{escape(card.rail_note)}"' if card.rail_note else ""
        parts.append(f'<span class="badge badge-{escape(tone)}"{title}>{escape(text)}</span>')
    if can_move:
        parts.append(
            '<button type="button" class="card-move" data-move-menu aria-haspopup="menu" aria-expanded="false" '
            f'aria-label="{ref}: {escape(move_label)}">⇄</button>'
        )
    url = escape(f"{card.detail_url}{qs}")
    parts.append(
        f'\n</div>\n<a class="card-title" href="{url}" hx-get="{url}" hx-target="#panel">{escape(card.title)}</a>\n'
    )
    key_values = card.key_values
    if key_values:
        rows = "".join(
            f"<div><dt>{escape(label)}</dt><dd>{escape(text)}</dd></div>" for label, text in key_values
        )
        parts.append(f'<dl class="card-fields">{rows}</dl>\n')
    labels, people = card.label_list, card.assignee_list
    if labels or people or card.due_at:
        parts.append('<div class="card-foot">')
        for label in labels:
            parts.append(
                f'<span class="label-chip" style="background: {escape(label.color)}">{escape(label.name)}</span>'
            )
        if card.due_at:
            due = template_localtime(card.due_at)
            over = " due-over" if card.is_overdue else ""
            parts.append(
                f'<span class="due{over}" title="{escape(date_format(due, "SHORT_DATETIME_FORMAT"))}">'
                f"{escape(date_format(due, 'M j'))}</span>"
            )
        if people:
            avatars = "".join(
                f'<span class="avatar" title="{escape(display_name(p))}">{escape(initials(p))}</span>'
                for p in people
            )
            parts.append(f'<span class="avatars">{avatars}</span>')
        parts.append("</div>\n")
    return "".join(parts)


def _move_alert(context) -> str:
    target = context.get("move_target")
    missing = context.get("missing") or []
    head = _("Not moved to %(phase)s.") % {"phase": escape(target.name if target is not None else "")}
    if missing:
        names = ", ".join(f"<b>{escape(label)}</b>" for _key, label in missing)
        why = f"{escape(_('Fill in first:'))} {names}."
    else:
        why = escape(getattr(context.get("move_error"), "message", ""))
    actions = ""
    if missing:
        focus = escape(context.get("focus_url") or "")
        actions += f'<a href="{focus}" hx-get="{focus}" hx-target="#panel">{escape(_("Open the card at these fields"))}</a>\n'
    actions += f'<button type="button" class="linklike" data-dismiss-alert>{escape(_("Dismiss"))}</button>'
    return (
        f'<div class="card-alert" role="alert">\n<p><strong>{head}</strong>\n{why}</p>\n'
        f'<p class="card-alert-actions">\n{actions}\n</p>\n</div>\n'
    )


@register.simple_tag(takes_context=True)
def board_tile(context, card) -> SafeString:
    """A card's board tile; with `move_error` in the context, the reason its move was refused under it."""
    oob = bool(context.get("oob"))
    move_error = bool(context.get("move_error"))
    key = ("tile", card.cache_key, str(context.get("tile_key", "")), str(oob), "alert" if move_error else "")
    body = fragment_cached(
        key,
        lambda: _tile_body(
            card,
            oob=oob,
            move_error=move_error,
            can_move=bool(context.get("can_move")),
            move_label=str(context.get("move_label", "")),
            qs=str(context.get("qs", "")),
        ),
    )
    alert = _move_alert(context) if move_error else ""
    return mark_safe(f"{body}{alert}</article>")  # noqa: S308 - every value escaped above


@register.simple_tag(takes_context=True)
def column_head(context, column) -> SafeString:
    """A column's head: its name, its counts (shown of total under filters), SLA, WIP and late cards."""
    phase, counts = column.phase, column.counts
    filters = context.get("filters")
    oob = context.get("oob")
    pk = f"{phase.pk:d}"
    wip_reached = column.wip_reached
    final = '<span class="final-mark" aria-hidden="true">✓</span>' if phase.is_final else ""
    if filters is not None and filters.active:
        count = f'{localize(counts.shown)}<span class="of">/{localize(counts.total)}</span>'
    else:
        count = localize(counts.total)
    meta = []
    if phase.is_final:
        meta.append(f'<span class="meta-final">{escape(_("Final phase"))}</span>')
    if phase.sla_hours:
        sla = _("SLA %(sla)s") % {"sla": escape(hours(phase.sla_hours))}
        title = escape(_("Service level: how long a card may stay in this phase"))
        meta.append(f'<span title="{title}">{sla}</span>')
    if phase.wip_limit:
        wip = _("WIP %(n)s/%(limit)s") % {"n": localize(counts.total), "limit": localize(phase.wip_limit)}
        warn = " wip-warn" if wip_reached else ""
        meta.append(f'<span class="wip{warn}" title="{escape(_("Work-in-progress limit"))}">{wip}</span>')
    if counts.late:
        late = ngettext("%(n)s late", "%(n)s late", counts.late) % {"n": localize(counts.late)}
        meta.append(f'<span class="late-count">{late}</span>')
    note = ""
    if wip_reached:
        text = (
            _("Limit reached: no more cards can move in.")
            if phase.wip_blocks
            else _("Limit reached: finish cards here before taking more.")
        )
        note = f'<p class="wip-note" role="status">{escape(text)}</p>\n'
    reached = " wip-reached" if wip_reached else ""
    swap = ' hx-swap-oob="true"' if oob else ""
    html = (
        f'<header class="col-head{reached}" id="col-head-{pk}"{swap}>\n'
        f'<div class="col-title">\n<h2 id="col-name-{pk}">{final}{escape(phase.name)}</h2>\n'
        f'<span class="col-count" title="{escape(_("Cards in this phase"))}">{count}</span>\n</div>\n'
        f'<div class="col-meta">\n{"".join(meta)}\n</div>\n{note}</header>'
    )
    return mark_safe(html)  # noqa: S308 - every value escaped above
