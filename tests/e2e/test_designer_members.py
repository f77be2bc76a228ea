"""The members page in a real Chromium: a pipe admin who is not an owner invites someone by email,
changes a role and is refused the removal of the last admin, all without a page load."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from pipes.choices import PipeRole
from pipes.roles import pipe_access

pytestmark = pytest.mark.e2e


@pytest.mark.django_db(transaction=True)
def test_it_gives_and_changes_roles_without_reloading_the_page(login, live_server, world):
    page = login(world.admin)
    page.goto(f"{live_server.url}/design/pipes/{world.pipe.pk}/")
    page.get_by_role("link", name="Members").click()
    expect(page.get_by_role("heading", name="People and roles")).to_be_visible()
    page.wait_for_load_state("load")
    loads = []
    page.on("load", lambda: loads.append(page.url))

    page.fill("#add-email", "bia@acme.example")
    page.fill("#add-name", "Bia Lima")
    page.get_by_role("radio", name="Reviewer").check()
    page.get_by_role("button", name="Add to the pipe").click()
    expect(page.get_by_text("Invitation sent to bia@acme.example.")).to_be_visible()
    row = page.locator("tr", has_text="bia@acme.example")
    expect(row.get_by_text("Invited")).to_be_visible()

    row.get_by_role("combobox").select_option("viewer")
    expect(page.get_by_text("Bia Lima is now viewer.")).to_be_visible()

    page.once("dialog", lambda dialog: dialog.accept())
    admin_row = page.locator(f"#member-{world.admin.pk}")
    admin_row.get_by_role("button", name="Remove").click()
    expect(admin_row.get_by_role("alert")).to_contain_text("last admin of this pipe")

    assert loads == []  # every change came back as a fragment
    from django.contrib.auth import get_user_model

    bia = get_user_model().objects.get(email="bia@acme.example")
    assert pipe_access(user=bia, pipe=world.pipe).role == PipeRole.VIEWER
    assert pipe_access(user=world.admin, pipe=world.pipe).can_administer
