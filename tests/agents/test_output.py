"""An agent's answer schema and its all-or-nothing check; documents as the model reads them."""

from __future__ import annotations

import hashlib
from decimal import Decimal

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from agents.documents import document_read
from agents.output import InvalidOutput, answer_parse, answer_schema
from pipes.fieldtypes import ParseContext
from pipes.services import Actor, card_attach_files, card_create
from tests.orchestrator.conftest import make_agent
from tests.personas import good_start_values

pytestmark = pytest.mark.django_db


@pytest.fixture
def agent(world):
    return make_agent(world.pipe, writable_fields=["category", "cost_center", "urgent", "quote"])


def fields_of(world):
    return {f.key: f for f in world.pipe.fields.all()}


def test_it_builds_the_schema_from_writable_fields_and_decisions(world, agent):
    schema = answer_schema(agent, fields_of(world))
    values = schema["properties"]["values"]
    assert schema["properties"]["decision"]["enum"] == ["approve", "reject", "escalate"]
    assert values["properties"]["category"]["enum"] == ["Hardware", "Software", "Services"]
    assert values["properties"]["urgent"]["type"] == "boolean"
    assert "quote" not in values["properties"]  # attachments are never written by agents
    assert values["additionalProperties"] is False and schema["additionalProperties"] is False


def test_it_accepts_a_valid_answer_in_stored_form(world, agent):
    answer = answer_parse(
        text='```json\n{"decision": "approve", "values": {"category": "Software", "urgent": "yes"},'
        ' "confidence": 0.8, "reasoning": " fine "}\n```',
        agent=agent,
        fields=fields_of(world),
        ctx=ParseContext(pipe=world.pipe),
    )
    assert answer.values == {"category": "Software", "urgent": True}
    assert answer.confidence == Decimal("0.80") and answer.reasoning == "fine"


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("not json", "the answer is not valid JSON"),
        ("[1, 2]", "the answer must be a JSON object"),
        (
            '{"decision": "approve", "confidence": 1.5, "reasoning": ""}',
            "confidence must be a number between 0 and 1",
        ),
        (
            '{"decision": "approve", "confidence": true, "reasoning": ""}',
            "confidence must be a number between 0 and 1",
        ),
        (
            '{"decision": "approve", "confidence": 0.9, "reasoning": "", "values": {"category": "Food"}}',
            "field 'category': “Food” is not one of the options.",
        ),
        (
            '{"decision": "approve", "confidence": 0.9, "reasoning": "", "values": {"quote": [1]}}',
            "field 'quote' is outside the agent's scope",
        ),
    ],
)
def test_it_refuses_the_whole_answer_for_any_problem(world, agent, text, error):
    with pytest.raises(InvalidOutput) as exc:
        answer_parse(text=text, agent=agent, fields=fields_of(world), ctx=ParseContext(pipe=world.pipe))
    assert any(e.startswith(error) for e in exc.value.errors), exc.value.errors


def test_it_reads_text_and_csv_files_with_their_digest(world, media_root):
    card = card_create(actor=Actor.for_user(world.member), pipe=world.pipe, values=good_start_values())
    csv = b"item;qty\nlaptop;2\n"
    files = card_attach_files(
        actor=Actor.for_user(world.member),
        card=card,
        uploads=[SimpleUploadedFile("lines.csv", csv), SimpleUploadedFile("note.txt", b"a" * 50)],
        field_key="quote",
    )
    lines = document_read(files[0])
    assert lines.text == "item;qty\nlaptop;2\n" and lines.sha256 == hashlib.sha256(csv).hexdigest()
    note = document_read(files[1], max_chars=10)
    assert note.text == "a" * 10 and note.truncated
