"""Portal forms built from a pipe's Field rows: one proper input per field type, and POST data turned
into the raw values pipes.services takes.

Parsing and validation belong to the services (pipes.services, pipes.fieldtypes, pipes.files): this
module renders inputs, keeps everything typed or uploaded when a form comes back, decides which
conditional fields show (pipes.conditions.evaluate), and places each CardError reason at its field.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.core.files.uploadedfile import UploadedFile
from django.utils.dateparse import parse_datetime
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from ..choices import FieldType
from ..conditions import evaluate
from ..fieldtypes import CURRENCY_SYMBOLS, FORM_WIDGETS, FieldValueError, ParseContext, parse_value
from ..files import DEFAULT_ALLOWED, inspect_upload
from ..models import Card, Field, Label, Pipe
from ..roles import STAFF_PERMS, pipe_access, pipe_users_with
from ..services import NON_FIELD
from .staging import StagedFile, Staging

INPUT_PREFIX = "f-"
SHOWN_INPUT = "_shown"  # keys of conditional fields on screen, so the HTMX endpoint swaps only what changed
REMOVE_INPUT = "_remove"  # "<field key>:<ref>" of a kept upload to let go of
STAGING_INPUT = "_staging"
EMAIL_KEY = "_email"  # the separate "Your email" of public forms without an email field
HONEYPOT_INPUT = "website"

LIST_TYPES = {
    FieldType.MULTI_SELECT,
    FieldType.CHECKLIST,
    FieldType.ASSIGNEE,
    FieldType.LABEL,
    FieldType.CONNECTION,
}
MANY_OPTIONS = 12  # above this many options a multi-select is a list box rather than chips


@dataclass
class Choice:
    value: str
    label: str
    checked: bool = False


@dataclass
class PortalField:
    """One field of a portal form, bound to what was typed: what the template needs to draw its input."""

    field: Field
    widget: str
    value: Any  # a string, or a list of strings for list types
    visible: bool = True
    required: bool = False
    errors: list[str] = field(default_factory=list)
    choices: list[Choice] = field(default_factory=list)
    multiple: bool = False
    kept: list[StagedFile] = field(default_factory=list)
    attached: list[Any] = field(default_factory=list)  # CardFiles already on the card (requester answers)
    is_source: bool = False
    unavailable: bool = False
    prefix: str = ""
    suffix: str = ""
    accept: str = ""
    hint: str = ""

    @property
    def key(self) -> str:
        return self.field.key

    @property
    def name(self) -> str:
        return f"{INPUT_PREFIX}{self.field.key}"

    @property
    def id(self) -> str:
        return f"id-{self.field.key}"

    @property
    def conditional(self) -> bool:
        return bool(self.field.condition)

    @property
    def checked(self) -> bool:
        return self.value == "on"

    @property
    def many_options(self) -> bool:
        return len(self.choices) > MANY_OPTIONS

    @property
    def described_by(self) -> str:
        ids = []
        if self.field.help_text or self.hint:
            ids.append(f"{self.id}-help")
        if self.errors:
            ids.append(f"{self.id}-error")
        return " ".join(ids)


def condition_keys(condition: Any) -> set[str]:
    """Field keys a condition reads."""
    if not isinstance(condition, Mapping):
        return set()
    if "all" in condition or "any" in condition:
        return set().union(*(condition_keys(c) for c in condition.get("all") or condition.get("any") or []))
    if "not" in condition:
        return condition_keys(condition["not"])
    return {condition["field"]} if isinstance(condition.get("field"), str) else set()


def _size_text(num_bytes: int) -> str:
    mb = num_bytes / 1048576
    return f"{mb:.0f} MB" if mb >= 1 else f"{num_bytes // 1024} KB"


def upload_hint(f: Field) -> tuple[str, str]:
    """The accept attribute and a plain hint ("PDF, PNG … up to 10 MB each") for an attachment field."""
    from django.conf import settings

    config = f.config or {}
    types = [t.lower().lstrip(".") for t in config.get("allowed_types") or DEFAULT_ALLOWED]
    limit = int(float(config.get("max_size_mb", 0)) * 1048576) or settings.TRILHO_UPLOAD_MAX_BYTES
    accept = ",".join(f".{t}" for t in types)
    names = ", ".join(dict.fromkeys(t.upper().replace("JPEG", "JPG") for t in types))
    if config.get("multiple"):
        hint = _("%(types)s · up to %(size)s each") % {"types": names, "size": _size_text(limit)}
    else:
        hint = _("%(types)s · up to %(size)s") % {"types": names, "size": _size_text(limit)}
    return accept, hint


def initial_from_values(
    fields: Iterable[Field], values: Mapping[str, Any], *, tz: dt.tzinfo
) -> dict[str, Any]:
    """Stored card values as the inputs show them (amounts without currency, times in the organization's zone)."""
    initial: dict[str, Any] = {}
    for f in fields:
        value = values.get(f.key)
        if value in (None, "", [], {}):
            continue
        if f.type == FieldType.CURRENCY and isinstance(value, dict):
            initial[f.key] = value.get("amount", "")
        elif f.type in (FieldType.DATETIME, FieldType.DUE_DATE):
            moment = parse_datetime(str(value))
            initial[f.key] = moment.astimezone(tz).strftime("%Y-%m-%dT%H:%M") if moment else ""
        elif f.type == FieldType.CHECKBOX:
            initial[f.key] = "on" if value is True else ""
        elif f.type in LIST_TYPES:
            initial[f.key] = [str(v) for v in value]
        elif f.type == FieldType.ATTACHMENT:
            continue
        else:
            initial[f.key] = str(value)
    return initial


class PortalForm:
    """A form of a pipe's fields (its start form, or a phase's requester fields) bound to a request.

    `data`/`files` are request.POST/request.FILES (None for a blank form); `base_values` are values the
    conditions may read beyond this form (a card's stored values); `staging` keeps uploads across tries.
    """

    def __init__(
        self,
        *,
        pipe: Pipe,
        fields: Iterable[Field],
        user: AbstractBaseUser | None = None,
        data: Mapping[str, Any] | None = None,
        files: Mapping[str, Any] | None = None,
        initial: Mapping[str, Any] | None = None,
        base_values: Mapping[str, Any] | None = None,
        staging: Staging | None = None,
        public: bool = False,
    ):
        self.pipe = pipe
        self.fields = list(fields)
        self.user = user
        self.data = data
        self.files = files
        self.initial = dict(initial or {})
        self.base_values = dict(base_values or {})
        self.staging = staging
        self.public = public
        self.ctx = ParseContext(pipe=pipe)
        self.non_field_errors: list[str] = []
        self.email_field: PortalField | None = None
        sources = set().union(*(condition_keys(f.condition) for f in self.fields)) if self.fields else set()
        self.bound = [self._bind(f, is_source=f.key in sources) for f in self.fields]
        self.by_key = {pf.key: pf for pf in self.bound}
        if public:
            self._bind_public_email()
        self.refresh_visibility()

    # -------------------------------------------------------------- binding

    @property
    def is_bound(self) -> bool:
        return self.data is not None

    def _raw(self, f: Field) -> Any:
        name = f"{INPUT_PREFIX}{f.key}"
        if self.data is None:
            value = self.initial.get(f.key, [] if f.type in LIST_TYPES else "")
            return list(value) if f.type in LIST_TYPES else value
        if f.type in LIST_TYPES:
            getlist = getattr(self.data, "getlist", None)
            items = getlist(name) if getlist else self.data.get(name, [])
            items = [items] if isinstance(items, str) else list(items)
            return [str(i).strip() for i in items if str(i).strip()]
        if f.type == FieldType.CHECKBOX:
            return "on" if self.data.get(name) else ""
        if f.type == FieldType.ATTACHMENT:
            return ""
        value = self.data.get(name, "")
        return value if isinstance(value, str) else ""

    def _bind(self, f: Field, *, is_source: bool) -> PortalField:
        pf = PortalField(
            field=f,
            widget=FORM_WIDGETS.get(f.type, "text"),
            value=self._raw(f),
            required=f.required,
            is_source=is_source,
        )
        if f.type in (FieldType.SELECT, FieldType.MULTI_SELECT, FieldType.CHECKLIST):
            chosen = pf.value if isinstance(pf.value, list) else [pf.value]
            pf.choices = [Choice(str(o), str(o), str(o) in chosen) for o in f.options or []]
            pf.multiple = f.type != FieldType.SELECT
        elif f.type == FieldType.CURRENCY:
            code = (f.config or {}).get("currency") or self.pipe.organization.currency
            pf.prefix = CURRENCY_SYMBOLS.get(code, code)
        elif f.type == FieldType.PERCENTAGE:
            pf.suffix = "%"
        elif f.type in (FieldType.DATETIME, FieldType.DUE_DATE):
            pf.hint = _("Time in %(zone)s") % {"zone": self.pipe.organization.time_zone.replace("_", " ")}
        elif f.type == FieldType.ATTACHMENT:
            pf.multiple = bool((f.config or {}).get("multiple"))
            pf.accept, pf.hint = upload_hint(f)
            if self.staging is not None:
                pf.kept = self.staging.files(f.key)
        elif f.type in (FieldType.ASSIGNEE, FieldType.LABEL, FieldType.CONNECTION):
            self._bind_references(pf)
        return pf

    def _bind_references(self, pf: PortalField) -> None:
        f = pf.field
        pf.multiple = bool((f.config or {}).get("multiple", f.type == FieldType.LABEL))
        chosen = set(pf.value if isinstance(pf.value, list) else [pf.value])
        options: list[tuple[str, str]] = []
        signed_in = self.user is not None and self.user.is_authenticated
        if f.type == FieldType.LABEL:
            options = [
                (str(pk), name) for pk, name in Label.objects.filter(pipe=self.pipe).values_list("pk", "name")
            ]
        elif not signed_in:
            pf.unavailable = True  # people and other cards are not listed to the public
        elif f.type == FieldType.ASSIGNEE:
            options = [
                (str(u.pk), u.get_full_name() or u.get_username())
                for u in pipe_users_with(self.pipe, STAFF_PERMS)
            ]
        else:
            options = self._connection_options(f)
        pf.choices = [Choice(value, label, value in chosen) for value, label in options]

    def _connection_options(self, f: Field) -> list[tuple[str, str]]:
        slug = (f.config or {}).get("pipe")
        target = Pipe.objects.filter(
            organization_id=self.pipe.organization_id, slug=slug or self.pipe.slug
        ).first()
        if target is None:
            return []
        cards = Card.objects.filter(pipe=target, finished_at__isnull=True).select_related("pipe")
        if not pipe_access(user=self.user, pipe=target).can_view_board:
            cards = cards.filter(created_by=self.user)  # a requester links only their own requests
        return [(str(c.pk), f"{c.reference} · {c.title}") for c in cards.order_by("-created_at")[:200]]

    def _bind_public_email(self) -> None:
        """Public forms need the submitter's email: the form's email field, or a separate input."""
        emails = [pf for pf in self.bound if pf.field.type == FieldType.EMAIL and not pf.conditional]
        emails.sort(key=lambda pf: pf.key not in ("requester_email", "email"))
        if emails:
            self.email_field = emails[0]
            self.email_field.required = True
            return
        pseudo = Field(
            pipe=self.pipe,
            key=EMAIL_KEY,
            label=str(gettext_lazy("Your email")),
            type=FieldType.EMAIL,
            required=True,
            help_text=str(gettext_lazy("We send your tracking link here.")),
        )
        self.email_field = self._bind(pseudo, is_source=False)
        self.bound.insert(0, self.email_field)
        self.by_key[EMAIL_KEY] = self.email_field

    # -------------------------------------------------------------- conditions

    def condition_values(self) -> dict[str, Any]:
        """Values as the conditions read them: parsed where they parse, skipped where they do not."""
        values = dict(self.base_values)
        for pf in self.bound:
            if pf.key == EMAIL_KEY:
                continue
            if pf.field.type == FieldType.ATTACHMENT:
                has_files = bool(pf.kept) or bool(self._new_uploads(pf))
                values[pf.key] = ["pending"] if has_files else self.base_values.get(pf.key)
                continue
            try:
                values[pf.key] = parse_value(pf.field, pf.value, self.ctx)
            except FieldValueError:
                values[pf.key] = None
        return values

    def refresh_visibility(self) -> None:
        """Show a conditional field only while its condition holds over the fields on screen."""
        values = self.condition_values()
        visible = {pf.key: True for pf in self.bound}
        for _round in range(len(self.bound) + 1):
            on_screen = {k: v for k, v in values.items() if visible.get(k, True)}
            now = {pf.key: evaluate(pf.field.condition, on_screen) for pf in self.bound}
            if now == visible:
                break
            visible = now
        for pf in self.bound:
            pf.visible = visible[pf.key]

    def shown_before(self) -> set[str]:
        """Conditional fields the page showed when it posted (for the HTMX fields endpoint)."""
        if self.data is None:
            return set()
        getlist = getattr(self.data, "getlist", None)
        return set(getlist(SHOWN_INPUT) if getlist else [])

    def changed_rows(self) -> list[PortalField]:
        """Conditional fields that appear or disappear given what is now filled in."""
        before = self.shown_before()
        return [pf for pf in self.bound if pf.conditional and pf.visible != (pf.key in before)]

    # -------------------------------------------------------------- uploads

    def _new_uploads(self, pf: PortalField) -> list[UploadedFile]:
        if not self.files:
            return []
        getlist = getattr(self.files, "getlist", None)
        items = getlist(pf.name) if getlist else self.files.get(pf.name, [])
        return [u for u in items if u]

    def stage_uploads(self) -> None:
        """Check new uploads (pipes.files.inspect_upload) and keep those that pass; name the others' faults."""
        if self.staging is None:
            return
        for pf in self.bound:
            if pf.field.type != FieldType.ATTACHMENT or not pf.visible:
                continue
            passed = []
            for upload in self._new_uploads(pf):
                try:
                    passed.append((upload, inspect_upload(upload, config=pf.field.config)))
                except FieldValueError as exc:
                    pf.errors.append(str(exc))
            if passed and not pf.multiple:
                self.staging.clear_field(pf.key)  # a new file replaces the one kept for a single-file field
            for upload, info in passed:
                self.staging.keep(field_key=pf.key, upload=upload, info=info)
            pf.kept = self.staging.files(pf.key)

    def remove_kept(self) -> bool:
        """Let go of the kept upload named by the remove button; True when the post was such a click."""
        if self.data is None or self.staging is None or not self.data.get(REMOVE_INPUT):
            return False
        key, _sep, ref = str(self.data.get(REMOVE_INPUT)).partition(":")
        if key in self.by_key and self.by_key[key].field.type == FieldType.ATTACHMENT:
            self.staging.remove(field_key=key, ref=ref)
            self.by_key[key].kept = self.staging.files(key)
        return True

    def uploads(self) -> dict[str, list[UploadedFile]]:
        """Kept files of the fields on screen, as UploadedFile objects for the services (close them after)."""
        if self.staging is None:
            return {}
        return {
            pf.key: files
            for pf in self.bound
            if pf.field.type == FieldType.ATTACHMENT and pf.visible
            for files in [self.staging.as_uploads(pf.key)]
            if files
        }

    # -------------------------------------------------------------- values and errors

    def raw_values(self, *, include_empty: bool = False) -> dict[str, Any]:
        """What was typed, keyed by field key, as the services parse it; fields not on screen are left out."""
        values: dict[str, Any] = {}
        for pf in self.bound:
            if (
                pf.key == EMAIL_KEY
                or pf.field.type == FieldType.ATTACHMENT
                or not pf.visible
                or pf.unavailable
            ):
                continue
            empty = pf.value in ("", [], None)
            if empty and not include_empty:
                continue
            values[pf.key] = pf.value
        return values

    def requester_email(self) -> str:
        """The submitter's email on a public form (checked by check_public_email or by the services)."""
        if self.email_field is None:
            return ""
        return str(self.email_field.value or "").strip()

    def check_public_email(self) -> None:
        """A public form must carry an email to send the tracking link to."""
        pf = self.email_field
        if pf is None:
            return
        if not self.requester_email():
            pf.errors.append(_("Enter your email so we can send you the tracking link."))
        elif pf.key == EMAIL_KEY:
            try:
                parse_value(pf.field, pf.value, self.ctx)
            except FieldValueError as exc:
                pf.errors.append(str(exc))

    def add_errors(self, errors: Mapping[str, Iterable[str]]) -> None:
        """Place each reason at its field; reasons about anything else go above the form."""
        for key, reasons in errors.items():
            pf = self.by_key.get(key)
            reasons = [str(r) for r in reasons]
            if pf is None or key == NON_FIELD or not pf.visible:
                self.non_field_errors += [r for r in reasons if r not in self.non_field_errors]
                continue
            if pf.field.type == FieldType.ATTACHMENT and pf.errors:
                reasons = [
                    r for r in reasons if r != _("This field is required.")
                ]  # the rejected file says more
            pf.errors += [r for r in reasons if r not in pf.errors]

    @property
    def local_errors(self) -> dict[str, list[str]]:
        return {pf.key: list(pf.errors) for pf in self.bound if pf.errors}

    @property
    def has_errors(self) -> bool:
        return bool(self.non_field_errors) or any(pf.errors for pf in self.bound)

    @property
    def error_fields(self) -> list[PortalField]:
        return [pf for pf in self.bound if pf.errors and pf.visible]

    @property
    def visible_fields(self) -> list[PortalField]:
        return [pf for pf in self.bound if pf.visible]

    @property
    def has_files(self) -> bool:
        return any(pf.field.type == FieldType.ATTACHMENT for pf in self.bound)


def org_tz(pipe: Pipe) -> dt.tzinfo:
    return zoneinfo.ZoneInfo(pipe.organization.time_zone)
