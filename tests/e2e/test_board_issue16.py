"""What new users tripped over on the board and in the portal, in a real Chromium at 1366x768: a
"New card" button, five phases that fit the screen, the card panel's run link and Retry, and
requesters landing in the portal."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from orchestrator.models import Mechanism, RunStatus, StepRun
from pipes.models import Card, Phase
from pipes.services import Actor, card_create
from tests.modelservers import error
from tests.orchestrator.conftest import drain, make_agent, make_step, ollama, openai, rail_settings  # noqa: F401
from tests.personas import good_start_values

pytestmark = pytest.mark.django_db(transaction=True)


def open_board(login, live_server, world, user) -> Page:
    page = login(user)
    page.goto(f"{live_server.url}/pipes/{world.pipe.pk}/")
    expect(page.locator("#board")).to_be_visible()
    return page


def add_phases(world, count: int) -> None:
    for n in range(count):
        Phase.objects.create(pipe=world.pipe, name=f"Extra step {n + 1}", key=f"extra{n}", position=10 + n)


def test_it_opens_a_card_from_the_new_card_button(login, live_server, world):
    page = open_board(login, live_server, world, world.member)
    page.click("#new-card")
    panel = page.locator("#panel")
    expect(panel.get_by_role("heading", name="Open a card")).to_be_visible()
    assert "/cards/" not in page.url  # the form is no page of its own
    panel.get_by_label("Item").fill("Standing desk")
    panel.get_by_label("Amount").fill("1800")
    panel.get_by_role("button", name="Create card").click()
    card = None
    page.wait_for_url(re.compile(r"/cards/\d+/$"))
    card = Card.objects.get(title="Standing desk")
    expect(panel.locator(".card-ref")).to_have_text("PR-1")
    expect(panel.locator(".panel-title")).to_have_text("Standing desk")
    expect(page.locator(f"#card-{card.pk}")).to_be_visible()


def test_it_keeps_a_new_card_form_with_its_errors_in_the_panel(login, live_server, world):
    page = open_board(login, live_server, world, world.member)
    page.click("#new-card")
    panel = page.locator("#panel")
    panel.get_by_role("button", name="Create card").click()
    expect(panel.locator("#error-summary")).to_contain_text("Item")
    assert Card.objects.count() == 0


def test_it_shows_no_new_card_button_to_a_viewer(login, live_server, world):
    page = open_board(login, live_server, world, world.viewer)
    expect(page.locator("#new-card")).to_have_count(0)


def test_it_fits_a_five_phase_board_in_a_1366_screen(login, live_server, world):
    add_phases(world, 1)  # the purchase pipe has four
    page = open_board(login, live_server, world, world.member)
    assert page.locator(".column").count() == 5
    widths = page.evaluate(
        "() => { const b = document.getElementById('board'); return [b.scrollWidth, b.clientWidth]; }"
    )
    assert widths[0] <= widths[1]
    last = page.locator(".column").last.bounding_box()
    assert last and last["x"] + last["width"] <= 1366
    expect(page.locator("#board-more")).to_be_hidden()


def test_it_fits_six_phases_too(login, live_server, world):
    add_phases(world, 2)
    page = open_board(login, live_server, world, world.member)
    last = page.locator(".column").last.bounding_box()
    assert last and last["x"] + last["width"] <= 1366


def test_it_makes_columns_beyond_the_screen_obvious(login, live_server, world):
    add_phases(world, 5)
    page = open_board(login, live_server, world, world.member)
    more = page.locator("#board-more")
    expect(more).to_be_visible()
    expect(page.locator("#board")).to_have_class(re.compile("more-right"))
    more.click()
    expect(page.locator("#board")).to_have_class(re.compile("more-left"))
    # The button scrolls smoothly: wait for the columns to have moved rather than read them at once.
    page.wait_for_function("() => document.getElementById('board').scrollLeft > 100")


@pytest.fixture
def failed_card(world, ollama, openai):  # noqa: F811
    make_step(
        world.phase("triage"), agent=make_agent(world.pipe), mechanism=Mechanism.LOCAL_MODEL, max_attempts=1
    )
    ollama.push(error(500))
    card = card_create(actor=Actor.for_user(world.requester), pipe=world.pipe, values=good_start_values())
    drain()
    assert StepRun.objects.get(card=card).status == RunStatus.FAILED
    return card


def test_it_links_a_step_to_its_run_and_retries_it_from_the_card(login, live_server, world, failed_card):
    run = StepRun.objects.get(card=failed_card)
    page = login(world.member)
    page.goto(f"{live_server.url}/pipes/{world.pipe.pk}/cards/{failed_card.pk}/")
    panel = page.locator("#panel")
    expect(panel.locator(".badge-danger")).to_have_text("Step failed")
    link = panel.locator(".timeline .run-link").first
    expect(link).to_have_attribute("href", f"/rail/runs/{run.pk}/")
    panel.locator("#retry-step").click()
    expect(page.locator(".toast")).to_contain_text("The step will run again in a moment.")
    expect(panel.locator("#retry-step")).to_have_count(0)
    run.refresh_from_db()
    assert run.status == RunStatus.PENDING
    panel.locator(".timeline .run-link").first.click()
    page.wait_for_url(re.compile(rf"/rail/runs/{run.pk}/$"))


def test_it_sends_a_requester_to_the_portal_with_only_their_menu(login, live_server, world):
    page = login(world.requester)
    page.goto(f"{live_server.url}/")
    page.wait_for_url(re.compile(r"/portal/$"))
    nav = page.locator(".mainnav")
    expect(nav.get_by_role("link", name="Portal")).to_be_visible()
    expect(nav.get_by_role("link", name="My requests")).to_be_visible()
    expect(nav.get_by_role("link", name="Pipes")).to_have_count(0)
    expect(nav.get_by_role("link", name=re.compile("^Inbox"))).to_have_count(0)
