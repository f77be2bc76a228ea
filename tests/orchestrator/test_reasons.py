"""The rail's reasons: stored as codes with parameters (and the English sentence of the record), read in
the reader's language as a person would say them; reasons stored as prose only still read."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse
from django.utils import translation

from orchestrator.inbox.services import inbox_decide
from orchestrator.models import Mechanism, ReviewTask, Risk, StepRun
from orchestrator.rail.reasons import Part, Reason, reason_display
from pipes.models import Field
from pipes.services import Actor, card_create, card_move, card_update_fields
from tests.modelservers import answer, error, low_confidence
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


def _shown(run: StepRun, language: str) -> str:
    with translation.override(language):
        return reason_display(run.routing_reason, run.reason_data)


def test_it_stores_a_model_decision_as_codes_beside_the_english_sentence(world, triage, ollama):
    ollama.push(answer("approve", GOOD, 0.9))
    run = _run(world)

    assert run.routing_reason == "local model llama-test decided approve with confidence 0.90"
    assert run.reason_data == {
        "parts": [
            {
                "code": "model_decided",
                "params": {
                    "tier": "local",
                    "model": "llama-test",
                    "decision": "approve",
                    "confidence": "0.90",
                },
            }
        ],
        "then": None,
    }
    assert _shown(run, "en") == "The local model llama-test decided “approve”, 90% sure"
    assert _shown(run, "pt-br") == "O modelo local llama-test decidiu “aprovar”, com 90% de confiança"


def test_a_hand_over_says_each_models_confidence_and_that_a_person_decides(world, triage, ollama, openai):
    ollama.push(low_confidence())
    openai.push(low_confidence())
    run = _run(world)
    assert run.routing_reason.endswith(" → human") and "; " in run.routing_reason  # the record, as before

    assert _shown(run, "en") == (
        "The local model llama-test was 31% sure, below the 70% required; the foundation model gpt-test was"
        " 31% sure, below the 70% required, so this needs a person"
    )
    shown = _shown(run, "pt-br")
    assert shown.startswith("O modelo local llama-test teve 31% de confiança, abaixo dos 70% exigidos; ")
    assert shown.endswith(", então isto precisa de uma pessoa") and "human" not in shown


def test_no_model_reachable_reads_as_a_person_would_say_it(world, triage, ollama, openai):
    ollama.push(error(500), error(500), error(500))
    openai.push(error(500), error(500), error(500))
    run = _run(world)
    assert run.routing_reason.startswith("no model reachable (local model llama-test unreachable")

    assert _shown(run, "en").startswith(
        "No model could be reached, so this needs a person (the local model llama-test could not be reached"
    )
    assert _shown(run, "pt-br").startswith(
        "Nenhum modelo pôde ser acessado, então isto precisa de uma pessoa (o modelo local llama-test não"
        " pôde ser acessado"
    )


LOCAL = {"tier": "local", "model": "llama3.2"}


@pytest.mark.parametrize(
    ("reason", "english", "portuguese"),
    [
        (
            Reason.of("left_before_steps"),
            "The card left the phase before its steps ran",
            "O card saiu da fase antes de suas etapas rodarem",
        ),
        (
            Reason.of("left_before_review"),
            "The card left the phase before the review",
            "O card saiu da fase antes da revisão",
        ),
        (
            Reason.of("left_while_running"),
            "The card left the phase while the step ran",
            "O card saiu da fase enquanto a etapa rodava",
        ),
        (
            Reason.of("condition_not_met"),
            "The step's condition was not met, so it was skipped",
            "A condição da etapa não foi atendida, então ela foi pulada",
        ),
        (Reason.of("by_person"), "This step is decided by a person", "Esta etapa é decidida por uma pessoa"),
        (
            Reason.of("automation", kinds="comment, http"),
            "The automation ran: comment, http",
            "A automação rodou: comment, http",
        ),
        (
            Reason((Part("rule_matched", {"n": 2}),), Part("without_model", {"decision": "approve"})),
            "Rule 2 matched, so it was approved without a model",
            "Regra 2 atendida, então foi aprovado sem modelo",
        ),
        (
            Reason(
                (Part("rule_says", {"text": "Small purchase"}),),
                Part("without_model", {"decision": "reject"}),
            ),
            "Small purchase, so it was rejected without a model",
            "Small purchase, então foi rejeitado sem modelo",
        ),
        (
            Reason((Part("rule_matched", {"n": 1}),), Part("without_model", {"decision": "escalate_cfo"})),
            "Rule 1 matched, so it was decided without a model: “escalate_cfo”",
            "Regra 1 atendida, então foi decidido sem modelo: “escalate_cfo”",
        ),
        (
            Reason.of("risk_high").to_human(),
            "The step is high risk, so this needs a person",
            "A etapa é de alto risco, então isto precisa de uma pessoa",
        ),
        (
            Reason.of("no_agent").to_human(),
            "The step has no agent, so this needs a person",
            "A etapa não tem agente, então isto precisa de uma pessoa",
        ),
        (
            Reason((Part("no_model_configured", {"tier": "foundation"}),), Part("no_model")),
            "No model could be reached, so this needs a person (no foundation model is configured)",
            "Nenhum modelo pôde ser acessado, então isto precisa de uma pessoa (nenhum modelo de fundação está"
            " configurado)",
        ),
        (
            Reason.of("budget_spent", budget=100000).to_human(),
            "The monthly budget of 100,000 tokens is spent, so this needs a person",
            "O orçamento mensal de 100.000 tokens acabou, então isto precisa de uma pessoa",
        ),
        (
            Reason.of("model_unreachable", **LOCAL).to_human(),
            "The local model llama3.2 could not be reached, so this needs a person",
            "O modelo local llama3.2 não pôde ser acessado, então isto precisa de uma pessoa",
        ),
        (
            Reason.of("model_refused", **LOCAL).to_human(),
            "The local model llama3.2 refused the request, so this needs a person",
            "O modelo local llama3.2 recusou o pedido, então isto precisa de uma pessoa",
        ),
        (
            Reason.of("answer_invalid", **LOCAL).to_human(),
            "The local model llama3.2 gave an answer that does not fit the form, so this needs a person",
            "O modelo local llama3.2 deu uma resposta que não cabe no formulário, então isto precisa de uma pessoa",
        ),
        (
            Reason.of("model_escalated", **LOCAL).to_human(),
            "The local model llama3.2 asked for a person, so this needs a person",
            "O modelo local llama3.2 pediu uma pessoa, então isto precisa de uma pessoa",
        ),
        (
            Reason.of("low_confidence", confidence="0.625", threshold="0.8", **LOCAL).to_human(),
            "The local model llama3.2 was 62.5% sure, below the 80% required, so this needs a person",
            "O modelo local llama3.2 teve 62,5% de confiança, abaixo dos 80% exigidos, então isto precisa de uma"
            " pessoa",
        ),
        (
            Reason.of("model_decided", decision="reject", confidence="0.95", **LOCAL),
            "The local model llama3.2 decided “reject”, 95% sure",
            "O modelo local llama3.2 decidiu “rejeitar”, com 95% de confiança",
        ),
        (
            Reason(
                (
                    Part("model_proposed", {"decision": "approve", "confidence": "0.97", **LOCAL}),
                    Part("four_eyes"),
                ),
                Part("human"),
            ),
            "The local model llama3.2 proposed “approve”, 97% sure; two people must approve it (four eyes), so this"
            " needs a person",
            "O modelo local llama3.2 propôs “aprovar”, com 97% de confiança; duas pessoas precisam aprovar (dupla"
            " aprovação), então isto precisa de uma pessoa",
        ),
        (
            Reason(
                (
                    Part("rule_matched", {"n": 1}),
                    Part("proposed_without_model", {"decision": "approve"}),
                    Part("four_eyes"),
                ),
                Part("human"),
            ),
            "Rule 1 matched; a rule proposed “approve” without a model; two people must approve it (four eyes), so"
            " this needs a person",
            "Regra 1 atendida; uma regra propôs “aprovar” sem modelo; duas pessoas precisam aprovar (dupla"
            " aprovação), então isto precisa de uma pessoa",
        ),
        (
            Reason.of(
                "authority_exceeded", field="amount", label="Amount", amount="12,000", limit="10,000"
            ).to_human(),
            "Amount of 12,000 is above the agent's authority of 10,000, so this needs a person",
            "Amount de 12,000 está acima da alçada do agente de 10,000, então isto precisa de uma pessoa",
        ),
        (
            Reason.of("authority_empty", field="amount", label="Amount", limit="10,000").to_human(),
            "Amount is empty, and the agent's authority of 10,000 needs an amount, so this needs a person",
            "Amount está vazio, e a alçada do agente de 10,000 exige um valor, então isto precisa de uma pessoa",
        ),
        (
            Reason.of("authority_unreadable", field="amount", label="Amount", limit="10,000").to_human(),
            "Amount could not be read as an amount, and the agent's authority of 10,000 needs one, so this needs"
            " a person",
            "Amount não pôde ser lido como valor, e a alçada do agente de 10,000 exige um, então isto precisa de"
            " uma pessoa",
        ),
        (
            Reason.of(
                "authority_currency",
                field="amount",
                label="Amount",
                limit="10,000",
                currency="USD",
                limit_currency="BRL",
            ).to_human(),
            "Amount is in USD, but the agent's authority of 10,000 is in BRL, so this needs a person",
            "Amount está em USD, mas a alçada do agente de 10,000 é em BRL, então isto precisa de uma pessoa",
        ),
        (
            Reason.of("answer_not_applied", why="Decision: required").to_human(),
            "The process refused the agent's answer (Decision: required), so this needs a person",
            "O processo recusou a resposta do agente (Decision: required), então isto precisa de uma pessoa",
        ),
        (Reason.of("review_decided", decision="approve", comment="fine"), "approved", "aprovou"),
        (Reason.of("review_decided", decision="reject"), "rejected", "rejeitou"),
        (Reason.of("review_decided", decision="hold"), "decided “hold”", "decidiu “hold”"),
        (
            Reason.of("retry_requested", step="Classify"),
            "asked to run Classify again",
            "pediu para rodar Classify de novo",
        ),
        (Reason.of("step_failed", error="ERP said 503"), "failed: ERP said 503", "falhou: ERP said 503"),
    ],
)
def test_each_reason_code_reads_in_english_and_portuguese(reason, english, portuguese):
    data = reason.as_data()
    with translation.override("en"):
        assert reason_display("", data) == english
    with translation.override("pt-br"):
        assert reason_display("", data) == portuguese


def test_the_record_keeps_the_sentences_the_rail_always_wrote():
    chain = Reason(
        (Part("model_unreachable", LOCAL), Part("no_model_configured", {"tier": "foundation"})),
        Part("no_model"),
    )
    assert (
        chain.record()
        == "no model reachable (local model llama3.2 unreachable; no foundation model configured) → human"
    )
    assert (
        Reason.of("budget_spent", budget=100000).to_human().record()
        == "monthly token budget 100,000 spent → human"
    )
    rule = Reason((Part("rule_says", {"text": "Small"}),), Part("without_model", {"decision": "approve"}))
    assert rule.record() == "Small → approve without a model"


def test_data_naming_a_code_this_version_lacks_falls_back_to_the_sentence():
    data = {"parts": [{"code": "something_new", "params": {}}], "then": None}
    with translation.override("pt-br"):
        assert reason_display("risk high → human", data) == "risco alto → uma pessoa"


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
def test_old_prose_reasons_still_read_in_portuguese_and_as_written_in_english(written, read):
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
    assert "Esta etapa é decidida por uma pessoa" in why and "decided by a person" not in why


def test_the_run_page_still_reads_a_reason_stored_as_prose_only(client, world, rail_settings):
    make_step(world.phase("triage"), mechanism=Mechanism.HUMAN, risk=Risk.LOW, key="decide", name="Decide")
    card = card_create(actor=Actor.for_user(world.requester), pipe=world.pipe, values=good_start_values())
    drain()
    run = StepRun.objects.get(card=card)
    StepRun.objects.filter(pk=run.pk).update(  # as a run from before reasons were data
        routing_reason="no model reachable (local model llama3 unreachable) → human", reason_data=None
    )
    client.force_login(world.admin)
    client.post(reverse("set_language"), {"language": "pt-br"})

    run_page = client.get(reverse("rail:run", kwargs={"run_id": run.pk})).content.decode()

    why = re.search(r'<p class="rail-reason">(.*?)</p>', run_page, re.S).group(1)
    assert "nenhum modelo acessível (modelo local llama3 inacessível) → uma pessoa" in why


def test_the_inbox_says_why_a_person_decides_in_the_readers_language(client, world, triage, ollama, openai):
    ollama.push(error(500), error(500), error(500))
    openai.push(error(500), error(500), error(500))
    _run(world)
    client.force_login(world.reviewer)

    english = client.get(reverse("inbox:index")).content.decode()
    client.post(reverse("set_language"), {"language": "pt-br"})
    portuguese = client.get(reverse("inbox:index")).content.decode()

    assert (
        "No model could be reached, so this needs a person (the local model llama-test could not" in english
    )
    assert "Nenhum modelo pôde ser acessado, então isto precisa de uma pessoa" in portuguese
    assert "→ human" not in english and "unreachable" not in english


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
    assert card.events.get(kind="step").reason == "automation: comment"  # the record, as before
    client.force_login(world.admin)
    client.post(reverse("set_language"), {"language": "pt-br"})

    panel = client.get(reverse("card_detail", args=[world.pipe.pk, card.pk])).content.decode()

    assert "<strong>Automação: Note</strong> A automação rodou: comment" in panel
    assert "automation: comment" not in panel


@pytest.fixture
def approval(world, rail_settings):
    make_step(
        world.phase("approval"),
        key="approve",
        name="Manager approval",
        mechanism=Mechanism.HUMAN,
        question="Approve this purchase?",
        on_approve="done",
        on_reject="rejected",
    )
    card = card_create(actor=Actor.for_user(world.member), pipe=world.pipe, values=good_start_values())
    card_update_fields(actor=Actor.for_user(world.member), card=card, values={"category": "Hardware"})
    card_move(actor=Actor.for_user(world.member), card=card, to_phase=world.phase("approval"))
    drain()
    return ReviewTask.objects.get(card=card)


def _timeline(client, user, world, card_id: int, language: str = "en") -> str:
    client.force_login(user)
    client.post(reverse("set_language"), {"language": language})
    panel = client.get(reverse("card_detail", args=[world.pipe.pk, card_id])).content.decode()
    return re.search(r'<ol class="timeline">(.*?)</ol>', panel, re.S).group(1)


def test_the_timeline_says_who_approved_with_their_comment_and_the_values_they_set(client, world, approval):
    world.reviewer.first_name, world.reviewer.last_name = "Rita", "Reviewer"
    world.reviewer.save()
    inbox_decide(
        task=approval,
        user=world.reviewer,
        decision="approve",
        comment="Fine by me",
        values={"approved_by": [world.reviewer.pk], "po_number": "PO-1"},
    )

    english = _timeline(client, world.admin, world, approval.card_id)
    portuguese = _timeline(client, world.admin, world, approval.card_id, "pt-br")

    assert re.search(r"<strong>Rita Reviewer</strong> approved\s*<time", english)
    assert "Fine by me" in english and "Decided approve" not in english
    assert "Approver: Rita Reviewer" in english
    assert re.search(r"<strong>Rita Reviewer</strong> aprovou\s*<time", portuguese)


def test_the_timeline_masks_a_personal_approver_for_a_viewer_without_view_pii(client, world, approval):
    Field.objects.filter(pipe=world.pipe, key="approved_by").update(pii=True)
    world.reviewer.first_name, world.reviewer.last_name = "Rita", "Reviewer"
    world.reviewer.save()
    inbox_decide(  # by the admin: a reviewer without view_pii may not set personal data (the inbox's rule)
        task=approval,
        user=world.admin,
        decision="approve",
        values={"approved_by": [world.reviewer.pk], "po_number": "PO-1"},
    )

    seen_by_viewer = _timeline(client, world.viewer, world, approval.card_id)
    seen_by_member = _timeline(client, world.member, world, approval.card_id)

    assert "Approver: Rita Reviewer" in seen_by_member
    assert (
        "Approver: " in seen_by_viewer and "Rita Reviewer" not in seen_by_viewer.split("Approver: ")[1][:40]
    )


def test_a_failed_model_step_names_the_model_on_the_timeline(client, world, ollama, rail_settings):
    make_step(
        world.phase("triage"), agent=make_agent(world.pipe), mechanism=Mechanism.LOCAL_MODEL, max_attempts=1
    )
    ollama.push(error(500), error(500), error(500))
    card = card_create(actor=Actor.for_user(world.requester), pipe=world.pipe, values=good_start_values())
    drain()
    failed = card.events.get(kind="step")
    assert failed.actor_label.startswith("Local model: ") and failed.reason.startswith("failed: ")

    english = _timeline(client, world.admin, world, card.pk)
    portuguese = _timeline(client, world.admin, world, card.pk, "pt-br")

    assert re.search(r"<strong>Local model: [^<]+</strong> failed: ", english)
    assert "Automation" not in english
    assert re.search(r"<strong>Modelo local: [^<]+</strong> falhou: ", portuguese)
