"""What the API does for people beyond the card itself: @mentions in comments notify as on the board,
and a pipe's fields as each role may see them (requesters: the start form, to build a form)."""

from __future__ import annotations

import pytest
from django.core import mail

from pipes.models import Field, Notification
from pipes.services import Actor, card_create
from tests.api.conftest import ApiClient, make_token
from tests.personas import good_start_values

pytestmark = pytest.mark.django_db


def a_card(world):
    return card_create(actor=Actor.for_user(world.requester), pipe=world.pipe, values=good_start_values())


def comments_url(world, card) -> str:
    return f"/api/v1/pipes/{world.pipe.pk}/cards/{card.pk}/comments"


# ---------------------------------------------------------------- mentions


def test_a_comment_through_the_api_notifies_the_people_it_mentions(
    world, api_as, settings, django_capture_on_commit_callbacks
):
    settings.ALLOWED_HOSTS = ["trilho.example"]
    card = a_card(world)
    with django_capture_on_commit_callbacks(execute=True):  # the email goes out once the comment commits
        response = api_as(world.member).post(
            comments_url(world, card),
            {"text": "@admin please check, and @nobody and @outsider too"},
            HTTP_HOST="trilho.example",
        )
    assert response.status_code == 201, response.content
    note = Notification.objects.get()  # the outsider takes no part in the pipe: not told
    assert note.user == world.admin and note.card == card
    assert note.url == f"/pipes/{world.pipe.pk}/cards/{card.pk}/"
    assert "Member mentioned you on" in note.message
    assert len(mail.outbox) == 1 and mail.outbox[0].to == ["admin@example.com"]
    assert f"http://trilho.example/pipes/{world.pipe.pk}/cards/{card.pk}/" in mail.outbox[0].body
    event = card.events.get(kind="commented")
    assert event.payload["mentions"] == [world.admin.pk]


def test_a_repeated_comment_notifies_once(world, api_as, django_capture_on_commit_callbacks):
    card = a_card(world)
    api = api_as(world.member)
    for _ in range(2):
        with django_capture_on_commit_callbacks(execute=True):
            response = api.post(comments_url(world, card), {"text": "@admin see"}, key="comment-1")
        assert response.status_code == 201, response.content
    assert Notification.objects.count() == 1 and len(mail.outbox) == 1


def test_the_author_is_not_told_of_their_own_mention(world, api_as):
    card = a_card(world)
    assert (
        api_as(world.member).post(comments_url(world, card), {"text": "note to @member"}).status_code == 201
    )
    assert not Notification.objects.exists() and not mail.outbox


def test_a_mention_masks_a_pii_title_for_whoever_may_not_see_it(world, api_as):
    Field.objects.filter(pipe=world.pipe, key="item").update(pii=True)
    card = card_create(
        actor=Actor.for_user(world.requester),
        pipe=world.pipe,
        values=good_start_values(item="Laptop for Joana"),
    )
    api_as(world.member).post(comments_url(world, card), {"text": "@reviewer and @admin, see"})
    told = {n.user.username: n.message for n in Notification.objects.select_related("user")}
    assert "Joana" not in told["reviewer"]
    assert "Laptop for Joana" in told["admin"]


# ---------------------------------------------------------------- a pipe's fields by role


def fields_url(world) -> str:
    return f"/api/v1/pipes/{world.pipe.pk}/fields"


@pytest.fixture
def internal_fields(world):
    """A start-form field kept from requesters, beside the phases' fields the world has."""
    Field.objects.create(
        pipe=world.pipe,
        key="budget_code",
        label="Budget code",
        type="short_text",
        position=9,
        visible_to_requester=False,
    )


@pytest.mark.parametrize("role", ["owner", "admin", "member", "reviewer", "viewer"])
def test_the_pipe_s_people_read_every_field(world, role, internal_fields):
    response = ApiClient(make_token(world, getattr(world, role), scope="read")).get(fields_url(world))
    assert response.status_code == 200, response.content
    keys = {f["key"]: f for f in response.json()}
    assert {"item", "requester_email", "budget_code", "category", "cost_center", "po_number"} <= set(keys)
    assert keys["category"]["phase"] == "triage" and keys["item"]["phase"] is None


def test_a_requester_reads_the_start_form_shown_to_requesters(world, internal_fields):
    response = ApiClient(make_token(world, world.requester, scope="read")).get(fields_url(world))
    assert response.status_code == 200, response.content
    fields = response.json()
    assert [f["key"] for f in fields] == [
        "item",
        "amount",
        "requester_email",
        "urgent",
        "urgency_reason",
        "quote",
    ]
    assert all(f["phase"] is None for f in fields)
    email = next(f for f in fields if f["key"] == "requester_email")
    assert email["pii"] is True and email["required"] is True  # they fill it: the form needs it
    reason = next(f for f in fields if f["key"] == "urgency_reason")
    assert reason["condition"] == {"field": "urgent", "op": "true"}


def test_a_requester_builds_a_form_from_the_fields_and_opens_a_card(world):
    api = ApiClient(make_token(world, world.requester))
    fields = api.get(fields_url(world)).json()
    answers = {"item": "Chair", "amount": "300.00", "requester_email": "requester@example.com"}
    values = {f["key"]: answers[f["key"]] for f in fields if f["required"] and not f["condition"]}
    created = api.post(f"/api/v1/pipes/{world.pipe.pk}/cards", {"values": values})
    assert created.status_code == 201, created.content


@pytest.mark.parametrize(("role", "status"), [("outsider", 404), (None, 401)])
def test_people_outside_the_pipe_do_not_learn_its_fields(world, role, status):
    client = ApiClient()
    if role:
        client.client.force_login(getattr(world, role))
    response = client.get(fields_url(world))
    assert response.status_code == status
    assert "item" not in response.content.decode()


def test_a_requester_still_may_not_read_the_pipe_or_its_cards(world):
    api = ApiClient(make_token(world, world.requester, scope="read"))
    assert api.get(f"/api/v1/pipes/{world.pipe.pk}").status_code == 403
    assert api.get(f"/api/v1/pipes/{world.pipe.pk}/cards").status_code == 403
