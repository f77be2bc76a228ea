"""Cards through the API: every endpoint x role and token scope, and the same gates as the board."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone

from orchestrator.models import ApiToken
from pipes.models import Card
from pipes.services import Actor, card_create, card_update_fields
from tests.api.conftest import ApiClient, make_token
from tests.personas import good_start_values

pytestmark = pytest.mark.django_db


def cards_url(world) -> str:
    return f"/api/v1/pipes/{world.pipe.pk}/cards"


def card_url(world, card, action: str = "") -> str:
    return f"/api/v1/pipes/{world.pipe.pk}/cards/{card.pk}" + (f"/{action}" if action else "")


def a_card(world, **values) -> Card:
    return card_create(
        actor=Actor.for_user(world.requester), pipe=world.pipe, values=good_start_values(**values)
    )


def errors_of(response) -> dict:
    return {e["field"]: e for e in response.json()["errors"]}


# ---------------------------------------------------------------- reads x roles


@pytest.mark.parametrize(
    ("role", "status"),
    [
        ("owner", 200),
        ("admin", 200),
        ("member", 200),
        ("reviewer", 200),
        ("viewer", 200),
        ("requester", 403),
        ("outsider", 404),
    ],
)
def test_it_lists_cards_to_people_who_see_the_board(world, role, status):
    a_card(world)
    user = getattr(world, role)
    client = ApiClient()
    client.client.force_login(user)
    response = client.get(cards_url(world))
    assert response.status_code == status, response.content
    if status == 200:
        assert [c["title"] for c in response.json()["items"]] == ["Laptop for Ana"]
    else:
        assert response.json()["errors"][0]["message"]


def test_it_masks_pii_for_people_without_view_pii(world, api_as):
    card = a_card(world)
    viewer = api_as(world.viewer, scope="read").get(card_url(world, card)).json()
    member = api_as(world.member, scope="read").get(card_url(world, card)).json()
    assert member["values"]["requester_email"] == "ana@example.com"
    assert viewer["values"]["requester_email"] != "ana@example.com"
    assert "requester_email" in viewer["masked"]


def test_it_filters_and_pages_with_a_cursor(world, api_as):
    for n in range(5):
        a_card(world, item=f"Item {n}")
    api = api_as(world.member, scope="read")
    first = api.get(cards_url(world), limit=2).json()
    assert [c["title"] for c in first["items"]] == ["Item 4", "Item 3"]
    second = api.get(cards_url(world), limit=2, cursor=first["next_cursor"]).json()
    assert [c["title"] for c in second["items"]] == ["Item 2", "Item 1"]
    third = api.get(cards_url(world), limit=2, cursor=second["next_cursor"]).json()
    assert [c["title"] for c in third["items"]] == ["Item 0"] and third["next_cursor"] is None
    assert [c["title"] for c in api.get(cards_url(world), q="Item 3").json()["items"]] == ["Item 3"]
    assert api.get(cards_url(world), phase="approval").json()["items"] == []
    assert len(api.get(cards_url(world), phase="triage", created_from="2000-01-01").json()["items"]) == 5
    assert api.get(cards_url(world), cursor="not-a-cursor").status_code == 400
    assert api.get(cards_url(world), phase="nowhere").status_code == 400


# ---------------------------------------------------------------- tokens: scope and pipes


def test_a_token_reaches_only_its_pipes(world):
    from tests.personas import build_purchase_pipe

    other = build_purchase_pipe(world.org, slug="other", code="OT")
    secret = make_token(world, world.owner, pipes=[other])
    api = ApiClient(secret)
    assert api.get(cards_url(world)).status_code == 404
    assert api.get(f"/api/v1/pipes/{other.pk}/cards").status_code == 200
    assert [p["id"] for p in api.get("/api/v1/pipes").json()] == [other.pk]


def test_a_read_token_may_not_write(world, api_as):
    response = api_as(world.member, scope="read").post(cards_url(world), {"values": good_start_values()})
    assert response.status_code == 403
    assert "only read" in response.json()["errors"][0]["message"]
    assert not Card.objects.exists()


def test_a_token_never_exceeds_its_owner(world, api_as):
    card = a_card(world)
    api = api_as(world.viewer, scope="write")  # a viewer may not move cards, whatever the token says
    response = api.post(card_url(world, card, "move"), {"to_phase": "approval"})
    assert response.status_code == 403


def test_a_revoked_token_is_refused(world):
    secret = make_token(world, world.member)
    api = ApiClient(secret)
    assert api.get(cards_url(world)).status_code == 200
    ApiToken.objects.update(revoked_at="2026-01-01T00:00:00Z")
    response = api.get(cards_url(world))
    assert response.status_code == 401
    assert response.json()["errors"][0]["message"] == "This token was revoked."
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_an_unknown_token_and_no_token_are_401(world):
    assert ApiClient("trl_nope").get(cards_url(world)).status_code == 401
    assert ApiClient().get(cards_url(world)).status_code == 401


def test_a_token_is_stored_hashed_and_notes_its_last_use(world):
    secret = make_token(world, world.member)
    token = ApiToken.objects.get()
    assert secret not in {token.secret_hash, token.prefix} and len(token.secret_hash) == 64
    assert secret.startswith(token.prefix)
    assert token.last_used_at is None
    ApiClient(secret).get(cards_url(world))
    token.refresh_from_db()
    assert token.last_used_at is not None


# ---------------------------------------------------------------- writes and the board's gates


def test_it_opens_a_card_and_moves_it(world, api_as):
    api = api_as(world.member)
    created = api.post(cards_url(world), {"values": good_start_values(amount="120.50")})
    assert created.status_code == 201, created.content
    card = Card.objects.get()
    assert created.json()["reference"] == f"PR-{card.number}"
    assert card.created_by == world.member
    assert api.post(card_url(world, card, "fields"), {"values": {"category": "Hardware"}}).status_code == 200
    moved = api.post(card_url(world, card, "move"), {"to_phase": "approval"})
    assert moved.status_code == 200, moved.content
    assert moved.json()["phase"]["key"] == "approval"


def test_a_move_meets_the_required_fields_of_the_phase_it_leaves(world, api_as):
    card = a_card(world)
    response = api_as(world.member).post(card_url(world, card, "move"), {"to_phase": "approval"})
    assert response.status_code == 422
    assert errors_of(response)["category"]["code"] == "transition"
    card.refresh_from_db()
    assert card.phase.key == "triage"


def test_a_move_meets_the_allowed_transitions(world, api_as):
    card = a_card(world)
    response = api_as(world.member).post(card_url(world, card, "move"), {"to_phase": "done"})
    assert response.status_code == 422
    assert "may only move to" in errors_of(response)[None]["message"]


def test_a_move_meets_a_blocking_wip_limit(world, api_as):
    from pipes.services import card_move

    approval = world.phase("approval")
    approval.wip_limit, approval.wip_blocks = 1, True
    approval.save()
    first, card = a_card(world), a_card(world)
    for each in (first, card):
        card_update_fields(actor=Actor.for_user(world.member), card=each, values={"category": "Hardware"})
    card_move(actor=Actor.for_user(world.member), card=first, to_phase=approval)
    response = api_as(world.member).post(card_url(world, card, "move"), {"to_phase": "approval"})
    assert response.status_code == 422, response.content
    assert response.json()["errors"][0]["code"] == "transition"


def test_a_stale_version_is_a_409(world, api_as):
    card = a_card(world)
    body = {"values": {"category": "Hardware"}, "expected_version": card.version + 5}
    response = api_as(world.member).post(card_url(world, card, "fields"), body)
    assert response.status_code == 409
    assert response.json()["errors"][0]["code"] == "conflict"


def test_a_bad_value_names_its_field(world, api_as):
    response = api_as(world.member).post(cards_url(world), {"values": good_start_values(amount="lots")})
    assert response.status_code == 422
    assert "amount" in errors_of(response)
    assert not Card.objects.exists()


def test_malformed_input_is_a_400_naming_the_part(world, api_as):
    api = api_as(world.member)
    assert api.post(cards_url(world), {"values": "nope"}).status_code == 400
    response = api.client.post(cards_url(world), "{not json", content_type="application/json", **api.headers)
    assert response.status_code == 400
    nul = api.post(cards_url(world), {"values": {"item": "a\x00b"}})
    assert nul.status_code == 400 and not Card.objects.exists()


def test_it_assigns_labels_comments_and_attaches(world, api_as, media_root):
    card = a_card(world)
    api = api_as(world.member)
    assigned = api.post(card_url(world, card, "assign"), {"assignees": [world.member.pk]})
    assert assigned.status_code == 200 and assigned.json()["assignees"] == [world.member.pk]
    label = world.pipe.labels.get()
    assert api.post(card_url(world, card, "labels"), {"labels": [label.pk]}).json()["labels"] == [label.pk]
    assert api.post(card_url(world, card, "assign"), {"assignees": [world.outsider.pk]}).status_code == 422
    comment = api.post(card_url(world, card, "comments"), {"text": "Checked."})
    assert comment.status_code == 201 and comment.json()["seq"] > 1
    upload = SimpleUploadedFile("quote.txt", b"Quote: 4500 BRL", content_type="text/plain")
    attached = api.client.post(card_url(world, card, "files"), {"files": [upload]}, **api.headers)
    assert attached.status_code == 201, attached.content
    assert attached.json()[0]["name"] == "quote.txt"


def test_reviewers_may_comment_but_not_move(world, api_as):
    card = a_card(world)
    api = api_as(world.reviewer)
    assert api.post(card_url(world, card, "comments"), {"text": "Looks fine."}).status_code == 201
    assert api.post(card_url(world, card, "move"), {"to_phase": "rejected"}).status_code == 403


def test_a_service_token_records_itself_on_the_timeline(world):
    secret = make_token(world, world.admin, kind="service", name="ERP sync")
    api = ApiClient(secret)
    assert api.post(cards_url(world), {"values": good_start_values()}).status_code == 201
    event = Card.objects.get().events.get(seq=1)
    assert "ERP sync" in event.reason


def test_a_service_token_needs_an_admin_of_its_pipes(world):
    from orchestrator.api.tokens import TokenError

    with pytest.raises(TokenError) as refused:
        make_token(world, world.member, kind="service")
    assert "pipes" in refused.value.errors


def test_a_token_whose_pipes_were_all_deleted_reaches_nothing(world):
    from pipes.models import Pipe
    from tests.personas import build_purchase_pipe

    spare = build_purchase_pipe(world.org, slug="spare", code="SP")
    secret = make_token(world, world.owner, pipes=[spare])
    Pipe.objects.filter(pk=spare.pk).delete()
    api = ApiClient(secret)
    assert api.get("/api/v1/organizations").status_code == 200  # the token itself is still good
    assert api.get(cards_url(world)).status_code == 404
    ApiToken.objects.update(revoked_at=timezone.now())
    assert api.get("/api/v1/organizations").json()["errors"][0]["message"] == "This token was revoked."
