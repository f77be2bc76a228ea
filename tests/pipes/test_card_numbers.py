"""Cards are numbered per pipe: the first card of a new pipe is CODE-1, whatever other pipes hold."""

import importlib

import pytest
from django.apps import apps

from pipes.models import Card, Pipe
from pipes.services import Actor, card_create
from tests.personas import build_purchase_pipe, good_start_values

migration = importlib.import_module("pipes.migrations.0007_card_number_per_pipe")


def _file(world, pipe):
    return card_create(actor=Actor.for_user(world.owner), pipe=pipe, values=good_start_values())


def test_it_numbers_the_first_card_of_a_new_pipe_one(world):
    for _ in range(3):
        _file(world, world.pipe)
    other = build_purchase_pipe(world.org, slug="second", code="SE")
    card = _file(world, other)
    assert card.number == 1
    assert card.reference == "SE-1"


def test_it_counts_each_pipe_on_its_own(world):
    other = build_purchase_pipe(world.org, slug="second", code="SE")
    refs = [_file(world, p).reference for p in (world.pipe, other, world.pipe, other, world.pipe)]
    assert refs == ["PR-1", "SE-1", "PR-2", "SE-2", "PR-3"]


def test_it_keeps_the_primary_key_in_the_card_url(world, client):
    _file(world, world.pipe)
    card = _file(world, world.pipe)
    client.force_login(world.member)
    response = client.get(f"/pipes/{world.pipe.pk}/cards/{card.pk}/")
    assert response.status_code == 200
    assert "PR-2" in response.content.decode()


@pytest.mark.django_db
def test_it_numbers_existing_cards_per_pipe_in_creation_order(world):
    other = build_purchase_pipe(world.org, slug="second", code="SE")
    made = [_file(world, p) for p in (world.pipe, other, world.pipe, other, other)]
    Card.objects.update(number=None)
    Pipe.objects.update(last_card_number=0)

    migration.number_existing_cards(apps, None)

    numbers = [Card.objects.get(pk=c.pk).number for c in made]
    assert numbers == [1, 1, 2, 2, 3]
    assert Pipe.objects.get(pk=other.pk).last_card_number == 3
    assert _file(world, other).reference == "SE-4"
