"""The reviewer inbox in a real Chromium: an agent-escalated case approved with the keyboard and seen
in its next phase on the board; a four-eyes step that needs a second, different reviewer; and a
request for changes that the requester finds in My requests."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from orchestrator.models import ReviewStatus
from pipes.choices import PipeRole
from pipes.models import Card
from pipes.roles import pipe_role_grant
from tests.inbox.conftest import approval_step, card_in_approval, drafted_card, task_of, triage_agent_step
from tests.modelservers import OllamaServer
from tests.personas import make_user

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def model(settings):
    """A scripted Ollama for the triage agent (it has no foundation model: an unsure answer goes to a person)."""
    settings.TRILHO_MODEL_TIMEOUT_SECONDS = 2
    settings.TRILHO_RAIL_RETRY_BASE_SECONDS = 0
    with OllamaServer() as server:
        settings.OLLAMA_BASE_URL = server.url
        yield server


def sign_out(page: Page) -> None:
    page.context.clear_cookies()


def open_inbox(login, live_server, user) -> Page:
    page = login(user)
    page.goto(f"{live_server.url}/inbox/")
    expect(page.get_by_role("heading", name="Inbox")).to_be_visible()
    return page


def test_a_reviewer_approves_an_agent_escalated_case_with_the_keyboard(login, live_server, world, model):
    triage_agent_step(world)
    card = drafted_card(world, model)
    page = open_inbox(login, live_server, world.reviewer)
    row = page.locator(f"#task-{task_of(card).pk}")
    expect(row).to_contain_text(card.title)
    expect(row).to_contain_text("was 55% sure, below the 70% required")
    expect(row).to_contain_text("Agent: approve · 55%")

    page.keyboard.press("j")
    expect(row).to_have_class(re.compile("is-focused"))
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Classify the request")).to_be_visible()
    expect(page.locator(".review-reason")).to_contain_text("was 55% sure, below the 70% required")
    expect(page.locator(".review-reason")).to_contain_text("needs a person")
    expect(page.locator(".proposal-reasoning")).to_contain_text("Not sure; the documents are ambiguous.")
    expect(page.locator("#id-cost_center")).to_have_value("CC-123")
    page.locator("body").click(position={"x": 5, "y": 300})  # focus outside the inputs: shortcuts are live
    page.keyboard.press("a")
    expect(page).to_have_url(f"{live_server.url}/inbox/")
    expect(page.locator(".flash-success")).to_contain_text(f"{card.reference} approved.")

    page.goto(f"{live_server.url}/pipes/{world.pipe.pk}/")
    expect(page.locator(f"#cards-{world.phase('approval').pk} #card-{card.pk}")).to_be_visible()
    card.refresh_from_db()
    assert card.phase.key == "approval" and card.values["category"] == "Software"


def test_a_four_eyes_step_needs_a_second_different_reviewer(login, live_server, world):
    approval_step(world, four_eyes=True)
    rita = make_user("rita", first_name="Rita")
    pipe_role_grant(pipe=world.pipe, user=rita, role=PipeRole.REVIEWER)
    card = card_in_approval(world)
    task = task_of(card)

    page = open_inbox(login, live_server, world.reviewer)
    page.locator(f"#task-{task.pk} .inbox-title a").click()
    expect(page.locator(".review-flags")).to_contain_text("Four eyes · 0 of 2 approvals")
    page.fill("#id-po_number", "PO-2024-77")
    page.fill("#id-comment", "Budget checked.")
    page.get_by_role("button", name=re.compile("^Approve")).click()
    expect(page.locator(".flash-success")).to_contain_text("A second reviewer must confirm it.")
    page.goto(f"{live_server.url}/inbox/tasks/{task.pk}/")
    expect(page.locator(".decide-panel .alert")).to_have_text(
        "You approved it; a second, different reviewer must confirm it."
    )
    expect(page.locator("#decide-form")).to_have_count(0)
    assert Card.objects.get(pk=card.pk).phase.key == "approval"

    sign_out(page)
    page = open_inbox(login, live_server, rita)
    page.locator(f"#task-{task.pk} .inbox-title a").click()
    expect(page.locator(".first-approval")).to_contain_text("Reviewer approved")
    expect(page.locator("#id-po_number")).to_have_value("PO-2024-77")
    expect(page.locator("#id-po_number")).to_have_attribute("readonly", "")
    page.locator("body").click(position={"x": 5, "y": 300})
    page.keyboard.press("a")
    expect(page.locator(".flash-success")).to_contain_text(f"{card.reference} approved.")
    card.refresh_from_db()
    assert card.phase.key == "done" and card.values["po_number"] == "PO-2024-77"
    assert task_of_status(task) == ReviewStatus.DECIDED


def task_of_status(task) -> str:
    task.refresh_from_db()
    return task.status


def test_request_changes_brings_the_card_back_and_the_requester_sees_what_is_asked(login, live_server, world):
    approval_step(world)
    card = card_in_approval(world)
    page = open_inbox(login, live_server, world.reviewer)
    page.locator(f"#task-{task_of(card).pk} .inbox-title a").click()
    page.locator("body").click(position={"x": 5, "y": 300})
    page.keyboard.press("c")
    expect(page.locator("#changes-panel")).to_have_attribute("open", "")
    expect(page.locator("#id-comment")).to_be_focused()
    page.keyboard.type("Please add the amount with taxes.")
    page.get_by_label("Amount", exact=True).check()
    page.select_option("#id-to-phase", label="Triage")
    page.locator("#id-comment").focus()
    page.keyboard.press("Control+Enter")
    expect(page.locator(".flash-success")).to_contain_text("the requester is asked for the changes")
    card.refresh_from_db()
    assert card.phase.key == "triage" and card.requested_fields == ["amount"]

    sign_out(page)
    page = login(world.requester)
    page.goto(f"{live_server.url}/portal/requests/")
    row = page.locator(f"#request-{card.pk}")
    expect(row).to_contain_text("Action needed")
    row.get_by_role("link").click()
    expect(page.get_by_role("heading", name="Please correct your request")).to_be_visible()
    expect(page.locator("main")).to_contain_text("The team asked you to change this answer: Amount.")
    expect(page.locator("main")).to_contain_text("Please add the amount with taxes.")


def test_a_reviewer_approves_low_risk_tasks_together_from_the_keyboard(login, live_server, world, model):
    triage_agent_step(world, risk="low")
    cards = [drafted_card(world, model, item=f"Mouse {i}") for i in range(2)]
    page = open_inbox(login, live_server, world.reviewer)
    expect(page.locator("[data-bulk-bar]")).to_be_hidden()
    for _ in cards:
        page.keyboard.press("j")
        page.keyboard.press("x")
    expect(page.locator("[data-bulk-count]")).to_have_text("2 tasks selected")
    page.get_by_role("button", name="Approve selected").click()
    expect(page.locator(".flash-success")).to_contain_text("Approved 2 tasks, each recorded on its card.")
    for card in cards:
        card.refresh_from_db()
        assert card.phase.key == "approval"
        assert card.events.filter(kind="step", actor_label="Reviewer", reason="Decided approve").exists()


# ---------------------------------------------------------------- deciding in one pass


@pytest.fixture
def invoice_like(world, settings):
    """A low-risk human approval whose phase asks for a Decision and, once Rejected, why."""
    from orchestrator.models import Risk
    from tests.inbox.test_one_pass import decision_fields

    settings.TRILHO_RAIL_RETRY_BASE_SECONDS = 0
    decision_fields(world)
    return approval_step(world, risk=Risk.LOW)


def test_a_reviewer_approves_in_bulk_filling_the_shared_fields_once(login, live_server, world, invoice_like):
    cards = [card_in_approval(world, item=f"Desk {i}") for i in range(2)]
    page = open_inbox(login, live_server, world.reviewer)
    for card in cards:
        page.locator(f"#task-{task_of(card).pk} input[name=tasks]").check()
    fields = page.locator("fieldset.bulk-fields:visible")
    expect(fields).to_contain_text("fill them once for the selection")
    fields.locator("#id-po_number").fill("PO-500")
    fields.locator("#id-decision").select_option("Approved")
    page.get_by_role("button", name="Approve selected").click()
    expect(page.locator("body")).to_contain_text("Approved 2 tasks")
    for card in cards:
        card.refresh_from_db()
        assert card.phase.key == "done" and card.values["po_number"] == "PO-500"


def test_a_conditional_field_appears_live_on_the_review_screen(login, live_server, world, invoice_like):
    card = card_in_approval(world)
    page = login(world.reviewer)
    page.goto(f"{live_server.url}/inbox/tasks/{task_of(card).pk}/")
    reason = page.locator("#id-rejection_reason")
    expect(reason).to_have_count(0)
    page.locator("#id-decision").select_option("Rejected")
    expect(page.locator("#id-rejection_reason")).to_be_visible()
    page.locator("#id-decision").select_option("Approved")
    expect(page.locator("#id-rejection_reason")).to_have_count(0)


def test_a_reviewer_rejects_in_one_pass_typing_the_reason_once(login, live_server, world, invoice_like):
    card = card_in_approval(world)
    page = login(world.reviewer)
    page.goto(f"{live_server.url}/inbox/tasks/{task_of(card).pk}/")
    posts: list[str] = []
    page.on("request", lambda r: posts.append(r.url) if r.method == "POST" and "/decide/" in r.url else None)
    page.get_by_role("button", name=re.compile("^Reject")).click()  # reject mode: what a rejection needs
    expect(page.locator(".decide-hint")).to_contain_text("A rejection needs the fields shown above")
    expect(page.get_by_label("Approver")).to_be_hidden()  # not required to leave the phase
    page.locator("#id-po_number").fill("PO-9")
    page.locator("#id-decision").select_option("Rejected")
    expect(page.locator("[data-reason-note-for=rejection_reason]")).to_be_visible()
    expect(page.locator("#id-rejection_reason")).to_be_hidden()  # the comment is the reason
    page.get_by_label("Comment").fill("The supplier is not on the approved list.")
    page.get_by_role("button", name=re.compile("^Reject")).click()
    expect(page.locator("body")).to_contain_text(f"{card.reference} rejected.")
    card.refresh_from_db()
    assert card.phase.key == "rejected"
    assert card.values["rejection_reason"] == "The supplier is not on the approved list."
    assert len(posts) == 1
