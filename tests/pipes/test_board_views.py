"""The board's pages and HTMX endpoints through real URLs: permissions per role, moves and their
gate failures, in-place edits, comments with mentions, files, filters, live changes and query counts."""

from __future__ import annotations

import datetime as dt
import re
import zoneinfo

import pytest
from django.contrib.auth import get_user_model
from django.core import mail
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from pipes.models import Card, CardFile, Label, Notification
from pipes.services import (
    Actor,
    card_assign,
    card_attach_files,
    card_create,
    card_set_labels,
    card_update_fields,
)
from tests.orchestrator.conftest import rail_settings as rail_settings  # noqa: F401  (fixture)
from tests.personas import good_start_values

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
PDF = b"%PDF-1.4\n%test\n"

ROLES = ("owner", "admin", "member", "reviewer", "viewer", "requester", "outsider")
WORKERS = {"owner", "admin", "member"}
SEERS = WORKERS | {"reviewer", "viewer"}


def new_card(world, **values) -> Card:
    return card_create(
        actor=Actor.for_user(world.member), pipe=world.pipe, values=good_start_values(**values)
    )


def login(client, user):
    client.force_login(user)
    return client


def hx(**extra):
    return {"HTTP_HX_REQUEST": "true", **extra}


# ---------------------------------------------------------------- permissions, endpoint × role


def _endpoints(world, card, media_file):
    p, c = world.pipe.pk, card.pk
    triage, approval = world.phase("triage"), world.phase("approval")
    return {
        "board": ("get", reverse("board", args=[p]), {}),
        "card_detail": ("get", reverse("card_detail", args=[p, c]), {}),
        "column_more": ("get", reverse("column_more", args=[p, triage.pk]) + "?offset=0", {}),
        "changes": ("get", reverse("board_changes", args=[p]) + "?since=2020-01-01T00:00:00%2B00:00", {}),
        "move": ("post", reverse("card_move", args=[p, c]), {"to_phase": approval.pk}),
        "field_form": ("get", reverse("card_field", args=[p, c, "category"]), {}),
        "field_save": ("post", reverse("card_field", args=[p, c, "category"]), {"value": "Software"}),
        "assign": ("post", reverse("card_assign", args=[p, c]), {"assignees": [world.member.pk]}),
        "labels": ("post", reverse("card_labels", args=[p, c]), {"labels": []}),
        "due": ("post", reverse("card_due", args=[p, c]), {"due_at": "2030-01-01T10:00"}),
        "comment": ("post", reverse("card_comment", args=[p, c]), {"text": "Looks fine"}),
        "attach": ("post", reverse("card_attach", args=[p, c]), {"files": None}),
        "file": ("get", reverse("card_file", args=[p, c, media_file.pk]), {}),
    }


# What each role gets from each endpoint (the board page sends requesters to the portal).
EXPECTED = {
    "board": {**dict.fromkeys(SEERS, 200), "requester": 302, "outsider": 404},
    "card_detail": {**dict.fromkeys(SEERS, 200), "requester": 403, "outsider": 404},  # the HTMX panel
    "column_more": {**dict.fromkeys(SEERS, 200), "requester": 403, "outsider": 404},
    "changes": {**dict.fromkeys(SEERS, 200), "requester": 403, "outsider": 404},
    "move": {
        **dict.fromkeys(WORKERS, 422),
        "reviewer": 403,
        "viewer": 403,
        "requester": 403,
        "outsider": 404,
    },
    "field_form": {
        **dict.fromkeys(WORKERS, 200),
        "reviewer": 403,
        "viewer": 403,
        "requester": 403,
        "outsider": 404,
    },
    "field_save": {
        **dict.fromkeys(WORKERS, 200),
        "reviewer": 403,
        "viewer": 403,
        "requester": 403,
        "outsider": 404,
    },
    "assign": {
        **dict.fromkeys(WORKERS, 200),
        "reviewer": 403,
        "viewer": 403,
        "requester": 403,
        "outsider": 404,
    },
    "labels": {
        **dict.fromkeys(WORKERS, 200),
        "reviewer": 403,
        "viewer": 403,
        "requester": 403,
        "outsider": 404,
    },
    "due": {**dict.fromkeys(WORKERS, 200), "reviewer": 403, "viewer": 403, "requester": 403, "outsider": 404},
    "comment": {
        **dict.fromkeys(WORKERS, 200),
        "reviewer": 200,
        "viewer": 403,
        "requester": 403,
        "outsider": 404,
    },
    "attach": {
        **dict.fromkeys(WORKERS, 200),
        "reviewer": 403,
        "viewer": 403,
        "requester": 403,
        "outsider": 404,
    },
    "file": {**dict.fromkeys(SEERS, 200), "requester": 403, "outsider": 404},
}


@pytest.mark.parametrize("endpoint", sorted(EXPECTED))
@pytest.mark.parametrize("role", ROLES)
def test_it_checks_the_role_on_every_endpoint(client, world, media_root, endpoint, role):
    card = new_card(world)  # in triage without a category: moving it forward fails the gate (422)
    [media_file] = card_attach_files(
        actor=Actor.for_user(world.member), card=card, uploads=[SimpleUploadedFile("q.pdf", PDF)]
    )
    method, url, data = _endpoints(world, card, media_file)[endpoint]
    if endpoint == "attach":
        data = {"files": SimpleUploadedFile("more.pdf", PDF)}
    login(client, getattr(world, role))
    headers = {} if endpoint == "board" else hx()  # the board is a page; the rest are HTMX requests
    response = getattr(client, method)(url, data, **headers)
    expected = EXPECTED[endpoint][role]
    assert response.status_code == expected, (endpoint, role, response.status_code)
    if expected == 302:
        assert response["Location"] == "/portal/"


def test_it_sends_anonymous_people_to_the_login(client, world):
    response = client.get(reverse("board", args=[world.pipe.pk]))
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]


def test_it_shows_no_move_controls_to_viewers_and_reviewers(client, world):
    new_card(world)
    for user in (world.viewer, world.reviewer):
        html = login(client, user).get(reverse("board", args=[world.pipe.pk])).content.decode()
        assert 'data-can-move="0"' in html
        assert "data-move-menu" not in html
        assert "View only" in html
    html = login(client, world.member).get(reverse("board", args=[world.pipe.pk])).content.decode()
    assert 'data-can-move="1"' in html and "data-move-menu" in html


# ---------------------------------------------------------------- home


def test_it_lists_pipes_by_organization_with_open_and_late_counts(client, world):
    late = new_card(world, item="Old request")
    new_card(world, item="New request")
    Card.objects.filter(pk=late.pk).update(phase_entered_at=timezone.now() - dt.timedelta(hours=30))
    html = login(client, world.member).get("/").content.decode()
    assert "Acme" in html and "Purchase requests" in html
    assert re.search(r"<b>2</b>\s*open", html)
    assert re.search(r"<b>1</b>\s*late", html)


def test_it_sends_a_person_without_pipes_to_the_portal(client, world):
    response = login(client, world.requester).get("/")
    assert response.status_code == 302 and response["Location"] == "/portal/"


# ---------------------------------------------------------------- board


def test_it_renders_columns_with_counts_sla_and_final_phases(client, world):
    new_card(world, item="Chair")
    html = login(client, world.member).get(reverse("board", args=[world.pipe.pk])).content.decode()
    assert html.index("Triage") < html.index("Approval") < html.index("Purchased")
    assert "SLA 24 h" in html and "SLA 2 days" in html
    assert html.count("column column-final") == 2
    assert "Chair" in html and "BRL 4,500.00" in html


def test_it_shows_the_wip_limit_and_warns_when_reached(client, world):
    approval = world.phase("approval")
    approval.wip_limit, approval.wip_blocks = 1, True
    approval.save()
    card = new_card(world)
    card_update_fields(actor=Actor.system(), card=card, values={"category": "Hardware"})
    from pipes.services import card_move

    card_move(actor=Actor.system(), card=card, to_phase=approval)
    html = login(client, world.member).get(reverse("board", args=[world.pipe.pk])).content.decode()
    assert "WIP 1/1" in html and "Limit reached: no more cards can move in." in html


def test_it_masks_pii_for_people_who_may_not_see_it(client, world):
    world.pipe.key_fields = ["requester_email"]
    world.pipe.save()
    card = new_card(world, requester_email="joana@empresa.com")
    html = (
        login(client, world.viewer)
        .get(reverse("card_detail", args=[world.pipe.pk, card.pk]))
        .content.decode()
    )
    assert "joana@empresa.com" not in html
    assert "j***@e***.com" in html
    html = (
        login(client, world.member)
        .get(reverse("card_detail", args=[world.pipe.pk, card.pk]))
        .content.decode()
    )
    assert "joana@empresa.com" in html


def test_a_tile_drawn_before_shows_a_label_edit_and_new_key_fields_at_the_next_render(
    client, world, settings
):
    settings.DEBUG = False  # tiles are kept rendered (pipes.templatetags.trilho.fragment_cached)
    card = new_card(world, item="Kept tile")
    card_set_labels(actor=Actor.system(), card=card, labels=[Label.objects.get(name="Priority")])
    url = reverse("board", args=[world.pipe.pk])
    login(client, world.member)

    def tile() -> str:
        html = client.get(url).content.decode()
        return html[html.index(f'id="card-{card.pk}"') :].split("</article>")[0]

    assert "Priority" in tile() and "Category" not in tile()
    # Neither edit writes the card: its tile's own stamp stays, the design's moves.
    Label.objects.filter(name="Priority").update(name="Top priority", color="#123456")
    assert "Top priority" in tile() and "#123456" in tile()
    world.pipe.key_fields = ["category"]
    world.pipe.save()
    card_update_fields(actor=Actor.system(), card=card, values={"category": "Hardware"})
    assert "<dt>Category</dt><dd>Hardware</dd>" in tile()
    from pipes.models import Field

    Field.objects.filter(pipe=world.pipe, key="category").update(label="Kind")
    assert "<dt>Kind</dt><dd>Hardware</dd>" in tile()


def test_it_does_not_find_cards_by_pii_the_viewer_may_not_see(client, world):
    new_card(world, requester_email="joana@empresa.com")
    url = reverse("board", args=[world.pipe.pk]) + "?q=joana"
    assert 'id="card-' not in login(client, world.viewer).get(url).content.decode()
    assert 'id="card-' in login(client, world.member).get(url).content.decode()


def _title_is_pii(world) -> None:
    world.pipe.fields.filter(key="item").update(pii=True)  # "item" is the pipe's title field


def test_it_masks_a_pii_title_wherever_the_field_is_masked(client, world):
    _title_is_pii(world)
    since = timezone.now()
    card = new_card(world, item="Laptop for Joana Secreta")
    login(client, world.viewer)
    pages = {
        "board": client.get(reverse("board", args=[world.pipe.pk])),
        "panel": client.get(reverse("card_detail", args=[world.pipe.pk, card.pk]), **hx()),
        "column": client.get(reverse("column_more", args=[world.pipe.pk, world.phase("triage").pk]), **hx()),
        "changes": client.get(
            reverse("board_changes", args=[world.pipe.pk]), {"since": since.isoformat()}, **hx()
        ),
    }
    for name, response in pages.items():
        html = response.content.decode()
        assert f"card-{card.pk}" in html or card.reference in html, name
        assert "Joana" not in html, name
        assert "L***" in html, name


def test_it_shows_a_pii_title_to_people_who_may_see_it(client, world):
    _title_is_pii(world)
    card = new_card(world, item="Laptop for Joana Secreta")
    login(client, world.member)
    assert "Laptop for Joana Secreta" in client.get(reverse("board", args=[world.pipe.pk])).content.decode()
    panel = client.get(reverse("card_detail", args=[world.pipe.pk, card.pk]), **hx()).content.decode()
    assert "Laptop for Joana Secreta" in panel


def test_it_does_not_find_cards_by_a_title_masked_for_the_viewer(client, world):
    _title_is_pii(world)
    new_card(world, item="Laptop for Joana Secreta")
    url = reverse("board", args=[world.pipe.pk]) + "?q=joana"
    assert 'id="card-' not in login(client, world.viewer).get(url).content.decode()
    assert 'id="card-' in login(client, world.member).get(url).content.decode()


def test_it_explains_an_empty_board(client, world):
    html = login(client, world.member).get(reverse("board", args=[world.pipe.pk])).content.decode()
    assert "No cards yet." in html and "start form" in html


# ---------------------------------------------------------------- filters


def _shown(client, world, query: str) -> set[str]:
    html = client.get(reverse("board", args=[world.pipe.pk]) + query).content.decode()
    return set(re.findall(r'class="card-title"[^>]*>([^<]+)</a>', html))


def test_it_filters_by_text_in_title_and_field_values(client, world):
    new_card(world, item="Laptop")
    chair = new_card(world, item="Chair")
    card_update_fields(actor=Actor.system(), card=chair, values={"cost_center": "CC-777"})
    login(client, world.member)
    assert _shown(client, world, "?q=lapt") == {"Laptop"}
    assert _shown(client, world, "?q=cc-777") == {"Chair"}


def test_it_filters_by_assignee_including_me(client, world):
    mine = new_card(world, item="Mine")
    theirs = new_card(world, item="Theirs")
    card_assign(actor=Actor.system(), card=mine, users=[world.member])
    card_assign(actor=Actor.system(), card=theirs, users=[world.admin])
    login(client, world.member)
    assert _shown(client, world, "?assignee=me") == {"Mine"}
    assert _shown(client, world, f"?assignee={world.admin.pk}") == {"Theirs"}


def test_it_filters_by_label_late_overdue_and_created_range(client, world):
    labeled = new_card(world, item="Labeled")
    late = new_card(world, item="Late")
    overdue = new_card(world, item="Overdue")
    old = new_card(world, item="Old")
    card_set_labels(actor=Actor.system(), card=labeled, labels=[Label.objects.get(name="Priority")])
    Card.objects.filter(pk=late.pk).update(phase_entered_at=timezone.now() - dt.timedelta(hours=25))
    Card.objects.filter(pk=overdue.pk).update(due_at=timezone.now() - dt.timedelta(minutes=5))
    Card.objects.filter(pk=old.pk).update(created_at=timezone.now() - dt.timedelta(days=40))
    login(client, world.member)
    label = Label.objects.get(name="Priority")
    assert _shown(client, world, f"?label={label.pk}") == {"Labeled"}
    assert _shown(client, world, "?late=1") == {"Late"}
    assert _shown(client, world, "?overdue=1") == {"Overdue"}
    today = timezone.localdate(
        timezone=zoneinfo.ZoneInfo(world.pipe.organization.time_zone)
    )  # as the org sees it
    day = (today - dt.timedelta(days=40)).isoformat()
    assert _shown(client, world, f"?created_from={day}&created_to={day}") == {"Old"}
    assert "Old" not in _shown(client, world, f"?created_from={today.isoformat()}")


def test_it_keeps_filters_in_card_links(client, world):
    card_assign(actor=Actor.system(), card=new_card(world), users=[world.member])
    html = (
        login(client, world.member)
        .get(reverse("board", args=[world.pipe.pk]) + "?assignee=me")
        .content.decode()
    )
    assert re.search(r'href="/pipes/\d+/cards/\d+/\?assignee=me"', html)


# ---------------------------------------------------------------- moves


def _move(client, world, card, phase_key, version=None):
    data = {"to_phase": world.phase(phase_key).pk}
    if version is not None:
        data["expected_version"] = version
    return client.post(reverse("card_move", args=[world.pipe.pk, card.pk]), data, **hx())


def test_it_moves_a_card_and_updates_both_column_counts(client, world):
    card = new_card(world)
    card_update_fields(actor=Actor.system(), card=card, values={"category": "Hardware"})
    card.refresh_from_db()
    response = _move(login(client, world.member), world, card, "approval", card.version)
    assert response.status_code == 200
    card.refresh_from_db()
    assert card.phase.key == "approval"
    html = response.content.decode()
    assert f'id="card-{card.pk}"' in html and f'data-version="{card.version}"' in html
    for key in ("triage", "approval"):
        assert f'id="col-head-{world.phase(key).pk}" hx-swap-oob="true"' in html


def test_it_names_the_missing_fields_when_the_gate_refuses(client, world):
    card = new_card(world)
    response = _move(login(client, world.member), world, card, "approval", card.version)
    assert response.status_code == 422
    html = response.content.decode()
    assert "Not moved to Approval." in html and "<b>Category</b>" in html
    assert f"/pipes/{world.pipe.pk}/cards/{card.pk}/?focus=category" in html
    card.refresh_from_db()
    assert card.phase.key == "triage"


def test_it_says_when_a_transition_is_not_allowed(client, world):
    card = new_card(world)
    card_update_fields(actor=Actor.system(), card=card, values={"category": "Hardware"})
    response = _move(login(client, world.member), world, card, "done")
    assert response.status_code == 422
    assert "From Triage a card may only move to: Approval, Rejected." in response.content.decode()


def test_it_refuses_a_move_on_a_stale_version(client, world):
    card = new_card(world)
    stale = card.version
    card_update_fields(actor=Actor.system(), card=card, values={"category": "Hardware"})
    response = _move(login(client, world.member), world, card, "approval", stale)
    assert response.status_code == 409
    assert "Someone else changed this card" in response.content.decode()


def test_a_refused_move_writes_nothing_and_the_next_move_reads_the_card_afresh(client, world):
    """The board reads the card locked, in the move's transaction: a refusal rolls it all back."""
    from pipes.models import CardEvent
    from pipes.timeline import verify_card

    card = new_card(world)
    login(client, world.member)
    before = (card.version, card.event_count)
    assert _move(client, world, card, "approval", card.version).status_code == 422  # category missing
    card.refresh_from_db()
    assert (card.version, card.event_count, card.phase.key) == (*before, "triage")
    card_update_fields(actor=Actor.system(), card=card, values={"category": "Hardware"})
    card.refresh_from_db()
    assert _move(client, world, card, "approval", card.version).status_code == 200
    card.refresh_from_db()
    assert card.phase.key == "approval" and card.event_count == before[1] + 2
    assert list(verify_card(card, CardEvent.objects.filter(card=card).order_by("seq"))) == []


@pytest.mark.parametrize(
    "who, status",
    [
        ("owner", 200),  # owns the organization (a membership, no grant)
        ("group member", 200),  # holds work_pipe through a group
        ("viewer", 403),  # sees the board, may not work it
        ("outsider", 404),  # owns another organization: this pipe does not exist for them
    ],
)
def test_the_move_reads_the_users_rights_with_the_card(client, world, who, status):
    """What the user holds on the pipe comes with the card's read (one statement): grants, groups and
    ownership answer as pipe_access always did, and a refusal changes nothing."""
    from django.contrib.auth.models import Group
    from guardian.shortcuts import assign_perm

    card = new_card(world)
    card_update_fields(actor=Actor.system(), card=card, values={"category": "Hardware"})
    card.refresh_from_db()
    if who == "group member":
        user = get_user_model().objects.create_user("grouped", password="x")
        group = Group.objects.create(name="Purchasing desk")
        user.groups.add(group)
        assign_perm("view_pipe", group, world.pipe)
        assign_perm("work_pipe", group, world.pipe)
    else:
        user = getattr(world, who)
    response = _move(login(client, user), world, card, "approval", card.version)
    assert response.status_code == status
    card.refresh_from_db()
    assert card.phase.key == ("approval" if status == 200 else "triage")


def test_it_refuses_a_phase_of_another_pipe(client, world):
    from tests.personas import build_purchase_pipe

    other = build_purchase_pipe(world.org, slug="other", code="OT")
    card = new_card(world)
    response = login(client, world.member).post(
        reverse("card_move", args=[world.pipe.pk, card.pk]), {"to_phase": other.phases.first().pk}, **hx()
    )
    assert response.status_code == 404


# ---------------------------------------------------------------- the side panel


def test_it_opens_the_card_panel_as_a_page_and_as_a_fragment(client, world):
    card = new_card(world, item="Desk")
    login(client, world.member)
    url = reverse("card_detail", args=[world.pipe.pk, card.pk])
    page = client.get(url).content.decode()
    assert "<html" in page and 'id="panel"' in page and "Desk" in page and "Start form" in page
    fragment = client.get(url, **hx()).content.decode()
    assert "<html" not in fragment and 'class="panel-card"' in fragment


def test_it_opens_the_panel_at_the_requested_fields(client, world):
    card = new_card(world)
    url = reverse("card_detail", args=[world.pipe.pk, card.pk]) + "?focus=category"
    html = login(client, world.member).get(url, **hx()).content.decode()
    assert re.search(r'<form class="field-row field-form[^"]*" id="field-category" data-focus', html)


def test_it_saves_a_field_in_place(client, world):
    card = new_card(world)
    login(client, world.member)
    response = client.post(
        reverse("card_field", args=[world.pipe.pk, card.pk, "category"]),
        {"value": "Software", "expected_version": card.version},
        **hx(),
    )
    assert response.status_code == 200
    card.refresh_from_db()
    assert card.values["category"] == "Software"
    html = response.content.decode()
    assert (
        'class="panel-card"' in html and f'id="card-{card.pk}"' in html and 'hx-swap-oob="outerHTML"' in html
    )


def test_it_shows_a_field_error_at_the_field(client, world):
    card = new_card(world)
    response = login(client, world.member).post(
        reverse("card_field", args=[world.pipe.pk, card.pk, "cost_center"]), {"value": "nope"}, **hx()
    )
    assert response.status_code == 422
    assert response["HX-Retarget"] == "#field-cost_center"
    html = response.content.decode()
    assert "Use the form CC-123." in html and 'value="nope"' in html


def test_it_assigns_labels_and_sets_the_due_date(client, world):
    card = new_card(world)
    login(client, world.member)
    label = Label.objects.get(name="Priority")
    p, c = world.pipe.pk, card.pk
    assert (
        client.post(reverse("card_assign", args=[p, c]), {"assignees": [world.admin.pk]}, **hx()).status_code
        == 200
    )
    assert client.post(reverse("card_labels", args=[p, c]), {"labels": [label.pk]}, **hx()).status_code == 200
    assert (
        client.post(reverse("card_due", args=[p, c]), {"due_at": "2030-05-01T17:30"}, **hx()).status_code
        == 200
    )
    card.refresh_from_db()
    assert list(card.assignees.all()) == [world.admin]
    assert list(card.labels.all()) == [label]
    assert timezone.localtime(card.due_at, timezone.get_fixed_timezone(-180)).hour == 17  # São Paulo time


def test_it_refuses_an_assignee_outside_the_pipe(client, world):
    card = new_card(world)
    response = login(client, world.member).post(
        reverse("card_assign", args=[world.pipe.pk, card.pk]), {"assignees": [world.outsider.pk]}, **hx()
    )
    assert response.status_code == 422
    assert not card.assignees.exists()


def test_it_notifies_people_mentioned_in_a_comment(
    client, world, settings, django_capture_on_commit_callbacks
):
    settings.ALLOWED_HOSTS = ["trilho.example"]
    card = new_card(world)
    with django_capture_on_commit_callbacks(execute=True):  # the email goes out once the comment commits
        response = login(client, world.member).post(
            reverse("card_comment", args=[world.pipe.pk, card.pk]),
            {"text": "@admin please check, and @nobody too"},
            **hx(HTTP_HOST="trilho.example"),
        )
    assert response.status_code == 200
    note = Notification.objects.get()
    assert note.user == world.admin and note.card == card
    assert note.url == f"/pipes/{world.pipe.pk}/cards/{card.pk}/"
    assert len(mail.outbox) == 1 and mail.outbox[0].to == ["admin@example.com"]
    assert f"http://trilho.example/pipes/{world.pipe.pk}/cards/{card.pk}/" in mail.outbox[0].body
    assert '<span class="mention">@admin</span>' in response.content.decode()
    event = card.events.get(kind="commented")
    assert event.payload["mentions"] == [world.admin.pk]


def test_it_masks_a_pii_title_in_a_mention_to_someone_who_may_not_see_it(
    client, world, django_capture_on_commit_callbacks
):
    _title_is_pii(world)
    card = new_card(world, item="Laptop for Joana Secreta")
    with django_capture_on_commit_callbacks(execute=True):
        login(client, world.member).post(
            reverse("card_comment", args=[world.pipe.pk, card.pk]),
            {"text": "@reviewer and @admin, see"},
            **hx(),
        )
    told = {n.user.username: n.message for n in Notification.objects.select_related("user")}
    assert "Joana" not in told["reviewer"] and "L***" in told["reviewer"]
    assert "Laptop for Joana Secreta" in told["admin"]
    mailed = {m.to[0]: m.subject + m.body for m in mail.outbox}
    assert "Joana" not in mailed["reviewer@example.com"]


def test_it_shows_the_timeline_with_actor_and_time(client, world):
    card = new_card(world)
    card_update_fields(actor=Actor.for_user(world.admin), card=card, values={"category": "Hardware"})
    html = (
        login(client, world.member)
        .get(reverse("card_detail", args=[world.pipe.pk, card.pk]), **hx())
        .content.decode()
    )
    assert "created the card in Triage" in html
    assert "changed Category: Hardware" in html and "<strong>Admin</strong>" in html


# ---------------------------------------------------------------- files


def test_it_uploads_and_serves_files_as_downloads(client, world, media_root):
    card = new_card(world)
    login(client, world.member)
    response = client.post(
        reverse("card_attach", args=[world.pipe.pk, card.pk]),
        {"files": SimpleUploadedFile("quote.pdf", PDF)},
        **hx(),
    )
    assert response.status_code == 200 and "quote.pdf" in response.content.decode()
    card_file = CardFile.objects.get(card=card)
    url = reverse("card_file", args=[world.pipe.pk, card.pk, card_file.pk])
    download = client.get(url + "?inline=1")  # a PDF is never shown inline
    assert download["Content-Disposition"].startswith("attachment;")
    assert download["X-Content-Type-Options"] == "nosniff"
    assert b"".join(download.streaming_content) == PDF


def test_it_previews_only_safe_images_inline(client, world, media_root):
    card = new_card(world)
    [image] = card_attach_files(
        actor=Actor.for_user(world.member), card=card, uploads=[SimpleUploadedFile("shot.png", PNG)]
    )
    url = reverse("card_file", args=[world.pipe.pk, card.pk, image.pk])
    login(client, world.member)
    inline = client.get(url + "?inline=1")
    assert inline["Content-Disposition"].startswith("inline;") and inline["Content-Type"] == "image/png"
    assert inline["X-Content-Type-Options"] == "nosniff"
    assert client.get(url)["Content-Disposition"].startswith("attachment;")


def test_it_refuses_files_of_another_card(client, world, media_root):
    card, other = new_card(world), new_card(world)
    [image] = card_attach_files(
        actor=Actor.for_user(world.member), card=other, uploads=[SimpleUploadedFile("shot.png", PNG)]
    )
    url = reverse("card_file", args=[world.pipe.pk, card.pk, image.pk])
    assert login(client, world.member).get(url).status_code == 404


# ---------------------------------------------------------------- scale and live


def test_it_loads_more_cards_of_a_column(client, world):
    for i in range(30):
        new_card(world, item=f"Item {i:02d}")
    login(client, world.member)
    board = client.get(reverse("board", args=[world.pipe.pk])).content.decode()
    assert board.count('class="card-title"') == 25 and "Load more" in board
    more = client.get(
        reverse("column_more", args=[world.pipe.pk, world.phase("triage").pk]) + "?offset=25", **hx()
    )
    html = more.content.decode()
    assert html.count('class="card-title"') == 5 and "Item 00" in html and "Load more" not in html


def test_it_reports_cards_changed_since_a_moment(client, world):
    before = new_card(world, item="Before")
    since = timezone.now()
    changed = new_card(world, item="Changed")
    login(client, world.member)
    url = reverse("board_changes", args=[world.pipe.pk])
    html = client.get(url, {"since": since.isoformat()}, **hx()).content.decode()
    assert f'id="card-{changed.pk}"' in html and f'id="card-{before.pk}"' not in html
    assert f'id="col-head-{world.phase("triage").pk}"' in html
    quiet = client.get(url, {"since": timezone.now().isoformat()}, **hx()).content.decode()
    assert 'id="card-' not in quiet and "col-head" not in quiet


def test_it_tells_the_board_to_drop_cards_that_no_longer_match(client, world):
    card = new_card(world, item="Mine")
    card_assign(actor=Actor.system(), card=card, users=[world.member])
    since = timezone.now()
    card_assign(actor=Actor.system(), card=card, users=[])
    login(client, world.member)
    url = reverse("board_changes", args=[world.pipe.pk])
    html = client.get(url, {"since": since.isoformat(), "assignee": "me"}, **hx()).content.decode()
    assert f'data-removed="{card.pk}"' in html


def bulk_cards(world, n: int) -> None:
    """`n` cards spread over every phase, with assignees and labels (test data set up in bulk)."""
    phases = list(world.pipe.phases.all())
    now = timezone.now()
    cards = Card.objects.bulk_create(
        [
            Card(
                pipe=world.pipe,
                phase=phases[i % len(phases)],
                title=f"Bulk {i}",
                values={
                    "item": f"Bulk {i}",
                    "amount": {"amount": "10.00", "currency": "BRL"},
                    "category": "Hardware",
                },
                created_at=now - dt.timedelta(minutes=i),
                updated_at=now,
                phase_entered_at=now - dt.timedelta(hours=i % 50),
            )
            for i in range(n)
        ],
        batch_size=1000,
    )
    label = Label.objects.get(name="Priority")
    Card.assignees.through.objects.bulk_create(
        [Card.assignees.through(card_id=c.pk, user_id=world.member.pk) for c in cards[::3]], batch_size=1000
    )
    Card.labels.through.objects.bulk_create(
        [Card.labels.through(card_id=c.pk, label_id=label.pk) for c in cards[::4]], batch_size=1000
    )


# 10 of the board's own (session, user, pipe with its design stamp, access, counts, first cards,
# people, label list, and the tiles' assignees and labels in one statement when they are not cached
# yet; phases and fields come from the design cache) and the navigation's inbox badge when it is
# counted again.
BOARD_QUERY_BOUND = 11
# session, user; in the transaction (a savepoint here) the card read and locked in one statement with
# the design stamp (phases, transitions and fields come from the design cache) and what the user holds
# on the pipe, then the event, the card and the phase entries written by one statement (CTEs); then the
# column counts and the tile's people and labels.
MOVE_QUERY_BOUND = 8


def _entry_extra() -> int:
    """Closing a stay and opening the next is one statement on PostgreSQL, two on SQLite."""
    return 0 if connection.vendor == "postgresql" else 1


@pytest.mark.parametrize("n", [100, 5000])
def test_it_renders_the_board_in_constant_queries(client, world, django_assert_max_num_queries, n):
    bulk_cards(world, n)
    login(client, world.member)
    url = reverse("board", args=[world.pipe.pk])
    client.get(url)  # warm the session's time zone
    with django_assert_max_num_queries(BOARD_QUERY_BOUND):
        response = client.get(url)
    assert response.status_code == 200
    assert response.content.decode().count('class="card-title"') == 25 * world.pipe.phases.count()


def test_it_uses_the_same_queries_for_a_filtered_board_whatever_the_phases(client, world):
    bulk_cards(world, 200)
    login(client, world.member)
    url = reverse("board", args=[world.pipe.pk]) + "?q=bulk&assignee=me&late=1&overdue="
    client.get(url)
    with CaptureQueriesContext(connection) as few:
        client.get(url)
    from pipes.models import Phase

    for i in range(6):
        Phase.objects.create(
            pipe=world.pipe, name=f"Extra {i}", key=f"extra-{i}", position=10 + i, sla_hours=5
        )
    client.get(url)  # the first render after a design change loads the new design (pipes.designcache)
    with CaptureQueriesContext(connection) as many:
        client.get(url)
    assert len(many) == len(few) <= BOARD_QUERY_BOUND


@pytest.mark.parametrize("n", [100, 5000])
def test_it_moves_a_card_in_constant_queries(client, world, n):
    bulk_cards(world, n)
    login(client, world.member)
    client.get(reverse("board", args=[world.pipe.pk]))  # warm the session's time zone
    # A first move warms what every later move reuses (e.g. whether the pipe has outbound webhooks).
    warm, card = Card.objects.filter(pipe=world.pipe, phase=world.phase("triage"))[:2]  # fields filled
    client.post(
        reverse("card_move", args=[world.pipe.pk, warm.pk]),
        {"to_phase": world.phase("approval").pk, "expected_version": warm.version},
        **hx(),
    )
    data = {"to_phase": world.phase("approval").pk, "expected_version": card.version}
    with CaptureQueriesContext(connection) as queries:
        response = client.post(reverse("card_move", args=[world.pipe.pk, card.pk]), data, **hx())
    assert response.status_code == 200
    sql = [q["sql"] for q in queries.captured_queries]
    # SQLite cannot lock a row as it reads it nor write with CTEs: the access, the card read again in
    # the write path's own transaction (two statements), the event and the card's update are their own.
    apart = 0 if connection.vendor == "postgresql" else 4
    assert len(sql) <= MOVE_QUERY_BOUND + _entry_extra() + apart, "\n".join(sql)
    # The access check ran once (the write path reused the view's answer), and no audit-log row.
    assert sum("guardian_userobjectpermission" in q for q in sql) == 1
    assert not any("auditlog_logentry" in q for q in sql)


# card_create through the write path: access, the design stamp, the card's transaction (a savepoint
# here), the card number (counted and read by one statement), the card, its audit row, then its event,
# its update and its phase entry written by one statement on PostgreSQL.
CREATE_QUERY_BOUND = 8
# The board's field save: session, user, card, access; the write (savepoint, lock, event, audit read and
# row, update); then the field's panel as it now reads.
FIELD_QUERY_BOUND = 22


@pytest.mark.parametrize("n", [100, 5000])
def test_it_creates_a_card_in_constant_queries(world, n):
    bulk_cards(world, n)
    actor = Actor.for_user(world.member)
    card_create(actor=actor, pipe=world.pipe, values=good_start_values())  # warms the design cache
    with CaptureQueriesContext(connection) as queries:
        card = card_create(actor=actor, pipe=world.pipe, values=good_start_values(item="Counted"))
    assert card.title == "Counted"
    # SQLite writes the event and the card's update with statements of their own.
    apart = 0 if connection.vendor == "postgresql" else 2
    assert len(queries) <= CREATE_QUERY_BOUND + _entry_extra() + apart, "\n".join(
        q["sql"] for q in queries.captured_queries
    )
    assert not any('FROM "pipes_card"' in q["sql"] for q in queries.captured_queries)  # no re-read


@pytest.mark.parametrize("n", [100, 5000])
def test_it_saves_a_field_in_constant_queries(client, world, n):
    bulk_cards(world, n)
    login(client, world.member)
    warm, card = Card.objects.filter(pipe=world.pipe, phase=world.phase("triage"))[:2]
    client.post(
        reverse("card_field", args=[world.pipe.pk, warm.pk, "category"]), {"value": "Software"}, **hx()
    )
    url = reverse("card_field", args=[world.pipe.pk, card.pk, "category"])
    with CaptureQueriesContext(connection) as queries:
        response = client.post(url, {"value": "Services", "expected_version": card.version}, **hx())
    assert response.status_code == 200
    card.refresh_from_db()
    assert card.values["category"] == "Services"
    assert len(queries) <= FIELD_QUERY_BOUND, "\n".join(q["sql"] for q in queries.captured_queries)


def test_it_answers_a_quiet_poll_cheaply(client, world, django_assert_max_num_queries):
    bulk_cards(world, 300)
    login(client, world.member)
    url = reverse("board_changes", args=[world.pipe.pk])
    client.get(url, {"since": timezone.now().isoformat()}, **hx())
    with django_assert_max_num_queries(5):  # session, user, pipe, access, changed ids
        response = client.get(url, {"since": timezone.now().isoformat()}, **hx())
    assert response.status_code == 200 and "data-until" in response.content.decode()


def test_it_uploads_into_an_attachment_field(client, world, media_root):
    card = new_card(world)
    response = login(client, world.member).post(
        reverse("card_field", args=[world.pipe.pk, card.pk, "quote"]),
        {"files": [SimpleUploadedFile("a.pdf", PDF), SimpleUploadedFile("b.pdf", PDF)]},
        **hx(),
    )
    assert response.status_code == 200
    card.refresh_from_db()
    assert len(card.values["quote"]) == 2
    assert "a.pdf" in response.content.decode() and "b.pdf" in response.content.decode()


def test_it_hides_files_of_pii_fields_from_people_without_the_permission(client, world, media_root):
    world.pipe.fields.filter(key="quote").update(pii=True)
    card = new_card(world)
    [secret] = card_attach_files(
        actor=Actor.for_user(world.member),
        card=card,
        uploads=[SimpleUploadedFile("id.pdf", PDF)],
        field_key="quote",
    )
    url = reverse("card_file", args=[world.pipe.pk, card.pk, secret.pk])
    assert login(client, world.viewer).get(url).status_code == 403
    panel = client.get(reverse("card_detail", args=[world.pipe.pk, card.pk]), **hx()).content.decode()
    assert "id.pdf" not in panel
    assert login(client, world.member).get(url).status_code == 200


def test_it_never_shows_a_stale_tile_from_the_fragment_cache(client, world):
    card = new_card(world, item="Old title")
    url = reverse("board", args=[world.pipe.pk])
    login(client, world.member)
    assert "Old title" in client.get(url).content.decode()
    card_update_fields(actor=Actor.system(), card=card, values={"item": "New title"})
    html = client.get(url).content.decode()
    assert "New title" in html and "Old title" not in html
    viewer_html = login(client, world.viewer).get(url).content.decode()  # other rights, other cached tile
    assert "data-move-menu" not in viewer_html and "New title" in viewer_html


# ---------------------------------------------------------------- the navigation's inbox badge


def _badge(html: str) -> str | None:
    found = re.search(r'id="inbox-count"[^>]*>(\d+)<', html)
    return found.group(1) if found else None


def test_the_inbox_badge_is_counted_at_most_every_few_seconds_but_afresh_in_the_inbox(
    client, world, rail_settings
):
    from django.core.cache import cache

    from orchestrator.inbox.templatetags.inbox_tags import BADGE_SECONDS
    from tests.inbox.conftest import approval_step, card_in_approval

    cache.delete(f"inbox.badge.{world.reviewer.pk}")
    approval_step(world)
    card_in_approval(world, item="A")
    login(client, world.reviewer)
    board = reverse("board", args=[world.pipe.pk])
    assert _badge(client.get(board).content.decode()) == "1"

    card_in_approval(world, item="B")
    with CaptureQueriesContext(connection) as queries:
        assert _badge(client.get(board).content.decode()) == "1"  # not counted again so soon
    assert not any("orchestrator_reviewtask" in q["sql"] for q in queries.captured_queries)
    assert _badge(client.get(reverse("inbox:index")).content.decode()) == "2"  # the inbox counts afresh
    assert _badge(client.get(board).content.decode()) == "2"  # and the nav took the fresh count
    assert 0 < BADGE_SECONDS <= 30
