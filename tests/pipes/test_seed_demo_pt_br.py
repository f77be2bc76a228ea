"""seed_demo --language pt-BR: names, processes and cards in Portuguese for a Brazilian audience."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command
from django.test.utils import override_settings

from pipes.management.demo import demo_language, demo_reset
from pipes.models import Card, CardEvent, Field, Phase, Pipe


@pytest.fixture(scope="module")
def seeded_pt(django_db_setup, django_db_blocker, tmp_path_factory):
    fast = override_settings(
        MEDIA_ROOT=tmp_path_factory.mktemp("media"),
        PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"],
    )
    out = io.StringIO()
    with django_db_blocker.unblock(), fast:
        try:
            call_command(
                "seed_demo", "--cards", "40", "--language", "pt-BR", stdout=out, stderr=io.StringIO()
            )
            yield out.getvalue()
        finally:
            demo_reset()


@pytest.fixture
def demo(seeded_pt, db, media_root):
    return seeded_pt


def test_it_names_the_processes_and_phases_in_portuguese(demo):
    names = set(Pipe.objects.values_list("name", flat=True))
    assert names == {
        "Aprovação da nota",
        "Cadastro de fornecedores",
        "Análise de crédito",
        "Admissão de funcionários",
    }
    assert Phase.objects.filter(name="Conferência da nota").exists()
    assert "Aprovação da nota (/pipes/" in demo


def test_it_labels_fields_and_options_in_portuguese(demo):
    decision = Field.objects.get(pipe__name="Aprovação da nota", key="decision")
    assert decision.label == "Decisão" and "Aprovado" in decision.options


def test_it_fills_cards_with_portuguese_values_that_pass_the_conditions(demo):
    paid = Card.objects.filter(pipe__name="Aprovação da nota", phase__key="paid")
    assert paid.exists()
    assert {c.values.get("decision") for c in paid} == {"Aprovado"}
    comments = CardEvent.objects.filter(kind="commented").values_list("payload__text", flat=True)
    assert any("Pague no vencimento" in (t or "") or "Alguma novidade" in (t or "") for t in comments)


def test_it_keeps_keys_and_codes_as_they_are(demo):
    pipe = Pipe.objects.get(name="Aprovação da nota")
    assert set(pipe.phases.values_list("key", flat=True)) >= {"approval", "paid", "rejected"}
    assert pipe.fields.filter(key="decision").exists()


@pytest.mark.parametrize(
    ("code", "language"), [("pt-BR", "pt-br"), ("pt_BR", "pt-br"), ("en", "en"), ("", "en")]
)
def test_it_reads_the_language_codes_people_type(code, language):
    assert demo_language(code) == language
