"""Examples of the OpenAPI document: a request and an answer for every operation, and every error answer
with its schema, description and example.

Each endpoint passes `documented(...)` as its `openapi_extra` (its success example, its request body's
example, and an error example of its own where the general one would mislead); `document_errors`
then completes every error response of the document (TrilhoAPI.get_openapi_schema calls it): the
description of the status, an example, and the headers a client acts on (Retry-After on a 429,
WWW-Authenticate on a 401). tests/api/test_schema_examples.py checks that each example matches its
schema, so an example cannot drift from the shapes the API really answers.
"""

from __future__ import annotations

import copy
from typing import Any

JSON = "application/json"

# ---------------------------------------------------------------- answers

AT = "2025-03-10T13:05:22.481204Z"
LATER = "2025-03-10T14:40:07.118930Z"

ORGANIZATION = {
    "id": 1,
    "name": "Acme",
    "slug": "acme",
    "time_zone": "America/Sao_Paulo",
    "currency": "BRL",
    "role": "member",
}

PHASE_REF = {"id": 12, "key": "approval", "name": "Approval"}

FIELD = {
    "key": "amount",
    "label": "Amount",
    "type": "currency",
    "phase": None,
    "required": True,
    "pii": False,
    "help_text": "With taxes.",
    "options": [],
    "condition": None,
}
START_FIELDS = [
    {**FIELD, "key": "item", "label": "Item", "type": "short_text", "help_text": ""},
    FIELD,
    {**FIELD, "key": "requester_email", "label": "Your email", "type": "email", "pii": True, "help_text": ""},
    {
        **FIELD,
        "key": "urgency_reason",
        "label": "Why is it urgent?",
        "type": "long_text",
        "help_text": "",
        "condition": {"field": "urgent", "op": "true"},
    },
]

PIPE = {
    "id": 7,
    "organization_id": 1,
    "name": "Purchase requests",
    "slug": "purchases",
    "code": "PR",
    "description": "Buy what the team needs.",
    "title_field": "item",
    "role": "member",
    "can_work": True,
    "can_view_pii": True,
    "phases": [
        {
            "id": 11,
            "key": "triage",
            "name": "Triage",
            "position": 1,
            "is_final": False,
            "sla_hours": 24,
            "wip_limit": None,
            "wip_blocks": False,
            "allowed_next": ["approval", "rejected"],
        },
        {
            "id": 12,
            "key": "approval",
            "name": "Approval",
            "position": 2,
            "is_final": False,
            "sla_hours": 48,
            "wip_limit": 10,
            "wip_blocks": True,
            "allowed_next": [],
        },
    ],
    "fields": [
        FIELD,
        {
            **FIELD,
            "key": "category",
            "label": "Category",
            "type": "select",
            "phase": "triage",
            "help_text": "",
            "options": ["Hardware", "Software", "Services"],
        },
    ],
    "labels": [{"id": 3, "name": "Priority", "color": "#c4302b"}],
}

CARD = {
    "id": 41,
    "reference": "PR-41",
    "pipe_id": 7,
    "phase": PHASE_REF,
    "title": "Laptop for Ana",
    "values": {
        "item": "Laptop for Ana",
        "amount": {"amount": "4500.00", "currency": "BRL"},
        "requester_email": "a***@example.com",
        "category": "Hardware",
    },
    "masked": ["requester_email"],
    "assignees": [5],
    "labels": [3],
    "due_at": None,
    "created_at": AT,
    "updated_at": LATER,
    "phase_entered_at": LATER,
    "finished_at": None,
    "late_at": None,
    "expired_at": None,
    "rail_status": "idle",
    "version": 4,
}

FILE = {
    "id": 90,
    "name": "quote.pdf",
    "size": 48213,
    "content_type": "application/pdf",
    "field_key": "quote",
    "uploaded_at": AT,
}

CARD_DETAIL = {
    **CARD,
    "files": [FILE],
    "next_phases": [
        {"id": 13, "key": "done", "name": "Purchased"},
        {"id": 14, "key": "rejected", "name": "Rejected"},
    ],
}

CARD_PAGE = {"items": [CARD], "next_cursor": "WyIyMDI1LTAzLTEwVDEzOjA1OjIyLjQ4MTIwNCswMDowMCIsIDQxXQ"}

COMMENT = {"card_id": 41, "seq": 6, "created_at": LATER}

REVIEW = {
    "id": 17,
    "card_id": 41,
    "pipe_id": 7,
    "card_reference": "PR-41",
    "card_title": "Laptop for Ana",
    "step": "Manager approval",
    "question": "Approve this purchase?",
    "status": "open",
    "allowed_decisions": ["approve", "reject"],
    "assignee_id": None,
    "created_at": AT,
    "decided_at": None,
    "decision": "",
}

DECISION = {
    "task": {**REVIEW, "status": "decided", "decided_at": LATER, "decision": "approve"},
    "final": True,
    "approvals": 1,
    "approvals_required": 1,
}

RUN = {
    "id": 230,
    "card_id": 41,
    "pipe_id": 7,
    "step": "Classify the request",
    "requested_mechanism": "auto",
    "mechanism": "local_model",
    "routing_reason": "Low risk and the local model is confident enough.",
    "status": "done",
    "decision": "approve",
    "attempts": 1,
    "created_at": AT,
    "finished_at": LATER,
    "latency_ms": 1840,
    "model": "llama3.2",
    "input_tokens": 812,
    "output_tokens": 64,
    "cost": "0.000000",
    "currency": "BRL",
    "error": "",
}

RUN_DETAIL = {
    **RUN,
    "trace": [
        {
            "seq": 1,
            "attempt": 1,
            "kind": "prompt",
            "summary": "Asked llama3.2 to classify the request",
            "data": {"fields": ["item", "amount"]},
            "created_at": AT,
        }
    ],
}

SLA = {
    "pipe_id": 7,
    "month": "March 2025",
    "as_of": LATER,
    "phases": [
        {
            "phase": "triage",
            "name": "Triage",
            "sla_hours": 24,
            "stays": 120,
            "met": 111,
            "open_over": 2,
            "median_seconds": 15300.0,
            "p90_seconds": 70200.5,
        }
    ],
    "end_to_end": {
        "finished": 98,
        "within_deadline": 90,
        "every_phase_met": 84,
        "median_seconds": 190000.0,
        "p90_seconds": 401000.0,
        "deadline_days": 7,
    },
    "late": [
        {
            "card_id": 41,
            "reference": "PR-41",
            "title": "Laptop for Ana",
            "phase": "triage",
            "entered_at": AT,
            "left_at": LATER,
            "over_seconds": 5400.0,
        }
    ],
    "late_total": 1,
}

# ---------------------------------------------------------------- requests

CREATE_IN = {
    "values": {"item": "Laptop for Ana", "amount": "4500.00", "requester_email": "ana@example.com"},
    "title": "",
}
FIELDS_IN = {"values": {"category": "Hardware", "cost_center": "CC-123"}, "expected_version": 3}
MOVE_IN = {"to_phase": "approval", "expected_version": 4, "reason": "Quote attached."}
ASSIGN_IN = {"assignees": [5], "expected_version": 4}
LABELS_IN = {"labels": [3], "expected_version": 4}
COMMENT_IN = {"text": "@ana.admin the supplier's quote is attached."}
DECIDE_IN = {"decision": "approve", "comment": "Within budget.", "values": {"po_number": "PO-2025-118"}}
FILES_IN = {"files": ["(the file's bytes)"], "field_key": "quote"}

# ---------------------------------------------------------------- errors


def _error(field: str | None, message: str, code: str) -> dict:
    return {"errors": [{"field": field, "message": message, "code": code}]}


RETRY_AFTER = {
    "Retry-After": {
        "description": "Seconds until the caller's limit starts again (the rest of the clock minute).",
        "schema": {"type": "integer", "minimum": 1},
        "example": 23,
    }
}
WWW_AUTHENTICATE = {
    "WWW-Authenticate": {
        "description": "How to authenticate.",
        "schema": {"type": "string"},
        "example": 'Bearer realm="trilho"',
    }
}

# status -> (description, example, headers)
ERRORS: dict[int, tuple[str, dict, dict]] = {
    400: (
        "Unreadable input: not JSON, a wrong type, a value out of range, a bad cursor or Idempotency-Key. "
        "Each error names the part at fault.",
        _error("limit", "Input should be less than or equal to 100", "invalid"),
        {},
    ),
    401: (
        "No token, or a token that is unknown, revoked or whose owner can no longer sign in.",
        _error(None, "This token was revoked.", "unauthorized"),
        WWW_AUTHENTICATE,
    ),
    403: (
        "The caller takes part in the pipe but may not do this (a role, or a token that may only read).",
        _error(None, "This token may only read; make a read-and-write token to change cards.", "forbidden"),
        {},
    ),
    404: (
        "Not found, or not the caller's to know of: a pipe outside the token's pipes, or one the caller "
        "takes no part in.",
        _error(None, "Not found.", "not_found"),
        {},
    ),
    409: (
        "A conflict: the card changed since `expected_version` (read it again), or the request was "
        "already filed.",
        _error(
            None,
            "Someone else changed this card a moment ago. Reload it to see their change, then try again.",
            "conflict",
        ),
        {},
    ),
    422: (
        "Refused by the process: a required field, a value its field does not accept, a transition the "
        "pipe does not allow, a full WIP limit, or an Idempotency-Key reused with another body. Each "
        "error names its field and reason.",
        _error("amount", "Enter a number, e.g. 1234.56.", "invalid"),
        {},
    ),
    429: (
        "Too many requests for this token (or signed-in person) this minute.",
        _error(None, "Too many requests: wait a moment and try again.", "rate_limited"),
        RETRY_AFTER,
    ),
}

TRANSITION_422 = _error("category", "Fill in Category to leave Triage.", "transition")
DECIDE_409 = _error(None, "This review was already decided.", "conflict")
FORBIDDEN_REQUESTER_403 = _error(None, "You may not see the fields of Purchase requests.", "forbidden")


def documented(
    ok: tuple[int, Any],
    *,
    request: dict | None = None,
    content_type: str = JSON,
    errors: dict[int, dict] | None = None,
) -> dict:
    """An operation's openapi_extra: the example of its success answer, of its request body, and of any
    error answer of its own (the others get the general example of their status, document_errors)."""
    status, example = ok
    responses: dict[int, dict] = {status: {"content": {JSON: {"example": copy.deepcopy(example)}}}}
    for code, body in (errors or {}).items():
        responses[code] = {"content": {JSON: {"example": body}}}
    extra: dict[str, Any] = {"responses": responses}
    if request is not None:
        extra["requestBody"] = {"content": {content_type: {"example": copy.deepcopy(request)}}}
    return extra


def document_errors(schema: dict) -> dict:
    """Give every error response of the document its description, an example and its headers."""
    for path_item in schema.get("paths", {}).values():
        for operation in path_item.values():
            for status, response in operation.get("responses", {}).items():
                doc = ERRORS.get(int(status))
                if doc is None:
                    continue
                description, example, headers = doc
                response["description"] = description
                media = response.setdefault("content", {}).setdefault(JSON, {})
                media.setdefault("example", copy.deepcopy(example))
                if headers:
                    response.setdefault("headers", {}).update(copy.deepcopy(headers))
    return schema
