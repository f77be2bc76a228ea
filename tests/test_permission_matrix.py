"""Every URL the project defines × every role × GET and POST: allowed, sent to sign in, 403, 404 or 405.

The table below has one row per URL name. `test_every_project_url_has_a_row` walks the URL
resolver and fails when a URL has no row (or a row names a URL that is gone), so a new view
cannot ship without saying who may use it. Each (URL, role, method) is its own test; a request
that is refused must also leave the data as it was.

The world is built once per module, inside a transaction that is rolled back at the end; each
test runs in a savepoint of it (pytest-django's `db`), so a POST that is allowed changes nothing
the next test sees.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from types import SimpleNamespace
from urllib.parse import urlsplit

import pytest
from django.contrib.staticfiles import views as staticfiles_views
from django.core.cache import cache
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import transaction
from django.test import override_settings
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from django.views import static
from guardian.models import UserObjectPermission

from agents.models import AllowedHost
from orchestrator.api.tokens import token_create
from orchestrator.inbox.models import InboxItem
from orchestrator.models import (
    InboundWebhook,
    OutboundWebhook,
    ReviewTask,
    Risk,
    RunStatus,
    StepRun,
    WebhookDelivery,
)
from pipes.choices import FieldType
from pipes.models import Card, CardEvent, CardFile, Field, Pipe, PipePolicy, PrivacyRequest
from pipes.services import Actor, card_create, card_move, card_update_fields
from tests.inbox.conftest import approval_step, card_in_approval, task_of
from tests.orchestrator.conftest import drain, make_agent
from tests.personas import build_world, good_start_values, make_user

# ---------------------------------------------------------------- outcomes

OK = "ok"  # 2xx/3xx (a POST may also refuse its input: 400, 409, 422); not a redirect to sign in
LOGIN = "login"  # a redirect to the sign-in page that comes back here (?next=)
PORTAL = "portal"  # the board sends requesters to the portal instead of showing it
FORBIDDEN = "403"
NOT_FOUND = "404"
NOT_ALLOWED = "405"
UNAUTHORIZED = "401"  # the API answers anonymous calls with 401 (no sign-in page to send a program to)

REFUSED = {LOGIN, PORTAL, FORBIDDEN, NOT_FOUND, NOT_ALLOWED, UNAUTHORIZED}
INPUT_REFUSED = {400, 409, 422}  # the view let the caller in, then refused what they sent

ROLES = (
    "anonymous",
    "stranger",  # signed in, member of no organization at all
    "outsider",  # build_world's: owner of another organization, nothing in Acme
    "requester",
    "viewer",
    "reviewer",
    "member",
    "admin",
    "owner",
)
METHODS = ("GET", "POST", "HX-GET", "HX-POST")  # HX-: the same verb, sent as an HTMX request


def roles(default: str, **overrides: str) -> dict[str, str]:
    unknown = set(overrides) - set(ROLES)
    assert not unknown, unknown
    return {role: overrides.get(role, default) for role in ROLES}


# The profiles most rows share.
SIGNED_IN = roles(OK, anonymous=LOGIN)
EVERYONE = roles(OK)
# The board: people who see it; requesters may not (403), people outside the pipe get a 404.
SEE_BOARD = roles(
    FORBIDDEN,
    anonymous=LOGIN,
    stranger=NOT_FOUND,
    outsider=NOT_FOUND,
    viewer=OK,
    reviewer=OK,
    member=OK,
    admin=OK,
    owner=OK,
)
WORK_BOARD = roles(
    FORBIDDEN, anonymous=LOGIN, stranger=NOT_FOUND, outsider=NOT_FOUND, member=OK, admin=OK, owner=OK
)
# The rail's records: people who work or administer the pipe (orchestrator.rail.selectors._check).
RAIL = WORK_BOARD
# Governance pages of a pipe: its admins and the organization's owners.
GOVERN_PIPE = roles(FORBIDDEN, anonymous=LOGIN, stranger=NOT_FOUND, outsider=NOT_FOUND, admin=OK, owner=OK)
# The designer: pipe admins and organization owners (the outsider owns another organization).
DESIGNS = roles(FORBIDDEN, anonymous=LOGIN, outsider=OK, admin=OK, owner=OK)
MATRIX_DEFINITION = """\
name: Matrix import
slug: matrix-import
code: MI
start_form:
  - {key: title, label: Title, type: short_text, required: true}
phases:
  - {key: doing, name: Doing}
  - {key: done, name: Done, final: true}
"""
# A review task: only people who review the pipe know it exists.
REVIEW = roles(NOT_FOUND, anonymous=LOGIN, reviewer=OK, admin=OK, owner=OK)
# A request in the portal: only the person who filed it.
OWN_REQUEST = roles(NOT_FOUND, anonymous=LOGIN, requester=OK)
# A start form: people who may file requests; people who only see the board get a 403.
FILE_REQUEST = roles(
    OK, anonymous=LOGIN, stranger=NOT_FOUND, outsider=NOT_FOUND, viewer=FORBIDDEN, reviewer=FORBIDDEN
)
# The other verb of a view that accepts one: signed-in people get 405, anonymous ones the sign-in
# page first (login_required wraps the method check), unless the view is public.
WRONG_VERB = roles(NOT_ALLOWED, anonymous=LOGIN)
WRONG_VERB_PUBLIC = roles(NOT_ALLOWED)


def api(profile: dict[str, str]) -> dict[str, str]:
    """The same rule through the REST API: anonymous callers get 401 instead of the sign-in page."""
    return {**profile, "anonymous": UNAUTHORIZED}


# Who may file a card through the API: the write path's rule (requesters and workers), 404 outside.
API_FILE = api(roles(OK, stranger=NOT_FOUND, outsider=NOT_FOUND, viewer=FORBIDDEN, reviewer=FORBIDDEN))


# ---------------------------------------------------------------- the table


@dataclass(frozen=True)
class Row:
    """How to reach one URL in the seeded world, and what each role gets from each method."""

    kwargs: Callable[[SimpleNamespace], dict]
    expect: dict[str, dict[str, str]]  # method -> role -> outcome
    query: str | Callable[[SimpleNamespace], str] = ""  # a callable builds it from the seeded world
    data: Callable[[SimpleNamespace], dict] = field(default=lambda m: {})
    # The POST body is a real write: allowed, it changes data. This keeps the "refused, so
    # nothing changed" check of the other roles from passing only because the body was inert.
    writes: bool = False
    json: bool = False  # the POST body goes as JSON (the REST API), not as a form


def _pipe(m):
    return {"pipe_id": m.pipe.pk}


def _card(m):
    return {"pipe_id": m.pipe.pk, "card_id": m.card.pk}


def _own_card(m):
    return {"card_id": m.card.pk}


def _task(m):
    return {"task_id": m.task.pk}


def _org(m):
    return {"org_slug": m.org.slug}


def _public(m):
    return {"org_slug": m.org.slug, "pipe_slug": m.pipe.slug}


def _token(m):
    return {"token": m.card.tracking_token}


def _none(m):
    return {}


def _start_form_data(m):
    return {f"f-{k}": v for k, v in good_start_values(item="Matrix request").items()}


TABLE: dict[str, Row] = {
    # ------------------------------------------------ sign in and language (Django's own views)
    "login": Row(_none, {"GET": EVERYONE, "POST": EVERYONE}),  # an empty POST re-renders the form
    # An invited person's first password (Django's reset views): a bad link says so, to everyone.
    "set_password": Row(
        lambda m: {"uidb64": "MQ", "token": "not-a-token"}, {"GET": EVERYONE, "POST": EVERYONE}
    ),
    "set_password_done": Row(_none, {"GET": EVERYONE, "POST": WRONG_VERB_PUBLIC}),
    "logout": Row(_none, {"GET": WRONG_VERB_PUBLIC, "POST": EVERYONE}),
    "set_language": Row(
        _none, {"GET": EVERYONE, "POST": EVERYONE}, data=lambda m: {"language": "pt-br", "next": "/"}
    ),
    # ------------------------------------------------ board (pipes/board/urls.py)
    # People who only file requests (or take part in nothing yet) have the portal as home.
    "home": Row(_none, {"GET": {**SIGNED_IN, "requester": PORTAL, "stranger": PORTAL}, "POST": WRONG_VERB}),
    "board": Row(_pipe, {"GET": {**SEE_BOARD, "requester": PORTAL}, "POST": WRONG_VERB}),
    "board_changes": Row(
        _pipe,
        {"HX-GET": SEE_BOARD, "HX-POST": WRONG_VERB},
        query="?since=2020-01-01T00:00:00%2B00:00",
    ),
    "column_more": Row(
        lambda m: {"pipe_id": m.pipe.pk, "phase_id": m.approval.pk},
        {"HX-GET": SEE_BOARD, "HX-POST": WRONG_VERB},
        query="?offset=0",
    ),
    "card_detail": Row(
        _card,
        {"GET": {**SEE_BOARD, "requester": PORTAL}, "HX-GET": SEE_BOARD, "POST": WRONG_VERB},
    ),
    "card_move": Row(
        _card,
        {"HX-GET": WRONG_VERB, "HX-POST": WORK_BOARD},
        data=lambda m: {"to_phase": m.triage.pk},
        writes=True,
    ),
    "card_field": Row(
        lambda m: {**_card(m), "key": "item"},
        {"HX-GET": WORK_BOARD, "HX-POST": WORK_BOARD},  # GET is the edit form: workers only
        data=lambda m: {"value": "Laptop for Ana, 16 GB"},
        writes=True,
    ),
    "card_assign": Row(
        _card,
        {"HX-GET": WRONG_VERB, "HX-POST": WORK_BOARD},
        data=lambda m: {"assignees": [m.member.pk]},
        writes=True,
    ),
    "card_labels": Row(
        _card,
        {"HX-GET": WRONG_VERB, "HX-POST": WORK_BOARD},
        data=lambda m: {"labels": [m.label.pk]},
        writes=True,
    ),
    "card_due": Row(
        _card,
        {"HX-GET": WRONG_VERB, "HX-POST": WORK_BOARD},
        data=lambda m: {"due_at": "2030-01-01T10:00"},
        writes=True,
    ),
    "card_comment": Row(
        _card,
        {"HX-GET": WRONG_VERB, "HX-POST": {**WORK_BOARD, "reviewer": OK}},  # reviewers may comment
        data=lambda m: {"text": "Checked the quote."},
        writes=True,
    ),
    "card_attach": Row(
        _card,
        {"HX-GET": WRONG_VERB, "HX-POST": WORK_BOARD},
        data=lambda m: {"files": SimpleUploadedFile("more.txt", b"another quote", content_type="text/plain")},
        writes=True,
    ),
    "card_retry": Row(_card, {"HX-GET": WRONG_VERB, "HX-POST": WORK_BOARD}),  # no failed step here: a 422
    "card_file": Row(
        lambda m: {**_card(m), "file_id": m.file.pk},
        {"GET": {**SEE_BOARD}, "POST": WRONG_VERB},
    ),
    # ------------------------------------------------ portal (namespace "portal")
    "portal:home": Row(_none, {"GET": SIGNED_IN, "POST": WRONG_VERB}),
    "portal:start_form": Row(
        _pipe, {"GET": FILE_REQUEST, "POST": FILE_REQUEST}, data=_start_form_data, writes=True
    ),
    "portal:start_fields": Row(
        _pipe, {"GET": WRONG_VERB, "HX-POST": FILE_REQUEST}, data=lambda m: {"f-urgent": "on"}
    ),
    "portal:my_requests": Row(_none, {"GET": SIGNED_IN, "POST": WRONG_VERB}),
    # A request's own pages are the requester's; the team works the card on the board instead.
    "portal:request": Row(_own_card, {"GET": OWN_REQUEST, "POST": WRONG_VERB}),
    "portal:submitted": Row(_own_card, {"GET": OWN_REQUEST, "POST": WRONG_VERB}),
    "portal:request_answer": Row(
        _own_card,
        {"GET": WRONG_VERB, "POST": OWN_REQUEST},
        data=lambda m: {"f-delivery_address": "Rua A, 1"},
        writes=True,
    ),
    "portal:request_comment": Row(
        _own_card,
        {"GET": WRONG_VERB, "POST": OWN_REQUEST},
        data=lambda m: {"text": "Any news?"},
        writes=True,
    ),
    "portal:request_file": Row(
        lambda m: {**_own_card(m), "file_id": m.file.pk}, {"GET": OWN_REQUEST, "POST": WRONG_VERB}
    ),
    # Published forms and tracking links are for whoever holds the address: everybody.
    "portal:public_form": Row(
        _public,
        {"GET": EVERYONE, "POST": EVERYONE},
        data=lambda m: {**_start_form_data(m), "f-requester_email": "someone@example.com"},
        writes=True,
    ),
    "portal:public_fields": Row(
        _public, {"GET": WRONG_VERB_PUBLIC, "HX-POST": EVERYONE}, data=lambda m: {"f-urgent": "on"}
    ),
    "portal:tracking": Row(_token, {"GET": EVERYONE, "POST": WRONG_VERB_PUBLIC}),
    "portal:public_submitted": Row(_token, {"GET": EVERYONE, "POST": WRONG_VERB_PUBLIC}),
    # ------------------------------------------------ governance (namespace "governance")
    # The index lists what the person governs: the outsider owns "Other Co", so it opens for them.
    "governance:index": Row(
        _none,
        {"GET": roles(FORBIDDEN, anonymous=LOGIN, outsider=OK, admin=OK, owner=OK), "POST": WRONG_VERB},
    ),
    "governance:sla_report": Row(_pipe, {"GET": GOVERN_PIPE, "POST": WRONG_VERB}),
    "governance:pipe_audit": Row(_pipe, {"GET": GOVERN_PIPE, "POST": WRONG_VERB}),
    "governance:retention": Row(
        _pipe,
        {"GET": GOVERN_PIPE, "POST": GOVERN_PIPE},
        data=lambda m: {"action": "save", "retention_days": "3650"},
        writes=True,
    ),
    "governance:card_audit": Row(_own_card, {"GET": GOVERN_PIPE, "POST": WRONG_VERB}),
    "governance:org_audit": Row(
        _org,
        {
            "GET": roles(FORBIDDEN, anonymous=LOGIN, stranger=NOT_FOUND, outsider=NOT_FOUND, owner=OK),
            "POST": WRONG_VERB,
        },
    ),
    "governance:privacy": Row(
        _org,
        {"GET": GOVERN_PIPE, "POST": GOVERN_PIPE},
        data=lambda m: {"action": "export", "identifier": "ana@example.com"},
        writes=True,  # each export is recorded
    ),
    # ------------------------------------------------ designer (namespace "designer")
    # Its pages are for people who design something (pipe admins and organization owners; the
    # outsider owns "Other Co"); creating in Acme is for Acme's owners and pipe admins (the design
    # service decides); the outsider is told to pick one of their own organizations (422).
    "designer:index": Row(_none, {"GET": DESIGNS, "POST": WRONG_VERB}),
    "designer:create": Row(
        _none,
        {"GET": DESIGNS, "POST": DESIGNS},
        data=lambda m: {
            "template": "scratch",
            "organization": m.org.pk,
            "name": "Matrix process",
            "slug": "matrix-process",
            "code": "MX",
        },
    ),
    "designer:import": Row(
        _none,
        {"GET": DESIGNS, "POST": DESIGNS},
        data=lambda m: {"organization": m.org.pk, "yaml": MATRIX_DEFINITION},
    ),
    "designer:pipe": Row(_pipe, {"GET": GOVERN_PIPE, "POST": WRONG_VERB}),
    "designer:export": Row(_pipe, {"GET": GOVERN_PIPE, "POST": WRONG_VERB}),
    # The phases and fields editor (issue #13): the pipe's admins and its organization's owners.
    "designer:preview": Row(_pipe, {"GET": GOVERN_PIPE, "POST": WRONG_VERB}),
    "designer:phase_add": Row(
        _pipe, {"GET": WRONG_VERB, "POST": GOVERN_PIPE}, data=lambda m: {"name": "Matrix phase"}
    ),
    "designer:phases_order": Row(
        _pipe,
        {"GET": WRONG_VERB, "POST": GOVERN_PIPE},
        data=lambda m: {"order": ",".join(str(p.pk) for p in m.pipe.phases.order_by("-position"))},
    ),
    "designer:phase_edit": Row(
        lambda m: {"pipe_id": m.pipe.pk, "phase_id": m.triage.pk},
        {"GET": GOVERN_PIPE, "POST": GOVERN_PIPE},
        data=lambda m: {"name": "First look", "sla_hours": "12"},
    ),
    "designer:phase_rename": Row(
        lambda m: {"pipe_id": m.pipe.pk, "phase_id": m.triage.pk},
        {"GET": WRONG_VERB, "POST": GOVERN_PIPE},
        data=lambda m: {"name": "First look"},
    ),
    "designer:phase_delete": Row(
        lambda m: {"pipe_id": m.pipe.pk, "phase_id": m.triage.pk}, {"GET": GOVERN_PIPE, "POST": GOVERN_PIPE}
    ),
    "designer:field_add": Row(
        _pipe, {"GET": WRONG_VERB, "POST": GOVERN_PIPE}, data=lambda m: {"phase": "start", "type": "number"}
    ),
    "designer:field_palette": Row(
        _pipe, {"GET": GOVERN_PIPE, "POST": WRONG_VERB}, query=lambda m: f"?phase={m.triage.pk}"
    ),
    "designer:fields_order": Row(
        _pipe,
        {"GET": WRONG_VERB, "POST": GOVERN_PIPE},
        data=lambda m: {
            "phase": m.triage.pk,
            "order": ",".join(str(f.pk) for f in m.triage.fields.order_by("-position")),
        },
    ),
    "designer:field_edit": Row(
        lambda m: {"pipe_id": m.pipe.pk, "field_id": m.pipe.fields.get(key="cost_center").pk},
        {"GET": GOVERN_PIPE, "POST": GOVERN_PIPE},
        data=lambda m: {"label": "Cost centre", "visible_to_requester": "on"},
    ),
    "designer:field_delete": Row(
        lambda m: {"pipe_id": m.pipe.pk, "field_id": m.pipe.fields.get(key="cost_center").pk},
        {"GET": GOVERN_PIPE, "POST": GOVERN_PIPE},
    ),
    "designer:condition_row": Row(
        lambda m: {"pipe_id": m.pipe.pk, "field_id": m.pipe.fields.get(key="cost_center").pk},
        {"GET": GOVERN_PIPE, "POST": WRONG_VERB},
        query="?index=0",
    ),
    # Members and roles: the pipe's admins and its organization's owners (design_grant decides).
    "designer:members": Row(
        _pipe,
        {"GET": GOVERN_PIPE, "POST": GOVERN_PIPE, "HX-POST": GOVERN_PIPE},
        data=lambda m: {"user": m.viewer.pk, "role": "reviewer"},
        writes=True,
    ),
    "designer:member": Row(
        lambda m: {"pipe_id": m.pipe.pk, "user_id": m.viewer.pk},
        {"GET": WRONG_VERB, "POST": GOVERN_PIPE, "HX-POST": GOVERN_PIPE},
        data=lambda m: {"role": "member"},
        writes=True,
    ),
    # ------------------------------------------------ the rail's designer pages (namespace "rail_design")
    # Steps and agents: the pipe's admins and its organization's owners, like the designer's pages.
    "rail_design:steps": Row(_pipe, {"GET": GOVERN_PIPE, "POST": WRONG_VERB}),
    "rail_design:step_new": Row(
        _pipe,
        {"GET": GOVERN_PIPE, "HX-POST": GOVERN_PIPE},
        data=lambda m: {
            "phase": m.triage.pk,
            "name": "Matrix step",
            "mechanism": "automation",
            "trigger": "entered",
            "risk": "low",
            "attempts": "3",
            "act-count": "1",
            "act-0-type": "move",
            "act-0-to": "approval",
        },
    ),
    "rail_design:step_edit": Row(
        lambda m: {"pipe_id": m.pipe.pk, "step_id": m.step.pk},
        {"HX-GET": GOVERN_PIPE, "HX-POST": GOVERN_PIPE},
        data=lambda m: {
            "name": "Manager approval",
            "mechanism": "human",
            "trigger": "entered",
            "risk": "high",
            "question": "Approve this purchase?",
            "on_approve": "done",
            "on_reject": "rejected",
            "attempts": "3",
        },
    ),
    "rail_design:step_delete": Row(
        lambda m: {"pipe_id": m.pipe.pk, "step_id": m.step.pk}, {"GET": WRONG_VERB, "HX-POST": GOVERN_PIPE}
    ),
    "rail_design:step_move": Row(
        lambda m: {"pipe_id": m.pipe.pk, "step_id": m.step.pk},
        {"GET": WRONG_VERB, "HX-POST": GOVERN_PIPE},
        data=lambda m: {"direction": "down"},
    ),
    "rail_design:step_dry_run": Row(
        lambda m: {"pipe_id": m.pipe.pk, "step_id": m.step.pk},
        {"HX-GET": GOVERN_PIPE, "POST": WRONG_VERB},
        query=lambda m: f"?card={m.card.pk}",
    ),
    "rail_design:agents": Row(_pipe, {"GET": GOVERN_PIPE, "POST": WRONG_VERB}),
    "rail_design:agent_new": Row(
        _pipe,
        {"GET": GOVERN_PIPE, "HX-POST": GOVERN_PIPE},
        data=lambda m: {
            "name": "Matrix agent",
            "provider": "ollama",
            "model": "llama3.2",
            "confidence_threshold": "70",
        },
    ),
    "rail_design:agent_edit": Row(
        lambda m: {"pipe_id": m.pipe.pk, "agent_id": m.agent.pk},
        {"HX-GET": GOVERN_PIPE, "HX-POST": GOVERN_PIPE},
        data=lambda m: {
            "name": "Triage agent",
            "provider": "ollama",
            "model": "llama3.2",
            "confidence_threshold": "80",
        },
    ),
    "rail_design:agent_delete": Row(
        lambda m: {"pipe_id": m.pipe.pk, "agent_id": m.agent.pk}, {"GET": WRONG_VERB, "HX-POST": GOVERN_PIPE}
    ),
    # Allowed hosts belong to the organization: whoever designs the pipe sees them, only owners change them.
    "rail_design:hosts": Row(
        _pipe,
        {"GET": GOVERN_PIPE, "HX-POST": {**GOVERN_PIPE, "admin": FORBIDDEN}},
        data=lambda m: {"host": "api.matrix.example", "note": "Matrix"},
    ),
    "rail_design:host_delete": Row(
        lambda m: {"pipe_id": m.pipe.pk, "host_id": m.host.pk},
        {"GET": WRONG_VERB, "HX-POST": {**GOVERN_PIPE, "admin": FORBIDDEN}},
    ),
    # ------------------------------------------------ rail (namespace "rail")
    "rail:run": Row(lambda m: {"run_id": m.failed_run.pk}, {"GET": RAIL, "POST": WRONG_VERB}),
    "rail:run_retry": Row(
        lambda m: {"run_id": m.failed_run.pk}, {"GET": WRONG_VERB, "POST": RAIL}, writes=True
    ),
    "rail:pipe_costs": Row(_pipe, {"GET": RAIL, "POST": WRONG_VERB}),
    # The rail's health: organization owners (the outsider owns "Other Co"), no one else.
    "rail:health": Row(
        _none, {"GET": roles(FORBIDDEN, anonymous=LOGIN, outsider=OK, owner=OK), "POST": WRONG_VERB}
    ),
    # ------------------------------------------------ inbox (namespace "inbox")
    # The list shows each person the tasks of the pipes they review (none for most): open to all.
    "inbox:index": Row(_none, {"GET": SIGNED_IN, "POST": WRONG_VERB}),
    "inbox:bulk_approve": Row(
        _none,
        {"GET": WRONG_VERB, "POST": REVIEW},
        data=lambda m: {"tasks": [m.task.pk]},
        writes=True,
    ),
    "inbox:task": Row(_task, {"GET": REVIEW, "POST": WRONG_VERB}),
    "inbox:decide": Row(
        _task,
        {"GET": WRONG_VERB, "POST": REVIEW},
        data=lambda m: {"decision": "approve", "f-po_number": "PO-1", "comment": "Fine."},
        writes=True,
    ),
    "inbox:fields": Row(_task, {"GET": WRONG_VERB, "POST": REVIEW}, data=lambda m: {"f-po_number": "PO-1"}),
    "inbox:delegate": Row(
        _task,
        {"GET": WRONG_VERB, "POST": REVIEW},
        data=lambda m: {"to_user": m.admin.pk, "note": "Yours."},
        writes=True,
    ),
    "inbox:file_preview": Row(
        lambda m: {**_task(m), "file_id": m.file.pk}, {"GET": REVIEW, "POST": WRONG_VERB}
    ),
    # ------------------------------------------------ REST API (orchestrator/api, namespace "api")
    # The same getters as the pages, so the same profiles; anonymous calls get 401. Tokens narrow
    # these further (their pipes, read or write): tests/api covers them.
    # The schema and its docs page are public and read-only: ninja serves them to any verb.
    "api:openapi-json": Row(_none, {"GET": EVERYONE, "POST": EVERYONE}),
    "api:openapi-view": Row(_none, {"GET": EVERYONE, "POST": EVERYONE}),
    "api:api-root": Row(_none, {"GET": roles(NOT_FOUND), "POST": roles(NOT_FOUND)}),
    "api:organizations": Row(_none, {"GET": api(SIGNED_IN), "POST": WRONG_VERB_PUBLIC}),
    "api:pipes": Row(_none, {"GET": api(SIGNED_IN), "POST": WRONG_VERB_PUBLIC}),
    "api:pipe": Row(_pipe, {"GET": api(SEE_BOARD), "POST": WRONG_VERB_PUBLIC}),
    "api:pipe_sla": Row(_pipe, {"GET": api(GOVERN_PIPE), "POST": WRONG_VERB_PUBLIC}),
    # Everyone in the pipe: its people get every field, requesters the start form's they may see.
    "api:pipe_fields": Row(
        _pipe,
        {"GET": api(roles(OK, stranger=NOT_FOUND, outsider=NOT_FOUND)), "POST": WRONG_VERB_PUBLIC},
    ),
    "api:reviews": Row(_none, {"GET": api(SIGNED_IN), "POST": WRONG_VERB_PUBLIC}),
    "api:review": Row(_task, {"GET": api(REVIEW), "POST": WRONG_VERB_PUBLIC}),
    "api:review_decide": Row(
        _task,
        {"GET": WRONG_VERB_PUBLIC, "POST": api(REVIEW)},
        data=lambda m: {"decision": "approve", "values": {"po_number": "PO-1"}, "comment": "Fine."},
        writes=True,
        json=True,
    ),
    "api:run": Row(lambda m: {"run_id": m.failed_run.pk}, {"GET": api(RAIL), "POST": WRONG_VERB_PUBLIC}),
    "api:card_runs": Row(_card, {"GET": api(RAIL), "POST": WRONG_VERB_PUBLIC}),
    # One route, two operations (list and open a card): each name gets the same row.
    **{
        name: Row(
            _pipe,
            {"GET": api(SEE_BOARD), "POST": API_FILE},
            data=lambda m: {"values": good_start_values(item="API request")},
            writes=True,
            json=True,
        )
        for name in ("api:cards", "api:cards_create")
    },
    "api:card": Row(_card, {"GET": api(SEE_BOARD), "POST": WRONG_VERB_PUBLIC}),
    "api:card_fields": Row(
        _card,
        {"GET": WRONG_VERB_PUBLIC, "POST": api(WORK_BOARD)},
        data=lambda m: {"values": {"item": "Laptop for Ana, 16 GB"}},
        writes=True,
        json=True,
    ),
    "api:card_move": Row(
        _card,
        {"GET": WRONG_VERB_PUBLIC, "POST": api(WORK_BOARD)},
        data=lambda m: {"to_phase": "triage"},
        writes=True,
        json=True,
    ),
    "api:card_assign": Row(
        _card,
        {"GET": WRONG_VERB_PUBLIC, "POST": api(WORK_BOARD)},
        data=lambda m: {"assignees": [m.member.pk]},
        writes=True,
        json=True,
    ),
    "api:card_labels": Row(
        _card,
        {"GET": WRONG_VERB_PUBLIC, "POST": api(WORK_BOARD)},
        data=lambda m: {"labels": [m.label.pk]},
        writes=True,
        json=True,
    ),
    "api:card_comments": Row(
        _card,
        {"GET": WRONG_VERB_PUBLIC, "POST": api({**WORK_BOARD, "reviewer": OK})},
        data=lambda m: {"text": "Checked the quote."},
        writes=True,
        json=True,
    ),
    "api:card_files": Row(
        _card,
        {"GET": WRONG_VERB_PUBLIC, "POST": api(WORK_BOARD)},
        data=lambda m: {"files": SimpleUploadedFile("more.txt", b"another quote", content_type="text/plain")},
        writes=True,
    ),
    # ------------------------------------------------ API tokens page (namespace "api_tokens")
    # Everyone manages their own tokens (a stranger has no pipe to name: the form says so, 422).
    "api_tokens:index": Row(
        _none,
        {"GET": SIGNED_IN, "HX-POST": SIGNED_IN},
        data=lambda m: {"name": "Matrix", "scope": "read", "kind": "personal", "pipes": [m.pipe.pk]},
    ),
    # A token is its owner's (the member's here) and its organization owners' to revoke.
    "api_tokens:revoke": Row(
        lambda m: {"token_id": m.api_token.pk},
        {"GET": WRONG_VERB, "POST": roles(NOT_FOUND, anonymous=LOGIN, member=OK, owner=OK)},
    ),
    # ------------------------------------------------ webhooks (orchestrator/webhooks, namespace "webhooks")
    # The inbound URL is for other systems: its signature is the only key (a session is not), so a post
    # without one is a 401 for everybody; tests/webhooks/test_inbound.py covers signed posts.
    "webhooks:inbound": Row(
        lambda m: {"key": m.inbound_hook.key},
        {"GET": WRONG_VERB_PUBLIC, "POST": roles(UNAUTHORIZED)},
    ),
    # The delivery log, "send again" and turning a webhook on again: the pipe's admins and owners.
    "webhooks:deliveries": Row(_pipe, {"GET": GOVERN_PIPE, "POST": WRONG_VERB}),
    "webhooks:resend": Row(
        lambda m: {"pipe_id": m.pipe.pk, "delivery_id": m.delivery.pk},
        {"GET": WRONG_VERB, "POST": GOVERN_PIPE},
    ),
    "webhooks:enable": Row(
        lambda m: {"pipe_id": m.pipe.pk, "webhook_id": m.outbound_hook.pk},
        {"GET": WRONG_VERB, "POST": GOVERN_PIPE},
    ),
}


# ---------------------------------------------------------------- which URLs the project defines

# Left out of the matrix, each for a reason:
EXCLUDED_NAMESPACES = {
    # Django's admin has its own gate (staff status, then pipes/admin.py narrows every model to
    # the pipes the person administers); tests/pipes/test_admin.py covers it.
    "admin",
}
EXCLUDED_VIEWS = {
    # Static and media files, should a development URL helper (static(), staticfiles_urlpatterns())
    # ever add them: public assets with no permission of ours. Uploaded files are never served
    # this way; card_file, request_file and file_preview above check access first.
    static.serve,
    staticfiles_views.serve,
}


def project_urls() -> dict[str, list[str]]:
    """Every URL pattern of the project: its name (namespaced) -> its routes (more than one is a clash)."""
    found: dict[str, list[str]] = {}

    def walk(patterns, namespace: str, prefix: str) -> None:
        for pattern in patterns:
            route = prefix + str(pattern.pattern)
            if isinstance(pattern, URLResolver):
                if pattern.namespace in EXCLUDED_NAMESPACES:
                    continue
                ns = f"{namespace}{pattern.namespace}:" if pattern.namespace else namespace
                walk(pattern.url_patterns, ns, route)
            elif isinstance(pattern, URLPattern):
                if getattr(pattern.callback, "__wrapped__", pattern.callback) in EXCLUDED_VIEWS:
                    continue
                name = f"{namespace}{pattern.name}" if pattern.name else f"<unnamed {route}>"
                found.setdefault(name, []).append(route)

    walk(get_resolver().url_patterns, "", "/")
    return found


def test_every_project_url_has_a_row():
    urls = project_urls()
    missing = sorted(set(urls) - set(TABLE))
    stale = sorted(set(TABLE) - set(urls))
    clashes = {name: routes for name, routes in urls.items() if len(routes) > 1}
    assert not missing, f"URLs without a row in the permission matrix: {missing}"
    assert not stale, f"rows of the permission matrix naming URLs that no longer exist: {stale}"
    assert not clashes, f"one name for several URLs (the matrix reaches only one): {clashes}"


def test_the_walk_sees_every_area_of_the_project():
    """A guard on the guard: the walk must reach into each include()."""
    prefixes = {name.split(":")[0] for name in project_urls() if ":" in name}
    assert {"portal", "governance", "rail", "inbox"} <= prefixes
    assert {"login", "logout", "set_language", "home", "card_detail"} <= set(project_urls())


def test_every_row_says_what_each_role_gets_from_get_and_post():
    for name, row in TABLE.items():
        verbs = {method.removeprefix("HX-") for method in row.expect}
        assert verbs == {"GET", "POST"}, (name, sorted(row.expect))
        assert set(row.expect) <= set(METHODS), name
        for method, outcomes in row.expect.items():
            assert set(outcomes) == set(ROLES), (name, method)


# ---------------------------------------------------------------- the seeded world


@pytest.fixture(scope="module")
def matrix(django_db_setup, django_db_blocker, tmp_path_factory):
    """Acme's purchase pipe with a card in Approval waiting for a reviewer, a file, a failed run.

    Built once for the module and rolled back after it; tests run in savepoints of it."""
    media = tmp_path_factory.mktemp("matrix-media")
    fast = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    with (
        django_db_blocker.unblock(),
        override_settings(MEDIA_ROOT=media, PASSWORD_HASHERS=fast),
        transaction.atomic(),
    ):
        world = build_world()
        world.pipe.public_form = True
        world.pipe.save(update_fields=["public_form"])
        stranger = make_user("stranger")
        # Low risk, so the inbox's bulk approval applies to its tasks.
        step = approval_step(world, risk=Risk.LOW)
        # What the requester answers from My requests while the card waits in Approval.
        Field.objects.create(
            pipe=world.pipe,
            phase=world.phase("approval"),
            key="delivery_address",
            label="Delivery address",
            type=FieldType.SHORT_TEXT,
            position=3,
            requester_editable=True,
        )
        # The requester's case: a quote attached, triaged by the member, waiting in Approval.
        card = card_create(
            actor=Actor.for_user(world.requester),
            pipe=world.pipe,
            values=good_start_values(),
            files={"quote": [SimpleUploadedFile("quote.txt", b"Quote: 4500 BRL", content_type="text/plain")]},
        )
        card_update_fields(actor=Actor.for_user(world.member), card=card, values={"category": "Hardware"})
        card_move(actor=Actor.for_user(world.member), card=card, to_phase=world.phase("approval"))
        drain()
        # Filled, so an approval may leave Approval (bulk approval sends no values).
        card = card_update_fields(actor=Actor.for_user(world.member), card=card, values={"po_number": "PO-7"})
        # Another case whose step failed, for the run page and its retry.
        other = card_in_approval(world, by=world.admin, item="Monitor")
        failed_run = StepRun.objects.get(card=other)
        StepRun.objects.filter(pk=failed_run.pk).update(status=RunStatus.FAILED)
        # A webhook turned off after failures, with a failed delivery (its log page, "send again", "turn on").
        outbound_hook = OutboundWebhook.objects.create(
            pipe=world.pipe, name="ERP", url="https://erp.acme.example/hooks", is_active=False
        )
        m = SimpleNamespace(
            **vars(world),
            stranger=stranger,
            anonymous=None,
            card=card,
            file=CardFile.objects.get(pk=card.values["quote"][0]),
            task=task_of(card),
            failed_run=failed_run,
            label=world.pipe.labels.get(),
            triage=world.phase("triage"),
            approval=world.phase("approval"),
            inbound_hook=InboundWebhook.objects.create(pipe=world.pipe, name="ERP orders"),
            outbound_hook=outbound_hook,
            delivery=WebhookDelivery.objects.create(
                webhook=outbound_hook,
                card=card,
                event_id=uuid.uuid4(),
                event="card.created",
                payload={},
                status="failed",
            ),
            step=step,
            agent=make_agent(world.pipe),
            host=AllowedHost.objects.create(organization=world.org, host="erp.acme.example", note="ERP"),
            api_token=token_create(
                user=world.member,
                organization=world.org,
                name="m",
                kind="personal",
                scope="read",
                pipes=[world.pipe],
            ).token,
        )
        cache.clear()
        yield m
        transaction.set_rollback(True)
    cache.clear()


@pytest.fixture(autouse=True)
def _fresh_cache():
    """Throttles (sign-in, public form) and board fragments live in the cache, not in the database."""
    cache.clear()
    yield


def state() -> dict:
    """What a refused request must leave as it was."""
    return {
        "cards": list(Card.objects.order_by("pk").values_list("pk", "version", "phase_id", "due_at")),
        "events": CardEvent.objects.count(),
        "files": CardFile.objects.count(),
        "tasks": list(
            ReviewTask.objects.order_by("pk").values_list("pk", "status", "assignee_id", "opened_at")
        ),
        "inbox": InboxItem.objects.count(),
        "runs": list(StepRun.objects.order_by("pk").values_list("pk", "status")),
        "policies": PipePolicy.objects.count(),
        "privacy_requests": PrivacyRequest.objects.count(),
        "pipes": list(Pipe.objects.order_by("pk").values_list("pk", "slug")),
        "grants": sorted(UserObjectPermission.objects.values_list("user_id", "permission_id", "object_pk")),
    }


def outcome(response, method: str) -> str:
    code = response.status_code
    if 300 <= code < 400:
        location = response["Location"]
        path = urlsplit(location).path
        if path == reverse("login") and "next=" in location:
            return LOGIN
        if path == reverse("portal:home"):
            return PORTAL
        return OK
    if 200 <= code < 300 or (method.endswith("POST") and code in INPUT_REFUSED):
        return OK
    if code in (401, 403, 404, 405):
        return str(code)
    return f"status {code}"


CASES = [
    pytest.param(name, role, method, id=f"{name}-{role}-{method}")
    for name, row in TABLE.items()
    for method in row.expect
    for role in ROLES
]


@pytest.mark.django_db
@pytest.mark.parametrize(("name", "role", "method"), CASES)
def test_permission_matrix(client, matrix, name, role, method):
    row = TABLE[name]
    expected = row.expect[method][role]
    user = getattr(matrix, role)
    if user is not None:
        client.force_login(user)
    url = reverse(name, kwargs=row.kwargs(matrix)) + (row.query(matrix) if callable(row.query) else row.query)
    headers = {"HTTP_HX_REQUEST": "true"} if method.startswith("HX-") else {}
    before = state()

    if method.endswith("POST") and row.json:
        response = client.post(url, json.dumps(row.data(matrix)), content_type="application/json", **headers)
    elif method.endswith("POST"):
        response = client.post(url, row.data(matrix), **headers)
    else:
        response = client.get(url, **headers)
    if response.streaming:  # a file download: reading it to the end lets the test client close it
        b"".join(response.streaming_content)

    got = outcome(response, method)
    assert got == expected, (
        f"{method} {url} as {role}: got {got} (HTTP {response.status_code}), expected {expected}"
    )
    if expected in REFUSED:
        assert state() == before, f"{method} {url} as {role} was refused but changed data"
    elif row.writes and method.endswith("POST"):
        assert state() != before, f"{method} {url} as {role} was allowed but changed nothing"
