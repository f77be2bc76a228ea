"""The board in a real Chromium: drag and drop, the gate-failure message, the side panel,
the keyboard "Move to…" menu, filters and a viewer who may not move cards."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from pipes.models import Card
from pipes.services import Actor, card_assign, card_create, card_update_fields
from tests.personas import build_world, good_start_values

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def world():
    return build_world()


def new_card(world, item: str, **values) -> Card:
    return card_create(
        actor=Actor.for_user(world.member), pipe=world.pipe, values=good_start_values(item=item, **values)
    )


def column(page: Page, world, key: str):
    return page.locator(f"#cards-{world.phase(key).pk}")


def tile(page: Page, card: Card):
    return page.locator(f"#card-{card.pk}")


def drag(page: Page, card: Card, world, to_key: str) -> None:
    """Drag a card by the mouse (SortableJS runs in fallback mode, on mouse events) onto a column."""
    source = tile(page, card).bounding_box()
    target = column(page, world, to_key).bounding_box()
    assert source and target
    x, y = source["x"] + source["width"] / 2, source["y"] + 12
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x + 8, y + 8, steps=4)
    page.mouse.move(target["x"] + target["width"] / 2, target["y"] + 40, steps=20)
    page.mouse.move(target["x"] + target["width"] / 2, target["y"] + 44, steps=4)
    with page.expect_response(re.compile(r"/move/$")):
        page.mouse.up()


def open_board(login, live_server, world, user, query: str = "") -> Page:
    page = login(user)
    page.goto(f"{live_server.url}/pipes/{world.pipe.pk}/{query}")
    expect(page.locator("#board")).to_be_visible()
    return page


def test_it_drags_a_card_to_the_next_phase(login, live_server, world):
    card = new_card(world, "Laptop")
    card_update_fields(actor=Actor.system(), card=card, values={"category": "Hardware"})
    page = open_board(login, live_server, world, world.member)
    drag(page, card, world, "approval")
    expect(column(page, world, "approval").locator(f"#card-{card.pk}")).to_be_visible()
    expect(page.locator(f"#col-head-{world.phase('approval').pk} .col-count")).to_have_text("1")
    page.reload()
    expect(column(page, world, "approval").locator(f"#card-{card.pk}")).to_be_visible()
    assert Card.objects.get(pk=card.pk).phase.key == "approval"


def test_it_names_missing_fields_then_moves_once_they_are_filled(login, live_server, world):
    card = new_card(world, "Chairs")
    page = open_board(login, live_server, world, world.member)
    drag(page, card, world, "approval")
    alert = tile(page, card).locator(".card-alert")
    expect(alert).to_contain_text("Not moved to Approval.")
    expect(alert).to_contain_text("Category")
    expect(column(page, world, "triage").locator(f"#card-{card.pk}")).to_be_visible()
    assert Card.objects.get(pk=card.pk).phase.key == "triage"

    alert.get_by_role("link", name="Open the card at these fields").click()
    form = page.locator("#panel #field-category")
    expect(form.locator("select")).to_be_focused()
    assert "focus=category" in page.url
    form.locator("select").select_option("Hardware")
    form.get_by_role("button", name="Save").click()
    expect(page.locator("#panel #field-category .field-value")).to_have_text("Hardware")

    page.locator("#panel [data-close-panel]").click()
    expect(page.locator("#panel")).to_be_hidden()
    drag(page, card, world, "approval")
    expect(column(page, world, "approval").locator(f"#card-{card.pk}")).to_be_visible()
    expect(tile(page, card).locator(".card-alert")).to_have_count(0)
    assert Card.objects.get(pk=card.pk).phase.key == "approval"


def test_it_moves_a_card_with_the_keyboard_menu(login, live_server, world):
    card = new_card(world, "Monitor")
    card_update_fields(actor=Actor.system(), card=card, values={"category": "Hardware"})
    page = open_board(login, live_server, world, world.member)
    button = tile(page, card).locator("[data-move-menu]")
    button.focus()
    page.keyboard.press("Enter")
    menu = page.locator("#move-menu")
    expect(menu).to_be_visible()
    expect(menu.get_by_role("menuitem", name="Approval")).to_be_focused()  # the first phase it may go to
    expect(menu.get_by_role("menuitem", name="Purchased")).to_be_disabled()  # not allowed from Triage
    with page.expect_response(re.compile(r"/move/$")):
        page.keyboard.press("Enter")
    expect(column(page, world, "approval").locator(f"#card-{card.pk}")).to_be_visible()
    expect(tile(page, card).locator("[data-move-menu]")).to_be_focused()
    assert Card.objects.get(pk=card.pk).phase.key == "approval"


def test_it_filters_by_assignee(login, live_server, world):
    mine = new_card(world, "Mine")
    theirs = new_card(world, "Theirs")
    card_assign(actor=Actor.system(), card=mine, users=[world.member])
    card_assign(actor=Actor.system(), card=theirs, users=[world.admin])
    page = open_board(login, live_server, world, world.member)
    expect(page.locator(".card")).to_have_count(2)
    with page.expect_navigation():
        page.get_by_label("Assignee").select_option("me")
    assert "assignee=me" in page.url
    expect(page.locator(".card")).to_have_count(1)
    expect(tile(page, mine)).to_be_visible()


def test_it_lets_a_viewer_look_but_not_move(login, live_server, world):
    card = new_card(world, "Desk")
    card_update_fields(actor=Actor.system(), card=card, values={"category": "Hardware"})
    page = open_board(login, live_server, world, world.viewer)
    expect(page.get_by_text("View only")).to_be_visible()
    expect(page.locator("[data-move-menu]")).to_have_count(0)
    source = tile(page, card).bounding_box()
    target = column(page, world, "approval").bounding_box()
    page.mouse.move(source["x"] + 40, source["y"] + 12)
    page.mouse.down()
    page.mouse.move(target["x"] + 60, target["y"] + 40, steps=20)
    page.mouse.up()
    page.wait_for_timeout(300)
    expect(column(page, world, "triage").locator(f"#card-{card.pk}")).to_be_visible()
    status = page.evaluate(
        """async ([url, phase]) => (await fetch(url, {method: 'POST', headers: {'X-CSRFToken':
            JSON.parse(document.body.getAttribute('hx-headers'))['X-CSRFToken']},
            body: new URLSearchParams({to_phase: phase})})).status""",
        [f"/pipes/{world.pipe.pk}/cards/{card.pk}/move/", str(world.phase("approval").pk)],
    )
    assert status == 403
    assert Card.objects.get(pk=card.pk).phase.key == "triage"


def test_it_shows_a_change_made_elsewhere_without_a_reload(login, live_server, world):
    card = new_card(world, "Toner")
    page = open_board(login, live_server, world, world.member)
    expect(tile(page, card)).to_be_visible()
    card_update_fields(actor=Actor.system(), card=card, values={"item": "Toner (black)"})
    expect(tile(page, card).locator(".card-title")).to_have_text("Toner (black)", timeout=10000)


def test_it_gives_the_panel_its_own_url_and_closes_it_on_back(login, live_server, world):
    card = new_card(world, "Headset")
    card_update_fields(actor=Actor.system(), card=card, values={"category": "Hardware"})
    page = open_board(login, live_server, world, world.member)
    tile(page, card).locator(".card-title").click()
    expect(page.locator("#panel .panel-title")).to_have_text("Headset")
    assert page.url.endswith(f"/pipes/{world.pipe.pk}/cards/{card.pk}/")
    page.reload()  # the URL is shareable: the page opens with the panel
    expect(page.locator("#panel .panel-title")).to_have_text("Headset")
    page.go_back()
    page.go_forward()
    expect(page.locator("#panel")).to_be_visible()
    page.keyboard.press("Escape")
    expect(page.locator("#panel")).to_be_hidden()
    assert page.url.endswith(f"/pipes/{world.pipe.pk}/")
    drag(page, card, world, "approval")  # drag and drop still works after all that
    expect(column(page, world, "approval").locator(f"#card-{card.pk}")).to_be_visible()
