"""The inbox's pages through their real URLs: who sees what, decisions by form post, refusals with
their status and message, the nav badge, previews, bulk approval and query counts."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from agents.models import DocumentText
from orchestrator.inbox.models import InboxItem
from orchestrator.inbox.selectors import inbox_waiting_count
from orchestrator.inbox.services import inbox_decide
from orchestrator.models import ReviewStatus, Risk
from orchestrator.rail.tasks import extract_document
from pipes.choices import PipeRole
from pipes.models import Card
from pipes.roles import pipe_role_grant
from pipes.services import Actor, card_create
from tests.agents.conftest import compressed_pdf
from tests.inbox.conftest import approval_step, card_in_approval, drafted_card, task_of, triage_agent_step
from tests.orchestrator.conftest import drain
from tests.personas import build_purchase_pipe, good_start_values, make_user

pytestmark = pytest.mark.django_db


def page(client, user, url, **kwargs):
    client.force_login(user)
    return client.get(url, **kwargs)


def post(client, user, url, data):
    client.force_login(user)
    return client.post(url, data)


def task_url(task, suffix: str = "") -> str:
    return f"/inbox/tasks/{task.pk}/{suffix}"


# ---------------------------------------------------------------- the list


def test_it_lists_what_waits_for_a_reviewer_with_the_reason(client, world, ollama_only):
    triage_agent_step(world)
    card = drafted_card(world, ollama_only)
    response = page(client, world.reviewer, "/inbox/")
    body = response.content.decode()
    assert response.status_code == 200
    assert card.reference in body and card.title in body
    assert (
        "The local model llama-test was 55% sure, below the 70% required; no foundation model is configured,"
        " so this needs a person" in body
    )
    assert "Agent: approve · 55%" in body


def test_it_masks_a_pii_title_for_a_reviewer_who_may_not_see_personal_data(client, world, rail_settings):
    world.pipe.fields.filter(key="item").update(pii=True)  # the pipe's title field
    approval_step(world)
    card = card_in_approval(world, item="Laptop for Joana Secreta")
    listed = page(client, world.reviewer, "/inbox/?view=open").content.decode()
    screen = page(client, world.reviewer, task_url(task_of(card))).content.decode()
    for html in (listed, screen):
        assert card.reference in html and "Joana" not in html and "L***" in html
    assert "Laptop for Joana Secreta" in page(client, world.admin, "/inbox/?view=open").content.decode()


@pytest.mark.parametrize("who", ["member", "viewer", "requester", "outsider"])
def test_it_lists_nothing_of_pipes_one_does_not_review(client, world, rail_settings, who):
    approval_step(world)
    card = card_in_approval(world, by=world.admin)
    response = page(client, getattr(world, who), "/inbox/?view=open")
    assert response.status_code == 200 and card.reference not in response.content.decode()


def test_it_sorts_the_most_urgent_first(client, world, rail_settings):
    approval_step(world)
    later, sooner = card_in_approval(world, item="Later"), card_in_approval(world, item="Sooner")
    InboxItem.objects.filter(task=task_of(sooner)).update(due_at=timezone.now() - timedelta(hours=1))
    body = page(client, world.reviewer, "/inbox/").content.decode()
    assert body.index(sooner.reference) < body.index(later.reference)
    assert "Overdue" in body


def test_it_filters_by_view_and_pipe(client, world, rail_settings):
    approval_step(world)
    other = build_purchase_pipe(world.org, slug="services", code="SV")
    pipe_role_grant(pipe=other, user=world.reviewer, role=PipeRole.REVIEWER)
    overdue, fresh = card_in_approval(world, item="Overdue one"), card_in_approval(world, item="Fresh one")
    InboxItem.objects.filter(task=task_of(overdue)).update(due_at=timezone.now() - timedelta(minutes=5))
    body = page(client, world.reviewer, "/inbox/?view=overdue").content.decode()
    assert overdue.reference in body and fresh.reference not in body
    assert (
        fresh.reference
        not in page(client, world.reviewer, f"/inbox/?view=open&pipe={other.pk}").content.decode()
    )
    inbox_decide(task=task_of(fresh), user=world.reviewer, decision="approve", values={"po_number": "PO-1"})
    body = page(client, world.reviewer, "/inbox/?view=decided").content.decode()
    assert fresh.reference in body and overdue.reference not in body


def test_it_leaves_the_reviewers_own_requests_out_of_waiting_for_me(client, world, rail_settings):
    approval_step(world)
    own = card_in_approval(world, by=world.admin)
    assert inbox_waiting_count(user=world.admin) == 0
    body = page(client, world.admin, "/inbox/?view=open").content.decode()
    assert own.reference in body and "Your request" in body


def test_the_nav_badge_counts_in_one_query(client, world, rail_settings):
    approval_step(world)
    card_in_approval(world, item="A")
    card_in_approval(world, item="B")
    with CaptureQueriesContext(connection) as queries:
        assert inbox_waiting_count(user=world.reviewer) == 2
    assert len(queries) == 1


def test_the_list_takes_the_same_queries_for_more_tasks(
    client, world, ollama_only, django_assert_max_num_queries
):
    triage_agent_step(world)
    drafted_card(world, ollama_only, item="First")
    client.force_login(world.reviewer)
    with CaptureQueriesContext(connection) as few:
        client.get("/inbox/")
    for i in range(4):
        drafted_card(world, ollama_only, item=f"More {i}")
    with django_assert_max_num_queries(len(few)):
        assert client.get("/inbox/").status_code == 200


# ---------------------------------------------------------------- the review screen


def test_the_review_screen_shows_the_draft_the_reason_and_masks_pii(client, world, ollama_only):
    triage_agent_step(world)
    card = drafted_card(world, ollama_only)
    task = task_of(card)
    response = page(client, world.reviewer, task_url(task))
    body = response.content.decode()
    assert response.status_code == 200
    assert "Is this request complete" in body or task.question in body
    assert "The local model llama-test was 55% sure, below the 70% required" in body
    assert "Not sure; the documents are ambiguous." in body and "55%" in body
    assert 'value="CC-123"' in body  # the draft prefilled
    assert "ana@example.com" not in body and "a***@e***.com" in body  # reviewers do not see PII
    task.refresh_from_db()
    assert task.opened_at is not None


@pytest.mark.parametrize("who", ["member", "viewer", "requester", "outsider"])
def test_the_review_screen_is_a_404_without_a_reviewer_role(client, world, rail_settings, who):
    approval_step(world)
    task = task_of(card_in_approval(world, by=world.admin))
    assert page(client, getattr(world, who), task_url(task)).status_code == 404


@pytest.mark.parametrize("who", ["member", "viewer", "requester", "outsider"])
def test_a_decision_by_form_post_is_a_404_without_a_reviewer_role(client, world, rail_settings, who):
    approval_step(world)
    card = card_in_approval(world, by=world.admin)
    task = task_of(card)
    response = post(
        client, getattr(world, who), task_url(task, "decide/"), {"decision": "approve", "f-po_number": "P"}
    )
    assert response.status_code == 404
    task.refresh_from_db()
    card.refresh_from_db()
    assert task.status == ReviewStatus.OPEN and card.phase.key == "approval"


def test_it_approves_by_form_post_and_goes_to_the_next_task(client, world, rail_settings):
    approval_step(world)
    first, second = card_in_approval(world, item="First"), card_in_approval(world, item="Second")
    response = post(
        client,
        world.reviewer,
        task_url(task_of(first), "decide/"),
        {"decision": "approve", "f-po_number": "PO-9"},
    )
    assert response.status_code == 302 and response["Location"] == task_url(task_of(second))
    first.refresh_from_db()
    assert first.phase.key == "done" and first.values["po_number"] == "PO-9"


def test_it_asks_for_a_comment_to_reject(client, world, rail_settings):
    approval_step(world)
    task = task_of(card_in_approval(world))
    response = post(
        client, world.reviewer, task_url(task, "decide/"), {"decision": "reject", "f-po_number": "P"}
    )
    assert response.status_code == 422
    assert "Say why you reject it: the comment is required." in response.content.decode()


def test_it_names_the_missing_field_at_its_input(client, world, rail_settings):
    approval_step(world)
    task = task_of(card_in_approval(world))
    response = post(
        client, world.reviewer, task_url(task, "decide/"), {"decision": "approve", "f-po_number": ""}
    )
    assert response.status_code == 422
    body = response.content.decode()
    assert 'id="id-po_number-error"' in body and "This field is required." in body


def test_it_tells_the_second_reviewer_the_task_was_already_decided(client, world, rail_settings):
    approval_step(world)
    task = task_of(card_in_approval(world))
    inbox_decide(task=task, user=world.admin, decision="approve", values={"po_number": "PO-1"})
    response = post(
        client, world.reviewer, task_url(task, "decide/"), {"decision": "approve", "f-po_number": "PO-2"}
    )
    assert response.status_code == 409
    assert (
        "This review was already decided (approve) by Admin; nothing was changed."
        in response.content.decode()
    )


def test_it_refuses_the_requester_their_own_case_with_403(client, world, rail_settings):
    approval_step(world)
    card = card_in_approval(world, by=world.admin)
    response = post(
        client, world.admin, task_url(task_of(card), "decide/"), {"decision": "approve", "f-po_number": "P"}
    )
    assert response.status_code == 403
    assert "You filed this request" in response.content.decode()


def test_it_requests_changes_by_form_post(client, world, rail_settings):
    approval_step(world)
    card = card_in_approval(world)
    task = task_of(card)
    response = post(
        client,
        world.reviewer,
        task_url(task, "decide/"),
        {
            "decision": "request_changes",
            "fields": ["amount"],
            "comment": "Include taxes",
            "to_phase": str(world.phase("triage").pk),
        },
    )
    assert response.status_code == 302
    card.refresh_from_db()
    assert card.phase.key == "triage" and card.requested_fields == ["amount"]


def test_it_delegates_by_form_post(client, world, rail_settings):
    approval_step(world)
    rita = make_user("rita", first_name="Rita")
    pipe_role_grant(pipe=world.pipe, user=rita, role=PipeRole.REVIEWER)
    task = task_of(card_in_approval(world))
    assert "Rita" in page(client, world.reviewer, task_url(task)).content.decode()
    response = post(
        client, world.reviewer, task_url(task, "delegate/"), {"to_user": str(rita.pk), "note": "Yours"}
    )
    assert response.status_code == 302
    task.refresh_from_db()
    assert task.assignee == rita
    response = post(client, world.reviewer, task_url(task, "delegate/"), {"to_user": str(world.reviewer.pk)})
    assert response.status_code == 403 and "Only Rita or an admin" in response.content.decode()


def card_with_file_in_approval(world, upload) -> Card:
    """A request filed with `upload` in its quote field, triaged and moved to Approval; the rail ran."""
    from pipes.services import card_move, card_update_fields

    approval_step(world)
    card = card_create(
        actor=Actor.for_user(world.requester),
        pipe=world.pipe,
        values=good_start_values(),
        files={"quote": [upload]},
    )
    card_update_fields(actor=Actor.for_user(world.member), card=card, values={"category": "Hardware"})
    card_move(
        actor=Actor.for_user(world.member),
        card=Card.objects.get(pk=card.pk),
        to_phase=world.phase("approval"),
    )
    drain()
    return card


def test_it_previews_the_text_of_an_attachment(client, world, rail_settings, media_root):
    upload = SimpleUploadedFile("quote.txt", b"Quote 118: twelve chairs", content_type="text/plain")
    card = card_with_file_in_approval(world, upload)
    task = task_of(card)
    file_id = card.files.get().pk
    body = page(client, world.reviewer, task_url(task)).content.decode()
    assert "quote.txt" in body and f"/inbox/tasks/{task.pk}/files/{file_id}/preview/" in body
    extract_document(file_id)  # as the worker does
    preview = page(client, world.reviewer, task_url(task, f"files/{file_id}/preview/"))
    assert preview.status_code == 200 and "Quote 118: twelve chairs" in preview.content.decode()
    assert page(client, world.member, task_url(task, f"files/{file_id}/preview/")).status_code == 404


def test_it_previews_a_compressed_pdf_without_extracting_it_in_the_request(
    client, world, rail_settings, media_root
):
    bomb = compressed_pdf(pages_of=6, stream_bytes=5_000_000)  # extracting it took about a minute
    card = card_with_file_in_approval(
        world, SimpleUploadedFile("quote.pdf", bomb, content_type="application/pdf")
    )
    card_file = card.files.get()
    started = time.monotonic()
    preview = page(client, world.reviewer, task_url(task_of(card), f"files/{card_file.pk}/preview/"))
    assert time.monotonic() - started < 1
    assert "The text is being extracted" in preview.content.decode()
    assert DocumentText.objects.get(card_file=card_file).status == DocumentText.Status.PENDING


def test_it_says_in_the_preview_that_a_file_was_cut(client, world, rail_settings, media_root):
    bomb = compressed_pdf(pages_of=6, stream_bytes=5_000_000)
    card = card_with_file_in_approval(
        world, SimpleUploadedFile("quote.pdf", bomb, content_type="application/pdf")
    )
    card_file = card.files.get()
    extract_document(card_file.pk)  # as the worker does
    body = page(
        client, world.reviewer, task_url(task_of(card), f"files/{card_file.pk}/preview/")
    ).content.decode()
    assert "This file was cut" in body and "Pages whose content expands past 1 MB were skipped." in body


def test_it_sends_the_files_of_a_new_card_to_a_worker_for_their_text(
    world, rail_settings, media_root, django_capture_on_commit_callbacks
):
    upload = SimpleUploadedFile("quote.pdf", compressed_pdf([b"Quote 118"]), content_type="application/pdf")
    with django_capture_on_commit_callbacks(execute=True):
        card = card_create(
            actor=Actor.for_user(world.requester),
            pipe=world.pipe,
            values=good_start_values(),
            files={"quote": [upload]},
        )
    assert DocumentText.objects.get(card_file=card.files.get()).status == DocumentText.Status.PENDING


# ---------------------------------------------------------------- bulk


def test_it_approves_selected_tasks_by_form_post(client, world, ollama_only):
    triage_agent_step(world, risk=Risk.LOW)
    cards = [drafted_card(world, ollama_only, item=f"Mouse {i}") for i in range(2)]
    response = post(client, world.reviewer, "/inbox/bulk/", {"tasks": [str(task_of(c).pk) for c in cards]})
    assert response.status_code == 302
    assert all(Card.objects.get(pk=c.pk).phase.key == "approval" for c in cards)


def test_bulk_approval_of_another_pipes_task_is_a_404(client, world, ollama_only):
    triage_agent_step(world, risk=Risk.LOW)
    card = drafted_card(world, ollama_only)
    outsider_reviewer = make_user("olga")
    response = post(client, outsider_reviewer, "/inbox/bulk/", {"tasks": [str(task_of(card).pk)]})
    assert response.status_code == 404
    assert task_of(card).status == ReviewStatus.OPEN


def test_it_masks_the_address_a_public_request_came_from_for_a_reviewer_who_may_not_see_personal_data(
    client, world, rail_settings
):
    approval_step(world)
    card = card_in_approval(world)
    Card.objects.filter(pk=card.pk).update(created_by=None, requester_email="joana.secreta@vendor.example")
    task = task_of(card)

    client.force_login(world.reviewer)  # no view_pii
    page = client.get(f"/inbox/tasks/{task.pk}/").content.decode()
    assert "joana.secreta@vendor.example" not in page and "filed by j***@v***.example" in page

    client.force_login(world.admin)
    assert "filed by joana.secreta@vendor.example" in client.get(f"/inbox/tasks/{task.pk}/").content.decode()
