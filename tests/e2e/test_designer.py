"""The designer in a real Chromium: an organization owner creates a process from the template
gallery, starting from the home page's "New process", and lands on its design page and board."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from pipes.models import Pipe

pytestmark = pytest.mark.e2e


@pytest.mark.django_db(transaction=True)
def test_it_creates_a_process_from_a_template_and_lands_on_its_design(login, live_server, world):
    page = login(world.owner)
    page.goto(f"{live_server.url}/")
    page.get_by_role("link", name="New process").click()
    expect(page.get_by_role("heading", name="Design a process")).to_be_visible()

    page.locator("#template-employee_onboarding").click()
    expect(page.locator("#id_name")).to_have_value(re.compile(r".+"))
    page.fill("#id_name", "Onboarding in Acme")
    page.fill("#id_slug", "onboarding-acme")
    page.fill("#id_code", "ONB")
    page.get_by_role("button", name="Create process").click()

    pipe = Pipe.objects.get(organization=world.org, slug="onboarding-acme")
    expect(page).to_have_url(f"{live_server.url}/design/pipes/{pipe.pk}/")
    expect(page.get_by_role("heading", name="Onboarding in Acme")).to_be_visible()
    first = pipe.phases.order_by("position").first()
    expect(page.locator(f"#rename-{first.pk}")).to_have_value(first.name)  # its name, editable in place

    page.get_by_role("link", name="Open board").click()
    expect(page).to_have_url(f"{live_server.url}/pipes/{pipe.pk}/")
    expect(page.locator(f"#col-{first.pk}")).to_be_visible()
    page.locator("#design-pipe").click()
    expect(page).to_have_url(f"{live_server.url}/design/pipes/{pipe.pk}/")
