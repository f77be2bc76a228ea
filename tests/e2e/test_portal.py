"""The request portal in a real Chromium: filing a request with a conditional field and attachments,
an anonymous supplier following a public form to its tracking page, and a form that comes back with
errors keeping everything that was typed and uploaded."""

from __future__ import annotations

import re

import pytest
from django.core.cache import cache
from playwright.sync_api import expect

from pipes.models import Card

PDF = b"%PDF-1.4\n% e2e test document\n"


def pdf_file(name: str, extra: bytes = b"") -> dict:
    return {"name": name, "mimeType": "application/pdf", "buffer": PDF + extra}


@pytest.fixture(autouse=True)
def _fresh_cache(media_root):
    cache.clear()  # rate-limit counters are per process
    yield
    cache.clear()


@pytest.mark.django_db(transaction=True)
def test_it_files_a_request_with_a_conditional_field_and_two_attachments(login, live_server, world):
    page = login(world.requester)
    page.goto(f"{live_server.url}/portal/")
    page.get_by_role("link", name=re.compile("Purchase requests")).click()
    expect(page.get_by_role("heading", name="Purchase requests")).to_be_visible()

    page.fill("#id-item", "Laptop for Ana")
    page.fill("#id-amount", "4500,00")
    expect(page.locator("#id-urgency_reason")).to_have_count(0)
    page.check("#id-urgent")
    reason = page.locator("#id-urgency_reason")
    expect(reason).to_be_visible()
    expect(page.locator("#row-urgency_reason .req")).to_be_visible()  # its required mark follows
    page.uncheck("#id-urgent")
    expect(reason).to_have_count(0)
    page.check("#id-urgent")
    expect(reason).to_be_visible()
    reason.fill("The old one stopped booting.")
    page.set_input_files("#id-quote", [pdf_file("quote-dell.pdf"), pdf_file("quote-lenovo.pdf", b"2")])
    expect(page.locator("#id-quote-chosen li")).to_have_count(2)
    page.get_by_role("button", name="Submit request").click()

    reference = page.get_by_test_id("reference")
    expect(reference).to_have_text(re.compile(r"^PR-\d+$"))
    ref = reference.inner_text()
    card = Card.objects.get()
    assert ref == card.reference
    assert card.values["urgency_reason"] == "The old one stopped booting."
    assert sorted(card.files.values_list("name", flat=True)) == ["quote-dell.pdf", "quote-lenovo.pdf"]

    page.locator("nav.mainnav").get_by_role("link", name="My requests").click()
    row = page.locator("tr", has_text=ref)
    expect(row).to_contain_text("Laptop for Ana")
    expect(row.get_by_test_id("status")).to_have_text("Received")
    row.get_by_role("link").click()
    expect(page.get_by_role("heading", name="Laptop for Ana")).to_be_visible()
    expect(page.get_by_role("link", name="quote-lenovo.pdf")).to_be_visible()


@pytest.mark.django_db(transaction=True)
def test_it_lets_an_anonymous_supplier_submit_a_public_form_and_follow_it(page, live_server, world):
    world.pipe.public_form = True
    world.pipe.save()
    page.goto(f"{live_server.url}/portal/f/acme/purchases/")
    expect(page.get_by_role("heading", name="Purchase requests")).to_be_visible()
    expect(
        page.locator("input[name=website]")
    ).not_to_be_in_viewport()  # the honeypot: bots see it, people do not
    page.fill("#id-item", "Quote for 200 bolts")
    page.fill("#id-amount", "1200")
    page.fill("#id-requester_email", "sales@bolts.example")
    page.get_by_role("button", name="Submit request").click()

    expect(page.get_by_test_id("reference")).to_have_text(re.compile(r"^PR-\d+$"))
    card = Card.objects.get()
    assert card.created_by is None and card.requester_email == "sales@bolts.example"
    expect(page.locator("#tracking-link")).to_have_value(
        re.compile(re.escape(f"/portal/t/{card.tracking_token}/"))
    )

    page.get_by_role("link", name="Follow this request").click()
    expect(page).to_have_url(re.compile(f"/portal/t/{card.tracking_token}/$"))
    expect(page.get_by_test_id("reference")).to_have_text(card.reference)
    expect(page.get_by_test_id("status")).to_have_text("Received")
    expect(page.locator("body")).not_to_contain_text("Quote for 200 bolts")  # status only, no values


@pytest.mark.django_db(transaction=True)
def test_it_brings_a_form_back_with_errors_and_every_value_still_filled_in(login, live_server, world):
    page = login(world.requester)
    page.goto(f"{live_server.url}/portal/{world.pipe.pk}/new/")
    page.fill("#id-item", "Standing desk")
    page.fill("#id-amount", "a lot")
    page.fill("#id-requester_email", "ana@")
    page.check("#id-urgent")
    page.fill("#id-urgency_reason", "Back pain.")
    page.set_input_files("#id-quote", [pdf_file("desk-quote.pdf")])
    page.get_by_role("button", name="Submit request").click()

    summary = page.locator("#error-summary")
    expect(summary).to_be_visible()
    expect(summary).to_be_focused()
    expect(page.locator("#row-amount .pf-error")).to_have_text("Enter a number, like 1250 or 1250.50.")
    expect(page.locator("#row-requester_email .pf-error")).to_have_text(
        "Enter an email address like name@example.com."
    )
    expect(page.locator("#id-item")).to_have_value("Standing desk")
    expect(page.locator("#id-amount")).to_have_value("a lot")
    expect(page.locator("#id-requester_email")).to_have_value("ana@")
    expect(page.locator("#id-urgent")).to_be_checked()
    expect(page.locator("#id-urgency_reason")).to_have_value("Back pain.")
    expect(page.locator("#row-quote")).to_contain_text("kept: desk-quote.pdf")

    page.fill("#id-amount", "1890")
    page.fill("#id-requester_email", "ana@example.com")
    page.get_by_role("button", name="Submit request").click()
    expect(page.get_by_test_id("reference")).to_be_visible()
    card = Card.objects.get()
    assert card.values["urgency_reason"] == "Back pain."
    assert list(card.files.values_list("name", flat=True)) == ["desk-quote.pdf"]
