"""The shapes the API reads and writes (pydantic, through django-ninja): the OpenAPI schema is made of them.

Plain annotations (no `from __future__ import annotations`): ninja reads them at import time.
"""

import datetime as dt
from typing import Annotated, Any

from ninja import Field, Schema
from pydantic import StringConstraints

from pipes.parsing import MAX_INT

Id = Annotated[int, Field(ge=1, le=MAX_INT)]


def _id(example: int, description: str):
    return Annotated[
        int, Field(ge=1, le=MAX_INT, description=description, json_schema_extra={"example": example})
    ]


# The ids in a path, each with the example the OpenAPI document shows (examples.py uses the same ones).
PipeId = _id(7, "The pipe's id (GET /pipes lists them).")
CardId = _id(41, "The card's id (not its reference).")
TaskId = _id(17, "The review task's id.")
RunId = _id(231, "The step run's id.")
# Field values travel as the board's forms send them: text, or a list of texts (multi-select,
# checklist, people, labels, connections), or a boolean for a checkbox; the write path parses each by type.
Text = Annotated[str, StringConstraints(max_length=20000)]
FieldValue = Annotated[str, StringConstraints(max_length=20000)] | list[Text] | bool | None


class ErrorItem(Schema):
    field: str | None = Field(
        None, description="The field (or request part) at fault; null for the whole request."
    )
    message: str = Field(..., description="Why, in the caller's language (Accept-Language).")
    code: str = Field(..., description="forbidden, conflict, transition, invalid, not_found, unauthorized, …")


class Errors(Schema):
    errors: list[ErrorItem]

    model_config = {
        "json_schema_extra": {
            "examples": [
                {
                    "errors": [
                        {"field": "po_number", "message": "This field is required.", "code": "transition"}
                    ]
                }
            ]
        }
    }


# ---------------------------------------------------------------- organizations and pipes


class OrganizationOut(Schema):
    id: int
    name: str
    slug: str
    time_zone: str
    currency: str
    role: str = Field(..., description="owner or member")


class PhaseOut(Schema):
    id: int
    key: str
    name: str
    position: int
    is_final: bool
    sla_hours: int | None
    wip_limit: int | None
    wip_blocks: bool
    allowed_next: list[str] = Field(..., description="Keys of the phases a card may move to; empty: any.")


class FieldOut(Schema):
    key: str
    label: str
    type: str
    phase: str | None = Field(..., description="Key of the phase that asks it; null: the start form.")
    required: bool
    pii: bool
    help_text: str
    options: list[Any]
    condition: dict[str, Any] | None


class LabelOut(Schema):
    id: int
    name: str
    color: str


class PipeOut(Schema):
    id: int
    organization_id: int
    name: str
    slug: str
    code: str
    description: str
    title_field: str
    role: str | None = Field(..., description="The caller's role on the pipe.")
    can_work: bool
    can_view_pii: bool
    phases: list[PhaseOut]
    fields: list[FieldOut]
    labels: list[LabelOut]


# ---------------------------------------------------------------- cards


class PhaseRef(Schema):
    id: int
    key: str
    name: str


class CardOut(Schema):
    id: int
    reference: str
    pipe_id: int
    phase: PhaseRef
    title: str = Field(
        ..., description="Masked when the title field is personal data the caller may not see."
    )
    values: dict[str, Any] = Field(
        ..., description="Stored values by field key; personal data the caller may not see is masked text."
    )
    masked: list[str] = Field(..., description="Keys of the values shown masked.")
    assignees: list[int]
    labels: list[int]
    due_at: dt.datetime | None
    created_at: dt.datetime
    updated_at: dt.datetime
    phase_entered_at: dt.datetime
    finished_at: dt.datetime | None
    late_at: dt.datetime | None
    expired_at: dt.datetime | None
    rail_status: str
    version: int = Field(
        ..., description="Send it back as expected_version to refuse a write on a changed card."
    )


class FileOut(Schema):
    id: int
    name: str
    size: int
    content_type: str
    field_key: str
    uploaded_at: dt.datetime


class CardDetailOut(CardOut):
    files: list[FileOut]
    next_phases: list[PhaseRef] = Field(..., description="Where the card may move from here.")


class CardPage(Schema):
    items: list[CardOut]
    next_cursor: str | None = Field(..., description="Pass as ?cursor= for the next page; null at the end.")


class CardCreateIn(Schema):
    values: dict[str, FieldValue] = Field(default_factory=dict, description="Start-form values by field key.")
    title: Annotated[str, StringConstraints(max_length=255)] = ""

    model_config = {
        "json_schema_extra": {
            "examples": [
                {"values": {"item": "Laptop", "amount": "4500.00", "requester_email": "ana@example.com"}}
            ]
        }
    }


class FieldsIn(Schema):
    values: dict[str, FieldValue] = Field(..., description="Values to set, by field key.")
    expected_version: Id | None = None

    model_config = {"json_schema_extra": {"examples": [{"values": {"category": "Hardware"}}]}}


class MoveIn(Schema):
    to_phase: Annotated[str, StringConstraints(min_length=1, max_length=64)] = Field(
        ..., description="The key (or id) of the phase to move to."
    )
    expected_version: Id | None = None
    reason: Annotated[str, StringConstraints(max_length=300)] = ""

    model_config = {"json_schema_extra": {"examples": [{"to_phase": "approval"}]}}


class AssignIn(Schema):
    assignees: list[Id] = Field(..., max_length=100, description="User ids; an empty list clears them.")
    expected_version: Id | None = None


class LabelsIn(Schema):
    labels: list[Id] = Field(
        ..., max_length=100, description="Label ids of the pipe; an empty list clears them."
    )
    expected_version: Id | None = None


class CommentIn(Schema):
    text: Annotated[str, StringConstraints(max_length=20000)]


class CommentOut(Schema):
    card_id: int
    seq: int
    created_at: dt.datetime


# ---------------------------------------------------------------- reviews and runs


class ReviewOut(Schema):
    id: int
    card_id: int
    pipe_id: int
    card_reference: str
    card_title: str
    step: str
    question: str
    status: str
    allowed_decisions: list[str]
    assignee_id: int | None
    created_at: dt.datetime
    decided_at: dt.datetime | None
    decision: str


class DecideIn(Schema):
    decision: Annotated[str, StringConstraints(min_length=1, max_length=40)] = Field(
        ..., description="One of the task's allowed_decisions, e.g. approve or reject."
    )
    comment: Annotated[str, StringConstraints(max_length=5000)] = ""
    values: dict[str, FieldValue] = Field(
        default_factory=dict, description="The review's fields as the reviewer leaves them."
    )

    model_config = {
        "json_schema_extra": {"examples": [{"decision": "approve", "values": {"po_number": "PO-1"}}]}
    }


class DecisionOut(Schema):
    task: ReviewOut
    final: bool = Field(..., description="False when a four-eyes review waits for a second approval.")
    approvals: int
    approvals_required: int


class TraceEventOut(Schema):
    seq: int
    attempt: int
    kind: str
    summary: str
    data: Any
    created_at: dt.datetime


class RunOut(Schema):
    id: int
    card_id: int
    pipe_id: int
    step: str
    requested_mechanism: str
    mechanism: str
    routing_reason: str
    status: str
    decision: str
    attempts: int
    created_at: dt.datetime
    finished_at: dt.datetime | None
    latency_ms: int | None
    model: str
    input_tokens: int
    output_tokens: int
    cost: str
    currency: str
    error: str


class RunDetailOut(RunOut):
    trace: list[TraceEventOut]


# ---------------------------------------------------------------- SLA


class SlaPhaseOut(Schema):
    phase: str
    name: str
    sla_hours: int | None
    stays: int = Field(..., description="Stays in the phase that ended in the month.")
    met: int | None = Field(..., description="Of those, within the SLA; null when the phase has no SLA.")
    open_over: int = Field(
        ..., description="Stays still open at the end of the month (or now) and past the SLA."
    )
    median_seconds: float | None
    p90_seconds: float | None


class SlaEndToEndOut(Schema):
    finished: int
    within_deadline: int | None
    every_phase_met: int
    median_seconds: float | None
    p90_seconds: float | None
    deadline_days: int | None


class SlaLateOut(Schema):
    card_id: int
    reference: str
    title: str
    phase: str
    entered_at: dt.datetime
    left_at: dt.datetime | None
    over_seconds: float


class SlaOut(Schema):
    pipe_id: int
    month: str
    as_of: dt.datetime
    phases: list[SlaPhaseOut]
    end_to_end: SlaEndToEndOut
    late: list[SlaLateOut]
    late_total: int
