"""seed_demo: the demo company, its people, its pipes and cards with timelines that verify."""

from __future__ import annotations

import io

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.test.utils import override_settings

from pipes.management.demo import DEMO_PASSWORD, demo_reset
from pipes.models import Card, CardEvent, CardFile, Organization, PhaseEntry, Pipe
from pipes.roles import pipe_access


def seed(*args) -> str:
    out = io.StringIO()
    call_command("seed_demo", *args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


@pytest.fixture(scope="module")
def seeded(django_db_setup, django_db_blocker, tmp_path_factory):
    """One demo of 40 cards for the whole module (seeding takes seconds); removed at the end."""
    fast = override_settings(
        MEDIA_ROOT=tmp_path_factory.mktemp("media"),
        PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"],  # as tests/conftest.py sets
    )
    with django_db_blocker.unblock(), fast:
        try:
            yield seed("--cards", "40")
        finally:
            demo_reset()


@pytest.fixture
def demo(seeded, db, media_root):
    """The module's demo; changes a test makes are rolled back with its transaction."""
    return seeded


def test_it_creates_the_company_its_people_and_pipes(demo):
    org = Organization.objects.get(slug="acme")
    assert (org.name, org.time_zone, org.currency) == ("Acme Ltda", "America/Sao_Paulo", "BRL")
    assert sorted(org.pipes.values_list("slug", flat=True)) == [
        "accounts-payable",
        "credit-analysis",
        "employee-onboarding",
        "supplier-onboarding",
    ]
    User = get_user_model()
    roles = {}
    for username in ("owner", "ana.admin", "marcos", "rita", "renato", "vera"):
        user = User.objects.get(username=username)
        assert user.check_password(DEMO_PASSWORD)
        roles[username] = {pipe_access(user=user, pipe=p).role for p in org.pipes.all()}
    assert roles == {
        "owner": {"admin"},  # owners hold every permission
        "ana.admin": {"admin"},
        "marcos": {"member"},
        "rita": {"reviewer"},
        "renato": {"requester"},
        "vera": {"viewer"},
    }
    assert User.objects.get(username="owner").is_staff


def test_it_prints_credentials_and_where_to_start(demo):
    assert "Created Acme Ltda: 4 pipes, 40 cards" in demo
    for username in ("owner", "ana.admin", "marcos", "rita", "renato", "vera"):
        assert f"  {username} " in demo
    assert demo.count(DEMO_PASSWORD) >= 6
    assert demo.rstrip().endswith(
        "Open http://127.0.0.1:8000/ and sign in as marcos (or any user above) with the password trilho-demo."
    )


def test_it_spreads_cards_over_open_and_finished_phases(demo):
    assert Card.objects.count() == 40
    for pipe in Pipe.objects.filter(organization__slug="acme"):
        assert pipe.cards.exists(), pipe.slug
    open_cards = Card.objects.filter(phase__is_final=False)
    finished = Card.objects.filter(phase__is_final=True)
    assert open_cards.count() >= 5 and finished.count() >= 5
    assert all(c.finished_at is not None for c in finished)
    assert Card.objects.filter(assignees__isnull=False).distinct().count() >= 10
    assert Card.objects.filter(labels__isnull=False).exists()
    assert Card.objects.filter(created_by__username="renato").exists()
    # Every card was built through the services: created, entered phases, with history.
    assert CardEvent.objects.filter(kind="created").count() == 40
    assert set(CardEvent.objects.values_list("kind", flat=True)) >= {"created", "moved", "fields_changed"}
    assert PhaseEntry.objects.count() >= Card.objects.count()
    # Invoices carry their PDF.
    invoices = Card.objects.filter(pipe__slug="accounts-payable")
    assert CardFile.objects.filter(card__in=invoices, field_key="invoice_file").count() == invoices.count()


def test_it_writes_history_that_happened_over_weeks(demo):
    oldest = Card.objects.order_by("created_at").first()
    newest = Card.objects.order_by("created_at").last()
    assert (newest.created_at - oldest.created_at).days >= 7
    for card in Card.objects.filter(phase__is_final=True)[:5]:
        times = list(card.events.values_list("created_at", flat=True))
        assert times == sorted(times)
        assert card.finished_at == times[-1] or card.finished_at <= times[-1]


def test_it_passes_verify_timeline(demo):
    out = io.StringIO()
    call_command("verify_timeline", stdout=out)
    events = CardEvent.objects.count()
    assert out.getvalue().strip() == f"40 cards, {events} events verified, no breaks"


def test_it_refuses_to_seed_twice_unless_reset(demo):
    with pytest.raises(CommandError, match="--reset"):
        seed("--cards", "5")

    out = seed("--cards", "6", "--reset")

    assert out.startswith("Removed the previous demo.")
    assert Organization.objects.filter(slug="acme").count() == 1
    assert Card.objects.count() == 6
    assert get_user_model().objects.filter(username="marcos").count() == 1


def test_it_draws_the_same_demo_from_the_same_seed(demo):
    def snapshot():
        return sorted(Card.objects.values_list("pipe__slug", "title", "created_by__username"))

    seed("--cards", "12", "--seed", "3", "--reset")
    first = snapshot()
    seed("--cards", "12", "--seed", "3", "--reset")
    assert snapshot() == first
    seed("--cards", "12", "--seed", "4", "--reset")
    assert snapshot() != first
