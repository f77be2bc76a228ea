"""The request portal through its URLs: home, start form, conditional fields endpoint, confirmation,
My requests, a request's page, public forms (honeypot, rate limit), tracking, and requester emails."""

from __future__ import annotations

import time

import pytest
from django.conf import settings
from django.core import mail
from django.core.cache import cache
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from pipes.choices import EventKind, FieldType
from pipes.models import Card, CardEvent, Field, Phase, Pipe
from pipes.portal.mail import PORTAL_REASON
from pipes.portal.staging import ROOT, Staging, staging_sweep
from pipes.services import (
    Actor,
    CardAlreadySubmittedError,
    CardError,
    card_comment,
    card_create,
    card_move,
    card_request_changes,
    card_update_fields,
)
from tests.personas import PASSWORD, build_purchase_pipe, good_start_values, make_user
from tests.pipes.test_concurrency import run_together
from tests.pipes.test_forms import by_id, one_input, pdf, row_text

PUBLIC = "/portal/f/acme/purchases/"


@pytest.fixture(autouse=True)
def _fresh_cache_and_media(media_root):
    cache.clear()
    yield
    cache.clear()


def sign_in(client, user):
    assert client.login(username=user.username, password=PASSWORD)
    return client


def form_data(**overrides) -> dict:
    data = {f"f-{k}": v for k, v in good_start_values().items()}
    data.update(overrides)
    return data


def file_request(world, user=None, *, reason: str = PORTAL_REASON, **values) -> Card:
    """A request filed as the portal files it."""
    return card_create(
        actor=Actor.for_user(user or world.requester),
        pipe=world.pipe,
        values=good_start_values(**values),
        reason=reason,
    )


@pytest.fixture
def public_pipe(world):
    world.pipe.public_form = True
    world.pipe.save()
    return world.pipe


# ---------------------------------------------------------------- home


def test_it_lists_the_forms_a_person_may_use_grouped_with_turnaround(client, world):
    world.pipe.portal_group = "Purchasing"
    world.pipe.description = "Buy things for work."
    world.pipe.save()
    hr = Pipe.objects.create(
        organization=world.org, name="Onboarding", slug="onboarding", code="HR", portal_group="People"
    )
    Phase.objects.create(pipe=hr, name="Plan", key="plan", position=1, sla_hours=8)
    hidden = build_purchase_pipe(world.org, slug="secret", code="SE")  # the requester has no role on it
    hidden.name = "Secret purchases"
    hidden.save()
    from pipes.choices import PipeRole
    from pipes.roles import pipe_role_grant

    pipe_role_grant(pipe=hr, user=world.requester, role=PipeRole.REQUESTER)
    response = sign_in(client, world.requester).get("/portal/")
    html = response.content.decode()
    assert response.status_code == 200
    assert "Purchase requests" in html and "Buy things for work." in html and "Onboarding" in html
    assert "Secret purchases" not in html
    assert html.index("People") < html.index("Purchasing")  # headings in alphabetical order
    assert "Usually within 3 days" in html  # triage 24 h + approval 48 h
    assert "Usually within 8 hours" in html
    assert f'href="/portal/{world.pipe.pk}/new/"' in html


def test_it_shows_no_forms_to_someone_who_may_not_file_requests(client, world):
    response = sign_in(client, world.reviewer).get("/portal/")
    assert "No forms for you yet" in response.content.decode()


def test_it_filters_forms_by_search_text_and_answers_htmx_with_the_list_only(client, world):
    Pipe.objects.create(organization=world.org, name="Vacation", slug="vacation", code="VC")
    sign_in(client, world.owner)
    response = client.get("/portal/", {"q": "vacat"})
    assert "Vacation" in response.content.decode() and "Purchase requests" not in response.content.decode()
    response = client.get(
        "/portal/", {"q": "purchase"}, HTTP_HX_REQUEST="true", HTTP_HX_TARGET="portal-forms"
    )
    html = response.content.decode()
    assert html.lstrip().startswith('<div id="portal-forms"') and "<html" not in html
    assert "Purchase requests" in html and "Vacation" not in html


def test_it_sends_anonymous_visitors_to_sign_in(client, world):
    response = client.get("/portal/")
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]


# ---------------------------------------------------------------- start form


def test_it_hides_a_start_form_from_outsiders_and_forbids_it_to_viewers(client, world):
    assert sign_in(client, world.outsider).get(f"/portal/{world.pipe.pk}/new/").status_code == 404
    client.logout()
    assert sign_in(client, world.viewer).get(f"/portal/{world.pipe.pk}/new/").status_code == 403
    assert client.post(f"/portal/{world.pipe.pk}/new/", form_data()).status_code == 403
    assert not Card.objects.exists()


def test_it_prefills_the_email_field_with_the_requesters_address(client, world):
    response = sign_in(client, world.requester).get(f"/portal/{world.pipe.pk}/new/")
    assert one_input(response, "f-requester_email")["value"] == "requester@example.com"


def test_it_files_a_request_and_confirms_with_reference_and_tracking_link(
    client, world, django_capture_on_commit_callbacks
):
    sign_in(client, world.requester)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            f"/portal/{world.pipe.pk}/new/", form_data(**{"f-quote": [pdf("a.pdf"), pdf("b.pdf", b"%PDF-2")]})
        )
    card = Card.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/portal/requests/{card.pk}/submitted/"
    assert card.created_by == world.requester and card.title == "Laptop for Ana"
    assert card.files.count() == 2
    page = client.get(response["Location"])
    html = page.content.decode()
    assert card.reference in html and f"/portal/t/{card.tracking_token}/" in html and "Received" in html
    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert message.to == ["requester@example.com"] and card.reference in message.subject
    assert f"{settings.SITE_URL}/portal/t/{card.tracking_token}/" in message.body
    assert default_storage.listdir(ROOT) == ([], [])  # the kept uploads are gone once submitted


def test_it_requires_a_conditional_field_only_while_it_shows(client, world):
    sign_in(client, world.requester)
    response = client.post(f"/portal/{world.pipe.pk}/new/", form_data(**{"f-urgent": "on"}))
    assert response.status_code == 422
    assert "This field is required." in row_text(response, "urgency_reason")
    # Without JavaScript a hidden field's old answer may still be posted: it is left out, not an error.
    response = client.post(f"/portal/{world.pipe.pk}/new/", form_data(**{"f-urgency_reason": "left over"}))
    assert response.status_code == 302
    assert "urgency_reason" not in Card.objects.get().values


def test_it_shows_and_hides_conditional_fields_through_the_fields_endpoint(client, world):
    sign_in(client, world.requester)
    endpoint = f"/portal/{world.pipe.pk}/new/fields/"
    shown = client.post(endpoint, form_data(**{"f-urgent": "on"}), HTTP_HX_REQUEST="true")
    html = shown.content.decode()
    assert shown.status_code == 200
    assert 'id="row-urgency_reason"' in html and 'hx-swap-oob="true"' in html
    assert 'name="f-urgency_reason"' in html and 'aria-required="true"' in html
    assert 'id="row-item"' not in html  # rows that did not change are left alone (and what is typed in them)
    unchanged = client.post(
        endpoint, form_data(**{"f-urgent": "on", "_shown": "urgency_reason"}), HTTP_HX_REQUEST="true"
    )
    assert unchanged.content.decode().strip() == ""
    hidden = client.post(endpoint, form_data(**{"_shown": "urgency_reason"}), HTTP_HX_REQUEST="true")
    html = hidden.content.decode()
    assert 'id="row-urgency_reason"' in html and "hidden" in html and "f-urgency_reason" not in html


def test_it_marks_condition_sources_to_ask_the_fields_endpoint(client, world):
    response = sign_in(client, world.requester).get(f"/portal/{world.pipe.pk}/new/")
    urgent = one_input(response, "f-urgent")
    assert urgent["hx-post"] == f"/portal/{world.pipe.pk}/new/fields/" and urgent["hx-swap"] == "none"
    assert "hx-post" not in one_input(response, "f-item")
    assert "hidden" in dict(by_id(response, "row-urgency_reason").attributes)


def test_it_keeps_the_fields_endpoint_to_people_who_may_request(client, world):
    sign_in(client, world.outsider)
    assert client.post(f"/portal/{world.pipe.pk}/new/fields/", form_data()).status_code == 404


# ---------------------------------------------------------------- one card per submission


def filled_form(client, url: str) -> dict:
    """The start form's answers as a browser posts them, with the page's staging token."""
    return form_data(_staging=one_input(client.get(url), "_staging")["value"])


def test_it_files_one_card_when_the_same_form_is_posted_twice(
    client, world, django_capture_on_commit_callbacks
):
    url = f"/portal/{world.pipe.pk}/new/"
    data = filled_form(sign_in(client, world.requester), url)
    with django_capture_on_commit_callbacks(execute=True):
        first = client.post(url, data)
        again = client.post(url, data)
    card = Card.objects.get()
    assert first.status_code == again.status_code == 302
    assert first["Location"] == again["Location"] == f"/portal/requests/{card.pk}/submitted/"
    assert card.events.count() == 1 and len(mail.outbox) == 1


def test_it_files_one_card_when_a_public_form_is_posted_twice(client, public_pipe):
    data = filled_form(client, PUBLIC)
    first, again = client.post(PUBLIC, data), client.post(PUBLIC, data)
    card = Card.objects.get()
    assert first["Location"] == again["Location"] == f"/portal/t/{card.tracking_token}/submitted/"


def test_it_refuses_a_submission_key_that_filed_someone_elses_card(world):
    card_create(
        actor=Actor.for_user(world.requester),
        pipe=world.pipe,
        values=good_start_values(),
        submission_key="k-1",
    )
    with pytest.raises(CardError) as refused:
        card_create(
            actor=Actor.for_user(world.member),
            pipe=world.pipe,
            values=good_start_values(),
            submission_key="k-1",
        )
    assert not isinstance(refused.value, CardAlreadySubmittedError)  # the other person's card is not named
    assert Card.objects.count() == 1


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_it_files_one_card_for_four_simultaneous_posts_of_one_form(world):
    url = f"/portal/{world.pipe.pk}/new/"
    browser = Client()
    browser.force_login(world.requester)
    data = filled_form(browser, url)
    tabs = []
    for _ in range(4):  # the same signed-in browser, four requests in flight at once
        tab = Client()
        tab.cookies = browser.cookies
        tabs.append(tab)
    outcomes = run_together(*[lambda tab=tab: tab.post(url, data) for tab in tabs])
    card = Card.objects.get()
    assert [getattr(o, "status_code", o) for o in outcomes] == [302] * 4
    assert {o["Location"] for o in outcomes} == {f"/portal/requests/{card.pk}/submitted/"}
    assert card.events.count() == 1 and len(mail.outbox) == 1


# ---------------------------------------------------------------- my requests


def test_it_lists_only_my_requests_with_their_requester_status(client, world, django_assert_max_num_queries):
    mine = file_request(world, item="My laptop")
    moved = file_request(world, item="My chair")
    card_update_fields(actor=Actor.system(), card=moved, values={"category": "Hardware"})
    card_move(actor=Actor.system(), card=moved, to_phase=world.phase("approval"))
    file_request(world, user=world.member, item="Someone else's desk")
    sign_in(client, world.requester)
    with django_assert_max_num_queries(12):
        response = client.get("/portal/requests/")
    html = response.content.decode()
    assert mine.reference in html and "My laptop" in html and "My chair" in html
    assert "Someone else" not in html
    assert "In review" in html and "Received" in html


def test_it_lists_my_requests_in_a_fixed_number_of_queries(client, world, django_assert_num_queries):
    sign_in(client, world.requester)
    file_request(world)
    client.get("/portal/requests/")  # warm the session and content types
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as few:
        client.get("/portal/requests/")
    for n in range(5):
        card = file_request(world, item=f"Thing {n}")
        card_comment(actor=Actor.system(), card=card, text="Question?", to_requester=True)
    with CaptureQueriesContext(connection) as many:
        client.get("/portal/requests/")
    assert len(many) == len(few)


def test_it_splits_open_and_closed_requests(client, world):
    open_card = file_request(world, item="Still open")
    closed = file_request(world, item="All done")
    card_update_fields(actor=Actor.system(), card=closed, values={"category": "Services"})
    card_move(actor=Actor.system(), card=closed, to_phase=world.phase("rejected"))
    sign_in(client, world.requester)
    assert "Still open" in client.get("/portal/requests/").content.decode()
    closed_html = client.get("/portal/requests/", {"state": "closed"}).content.decode()
    assert "All done" in closed_html and "Declined" in closed_html and open_card.reference not in closed_html


# ---------------------------------------------------------------- one of my requests


def test_it_answers_404_for_another_requesters_card_guessed_by_url(client, world):
    others = file_request(world, user=world.member, item="Member's purchase")
    other_requester = make_user("bruno")
    from pipes.choices import PipeRole
    from pipes.roles import pipe_role_grant

    pipe_role_grant(pipe=world.pipe, user=other_requester, role=PipeRole.REQUESTER)
    theirs = file_request(world, user=other_requester, item="Bruno's purchase")
    sign_in(client, world.requester)
    for card in (others, theirs):
        for path in ("", "submitted/"):
            assert client.get(f"/portal/requests/{card.pk}/{path}").status_code == 404
        assert client.post(f"/portal/requests/{card.pk}/comment/", {"text": "hi"}).status_code == 404
        assert client.post(f"/portal/requests/{card.pk}/answer/", {}).status_code == 404
    assert client.get("/portal/requests/999999/").status_code == 404
    assert not CardEvent.objects.filter(kind=EventKind.COMMENTED).exists()


def test_it_shows_my_fields_visible_to_requesters_including_my_pii(client, world):
    card = file_request(world, requester_email="ana.private@example.com")
    Field.objects.filter(pipe=world.pipe, key="po_number").update(visible_to_requester=False)
    card_update_fields(
        actor=Actor.system(), card=card, values={"category": "Hardware", "po_number": "PO-SECRET"}
    )
    html = sign_in(client, world.requester).get(f"/portal/requests/{card.pk}/").content.decode()
    assert "ana.private@example.com" in html  # PII of one's own request is one's own
    assert "Hardware" in html and "BRL 4,500.00" in html
    assert "PO-SECRET" not in html


def test_it_shows_comments_addressed_to_me_and_lets_me_reply(client, world):
    card = file_request(world)
    card_comment(
        actor=Actor.for_user(world.member), card=card, text="Which model do you need?", to_requester=True
    )
    card_comment(
        actor=Actor.for_user(world.member), card=card, text="Internal: over budget", to_requester=False
    )
    sign_in(client, world.requester)
    html = client.get(f"/portal/requests/{card.pk}/").content.decode()
    assert "Which model do you need?" in html and "Internal: over budget" not in html
    response = client.post(f"/portal/requests/{card.pk}/comment/", {"text": "The 14-inch one."})
    assert response.status_code == 302
    event = card.events.filter(kind=EventKind.COMMENTED).last()
    assert event.payload["text"] == "The 14-inch one." and event.actor_user == world.requester
    assert "The 14-inch one." in client.get(f"/portal/requests/{card.pk}/").content.decode()
    empty = client.post(f"/portal/requests/{card.pk}/comment/", {"text": "  "})
    assert empty.status_code == 422 and "Write something to comment." in empty.content.decode()


def test_it_asks_me_for_the_fields_the_phase_wants_from_me(client, world):
    Field.objects.create(
        pipe=world.pipe,
        phase=world.phase("triage"),
        key="delivery_address",
        label="Delivery address",
        type=FieldType.LONG_TEXT,
        required=True,
        position=5,
        requester_editable=True,
    )
    Field.objects.create(
        pipe=world.pipe,
        phase=world.phase("triage"),
        key="need_by",
        label="Needed by",
        type=FieldType.DATE,
        position=6,
        requester_editable=True,
    )
    card = file_request(world)
    sign_in(client, world.requester)
    listing = client.get("/portal/requests/").content.decode()
    assert "Action needed" in listing
    page = client.get(f"/portal/requests/{card.pk}/")
    assert "We need something from you" in page.content.decode()
    assert one_input(page, "f-delivery_address")["_tag"] == "textarea"
    bad = client.post(
        f"/portal/requests/{card.pk}/answer/", {"f-delivery_address": "Rua A, 1", "f-need_by": "31/02/2026"}
    )
    assert bad.status_code == 422
    assert "Enter a real date" in row_text(bad, "need_by")
    assert one_input(bad, "f-delivery_address")["_text"].strip() == "Rua A, 1"
    ok = client.post(
        f"/portal/requests/{card.pk}/answer/", {"f-delivery_address": "Rua A, 1", "f-need_by": "2026-05-02"}
    )
    assert ok.status_code == 302
    card.refresh_from_db()
    assert card.values["delivery_address"] == "Rua A, 1" and card.values["need_by"] == "2026-05-02"
    assert "Action needed" not in client.get("/portal/requests/").content.decode()


def test_it_downloads_my_files_as_attachments_and_nobody_elses(client, world):
    card = card_create(
        actor=Actor.for_user(world.requester),
        pipe=world.pipe,
        values=good_start_values(),
        files={"quote": [pdf("quote.pdf")]},
    )
    file_id = card.values["quote"][0]
    sign_in(client, world.requester)
    response = client.get(f"/portal/requests/{card.pk}/files/{file_id}/")
    assert response.status_code == 200
    assert response["Content-Disposition"].startswith('attachment; filename="quote.pdf"')
    assert response["X-Content-Type-Options"] == "nosniff"
    assert b"".join(response.streaming_content).startswith(b"%PDF")
    client.logout()
    sign_in(client, world.member)
    assert client.get(f"/portal/requests/{card.pk}/files/{file_id}/").status_code == 404


# ---------------------------------------------------------------- public form


def test_it_hides_a_form_that_is_not_public(client, world):
    assert client.get(PUBLIC).status_code == 404
    assert client.post(PUBLIC, form_data()).status_code == 404


def test_it_takes_an_anonymous_submission_and_gives_a_tracking_link(
    client, public_pipe, django_capture_on_commit_callbacks
):
    page = client.get(PUBLIC)
    assert page.status_code == 200 and one_input(page, "website")["tabindex"] == "-1"
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(PUBLIC, form_data(**{"f-requester_email": "supplier@vendor.example"}))
    card = Card.objects.get()
    assert (
        response.status_code == 302 and response["Location"] == f"/portal/t/{card.tracking_token}/submitted/"
    )
    assert card.created_by is None and card.requester_email == "supplier@vendor.example"
    assert card.events.get(kind=EventKind.CREATED).actor_label == "Public form"
    confirmation = client.get(response["Location"]).content.decode()
    assert card.reference in confirmation and f"/portal/t/{card.tracking_token}/" in confirmation
    assert "supplier@vendor.example" not in confirmation  # whoever holds the link sees no personal data
    assert mail.outbox[0].to == ["supplier@vendor.example"] and card.tracking_token in mail.outbox[0].body
    assert f"/portal/requests/{card.pk}/" not in mail.outbox[0].body


def test_it_needs_the_submitters_email_on_a_public_form(client, public_pipe):
    response = client.post(PUBLIC, form_data(**{"f-requester_email": "", "f-amount": "lots"}))
    assert response.status_code == 422
    assert "Enter your email so we can send you the tracking link." in row_text(response, "requester_email")
    assert "Enter a number" in row_text(response, "amount")  # every error at once
    assert not Card.objects.exists()


def test_it_asks_for_a_separate_email_when_the_public_form_has_none(client, world, public_pipe):
    Field.objects.filter(pipe=public_pipe, key="requester_email").delete()
    page = client.get(PUBLIC)
    assert one_input(page, "f-_email")["type"] == "email"
    missing = client.post(PUBLIC, {"f-item": "Bolts", "f-amount": "10"})
    assert "Enter your email so we can send you the tracking link." in row_text(missing, "_email")
    wrong = client.post(PUBLIC, {"f-item": "Bolts", "f-amount": "10", "f-_email": "nope"})
    assert "Enter an email address like name@example.com." in row_text(wrong, "_email")
    ok = client.post(PUBLIC, {"f-item": "Bolts", "f-amount": "10", "f-_email": "bolts@vendor.example"})
    assert ok.status_code == 302
    card = Card.objects.get()
    assert card.requester_email == "bolts@vendor.example" and "_email" not in card.values


def test_it_swallows_a_bot_that_fills_the_honeypot(client, public_pipe):
    response = client.post(PUBLIC, form_data(website="http://spam.example"))
    assert response.status_code == 200
    assert "your request was sent" in response.content.decode()
    assert not Card.objects.exists()


def test_it_limits_public_submissions_per_address(client, public_pipe):
    for n in range(5):
        response = client.post(PUBLIC, form_data(**{"f-item": f"Thing {n}"}), REMOTE_ADDR="203.0.113.9")
        assert response.status_code == 302
    response = client.post(PUBLIC, form_data(), REMOTE_ADDR="203.0.113.9")
    assert response.status_code == 429
    assert "Too many submissions" in response.content.decode() and response["Retry-After"] == "600"
    assert Card.objects.count() == 5
    assert client.post(PUBLIC, form_data(), REMOTE_ADDR="198.51.100.7").status_code == 302  # others still may


def test_it_limits_repeated_failed_attempts_too(client, public_pipe):
    statuses = [
        client.post(PUBLIC, {"f-item": ""}, REMOTE_ADDR="203.0.113.10").status_code for _ in range(31)
    ]
    assert statuses[:30] == [422] * 30 and statuses[30] == 429


def test_it_runs_the_public_fields_endpoint_without_an_account(client, public_pipe):
    response = client.post("/portal/f/acme/purchases/fields/", form_data(**{"f-urgent": "on"}))
    assert response.status_code == 200 and 'name="f-urgency_reason"' in response.content.decode()


# ---------------------------------------------------------------- tracking


def test_it_shows_status_reference_and_dates_on_the_tracking_page_but_no_values(client, world):
    card = file_request(world, item="Very secret laptop", requester_email="hidden@example.com")
    card_update_fields(actor=Actor.system(), card=card, values={"category": "Hardware"})
    card_move(actor=Actor.system(), card=card, to_phase=world.phase("approval"))
    response = client.get(f"/portal/t/{card.tracking_token}/")
    html = response.content.decode()
    assert response.status_code == 200
    assert card.reference in html and "In review" in html and "Received" in html
    for secret in ("Very secret laptop", "hidden@example.com", "4,500", "Hardware"):
        assert secret not in html
    assert response["X-Robots-Tag"] == "noindex, nofollow"


def test_it_answers_404_for_an_unknown_or_short_tracking_token(client, world):
    file_request(world)
    assert client.get("/portal/t/" + "x" * 32 + "/").status_code == 404
    assert client.get("/portal/t/abc/").status_code == 404


# ---------------------------------------------------------------- emails on status change


def test_it_emails_the_requester_when_the_status_they_see_changes(world, django_capture_on_commit_callbacks):
    import pipes.portal.mail  # noqa: F401  connected here until PipesConfig.ready imports it

    card = file_request(world)
    card_update_fields(actor=Actor.system(), card=card, values={"category": "Hardware"})
    with django_capture_on_commit_callbacks(execute=True):
        card_move(actor=Actor.system(), card=card, to_phase=world.phase("approval"))
    assert len(mail.outbox) == 1
    assert mail.outbox[0].subject == f"[{card.reference}] Your request is now: In review"
    assert mail.outbox[0].to == ["requester@example.com"]
    assert f"/portal/requests/{card.pk}/" in mail.outbox[0].body


def test_it_stays_quiet_when_a_move_does_not_change_what_the_requester_sees(
    world, django_capture_on_commit_callbacks
):
    import pipes.portal.mail  # noqa: F401

    world.pipe.phases.filter(key="approval").update(requester_status="Received")
    card = file_request(world)
    card_update_fields(actor=Actor.system(), card=card, values={"category": "Hardware"})
    with django_capture_on_commit_callbacks(execute=True):
        card_move(actor=Actor.system(), card=card, to_phase=world.phase("approval"))
    assert mail.outbox == []


def test_it_does_not_email_about_cards_made_outside_the_portal(world, django_capture_on_commit_callbacks):
    import pipes.portal.mail  # noqa: F401

    card = file_request(world, user=world.member, reason="")  # e.g. made on the board
    card_update_fields(actor=Actor.system(), card=card, values={"category": "Hardware"})
    with django_capture_on_commit_callbacks(execute=True):
        card_move(actor=Actor.system(), card=card, to_phase=world.phase("approval"))
    assert mail.outbox == []


def test_it_asks_the_requester_to_correct_fields_the_team_named(
    client, world, django_capture_on_commit_callbacks
):
    import pipes.portal.mail  # noqa: F401

    card = file_request(world, item="Laptop")
    card_update_fields(actor=Actor.system(), card=card, values={"category": "Hardware"})
    card_move(actor=Actor.system(), card=card, to_phase=world.phase("approval"))
    with django_capture_on_commit_callbacks(execute=True):
        card_request_changes(
            actor=Actor.for_user(world.member),
            card=card,
            field_keys=["amount"],
            comment="The quote says 4,200.",
            to_phase=world.phase("triage"),
        )
    assert [m.subject for m in mail.outbox] == [f"[{card.reference}] Please correct your request"]
    assert "- Amount" in mail.outbox[0].body and "The quote says 4,200." in mail.outbox[0].body
    sign_in(client, world.requester)
    assert "Action needed" in client.get("/portal/requests/").content.decode()
    page = client.get(f"/portal/requests/{card.pk}/")
    assert "Please correct your request" in page.content.decode()
    assert one_input(page, "f-amount")["value"] == "4500.00"
    assert "f-item" not in page.content.decode()  # only what was asked
    response = client.post(f"/portal/requests/{card.pk}/answer/", {"f-amount": "4200"})
    assert response.status_code == 302
    card.refresh_from_db()
    assert card.values["amount"]["amount"] == "4200.00"
    assert "Action needed" not in client.get("/portal/requests/").content.decode()
    assert "the team will look at your changes" in client.get(f"/portal/requests/{card.pk}/").content.decode()


# ---------------------------------------------------------------- staging area


def test_it_sweeps_staged_uploads_older_than_a_day(world):
    from pipes.files import inspect_upload

    old = Staging(f"{int(time.time()) - 2 * 86400}-old", None)
    new = Staging.open(None, owner_id=None)
    for staging in (old, new):
        upload = pdf("kept.pdf")
        staging.keep(field_key="quote", upload=upload, info=inspect_upload(upload))
    assert staging_sweep(force=True) == 1
    assert old.files("quote") == [] and [f.name for f in new.files("quote")] == ["kept.pdf"]


def test_it_rejects_a_tampered_or_foreign_staging_token(world):
    staging = Staging.open(None, owner_id=world.requester.pk)
    assert Staging.open(staging.signed, owner_id=world.requester.pk).token == staging.token
    assert Staging.open(staging.signed, owner_id=world.member.pk).token != staging.token
    assert Staging.open(staging.signed[:-2] + "zz", owner_id=world.requester.pk).token != staging.token


def test_it_never_serves_an_uploaded_file_inline(client, world):
    svg = SimpleUploadedFile("logo.txt", b"just text", content_type="text/plain")
    card = card_create(
        actor=Actor.for_user(world.requester),
        pipe=world.pipe,
        values=good_start_values(),
        files={"quote": [svg]},
    )
    sign_in(client, world.requester)
    response = client.get(f"/portal/requests/{card.pk}/files/{card.values['quote'][0]}/")
    assert response["Content-Disposition"].startswith("attachment")
    assert "sandbox" in response["Content-Security-Policy"]


def test_it_offers_the_tracking_link_and_status_in_the_request_page(client, world):
    card = file_request(world)
    html = sign_in(client, world.requester).get(f"/portal/requests/{card.pk}/").content.decode()
    assert f"/portal/t/{card.tracking_token}/" in html and "Received" in html
