"""The rail's reasons read in the reader's language, from what the rail really wrote."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse
from django.utils import translation

from orchestrator.models import Mechanism, Risk, StepRun
from orchestrator.rail.reasons import reason_display
from pipes.services import Actor, card_create
from tests.modelservers import answer, low_confidence
from tests.orchestrator.conftest import drain, make_agent, make_step
from tests.personas import good_start_values

pytestmark = pytest.mark.django_db

GOOD = {"category": "Hardware", "cost_center": "CC-100"}


@pytest.fixture
def triage(world, ollama, openai):
    return make_step(world.phase("triage"), agent=make_agent(world.pipe))


def _run(world) -> StepRun:
    card = card_create(actor=Actor.for_user(world.requester), pipe=world.pipe, values=good_start_values())
    drain()
    return StepRun.objects.get(card=card)


def test_a_model_decision_reads_in_portuguese_and_stays_english_in_the_record(world, triage, ollama):
    ollama.push(answer("approve", GOOD, 0.9))
    run = _run(world)
    assert run.routing_reason == "local model llama-test decided approve with confidence 0.90"

    with translation.override("pt-br"):
        shown = reason_display(run.routing_reason)

    assert shown == "modelo local llama-test decidiu approve com confiança 0.90"
    with translation.override("en"):
        assert reason_display(run.routing_reason) == run.routing_reason


def test_a_hand_over_reads_piece_by_piece(world, triage, ollama, openai):
    ollama.push(low_confidence())
    openai.push(low_confidence())
    run = _run(world)
    assert run.routing_reason.endswith(" → human") and "; " in run.routing_reason

    with translation.override("pt-br"):
        shown = reason_display(run.routing_reason)

    assert shown.endswith(" → uma pessoa")
    assert shown.startswith("confiança do modelo local ") and "confiança do modelo de fundação " in shown
    assert "below" not in shown and "human" not in shown


@pytest.mark.parametrize(
    ("written", "read"),
    [
        ("risk high → human", "risco alto → uma pessoa"),
        ("the step has no agent → human", "a etapa não tem agente → uma pessoa"),
        ("condition not met: step skipped", "condição não atendida: etapa pulada"),
        ("rule 2 matched → approve without a model", "regra 2 atendida → approve sem modelo"),
        (
            "foundation model gpt-test proposed approve with confidence 0.97; four eyes: two people approve → human",
            "modelo de fundação gpt-test propôs approve com confiança 0.97; dupla aprovação: duas pessoas aprovam"
            " → uma pessoa",
        ),
        (
            "rule 1 matched; approve proposed without a model; four eyes: two people approve → human",
            "regra 1 atendida; approve proposto sem modelo; dupla aprovação: duas pessoas aprovam → uma pessoa",
        ),
        (
            "Service invoice → approve without a model",
            "Service invoice → approve sem modelo",
        ),  # the rule's own words
        (
            "no model reachable (local model llama3 unreachable; no foundation model configured) → human",
            "nenhum modelo acessível (modelo local llama3 inacessível; nenhum modelo de fundação configurado)"
            " → uma pessoa",
        ),
        (
            "amount 12,000.00 exceeds authority 10,000.00 → human",
            "amount 12,000.00 excede a alçada do agente de 10,000.00 → uma pessoa",
        ),
        (
            "amount empty, authority 10,000 needs an amount → human",
            "amount vazio: a alçada de 10,000 exige um valor → uma pessoa",
        ),
        (
            "amount unreadable, authority 10,000 needs an amount → human",
            "amount ilegível: a alçada de 10,000 exige um valor → uma pessoa",
        ),
        (
            "amount in USD, authority 10,000 is in BRL → human",
            "amount em USD, mas a alçada de 10,000 é em BRL → uma pessoa",
        ),
        (
            "ERP said: 503 Service Unavailable",
            "ERP said: 503 Service Unavailable",
        ),  # not the rail's: as written
        (
            "Decided approve: OK; pay it → today",
            "Decidiu approve: OK; pay it → today",
        ),  # the comment as written
        ("Decided reject", "Decidiu reject"),
        ("Retry of Classify the request", "Nova tentativa de Classify the request"),
        ("Edited the agent's draft: Category", "Editou o rascunho do agente: Category"),
        ("Asked the requester to correct: Amount, Quote", "Pediu ao solicitante que corrija: Amount, Quote"),
        (
            "Review overdue (SLA 48 h): escalated to the pipe's admins",
            "Revisão atrasada (SLA de 48 h): escalonada para os administradores do pipe",
        ),
        (
            "Approved (1 of 2): a second reviewer must confirm: looks fine",
            "Aprovada (1 de 2): um segundo revisor precisa confirmar: looks fine",
        ),
        (
            "Delegated the review to Rita: You know this supplier",
            "Delegou a revisão para Rita: You know this supplier",
        ),
    ],
)
def test_each_phrase_of_the_rail_reads_in_portuguese_and_as_written_in_english(written, read):
    with translation.override("pt-br"):
        assert reason_display(written) == read
    with translation.override("en"):
        assert reason_display(written) == written


def test_the_run_page_shows_the_reason_in_the_readers_language(client, world, rail_settings):
    make_step(world.phase("triage"), mechanism=Mechanism.HUMAN, risk=Risk.LOW, key="decide", name="Decide")
    card = card_create(actor=Actor.for_user(world.requester), pipe=world.pipe, values=good_start_values())
    drain()
    run = StepRun.objects.get(card=card)
    client.force_login(world.admin)
    client.post(reverse("set_language"), {"language": "pt-br"})

    run_page = client.get(reverse("rail:run", kwargs={"run_id": run.pk})).content.decode()

    why = re.search(r'<p class="rail-reason">(.*?)</p>', run_page, re.S).group(1)
    assert "a etapa é decidida por uma pessoa" in why and "decided by a person" not in why


def test_the_card_timeline_shows_a_steps_reason_in_the_readers_language(client, world, rail_settings):
    make_step(
        world.phase("triage"),
        key="note",
        name="Note",
        mechanism=Mechanism.AUTOMATION,
        actions=[{"type": "comment", "text": "Noted."}],
        on_approve="",
        on_reject="",
    )
    card = card_create(actor=Actor.for_user(world.requester), pipe=world.pipe, values=good_start_values())
    drain()
    assert card.events.get(kind="step").reason == "automation: comment"
    client.force_login(world.admin)
    client.post(reverse("set_language"), {"language": "pt-br"})

    panel = client.get(reverse("card_detail", args=[world.pipe.pk, card.pk])).content.decode()

    assert "automação: comment" in panel and "automation: comment" not in panel
