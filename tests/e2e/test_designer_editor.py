"""The phases and fields editor in a real Chromium, as a pipe admin who does not own the organization:
add a phase and set it up, rename it, move it with the keyboard, add a required amount and a
conditional required field built from dropdowns, and see the start-form preview follow, all without
reloading the page. The test counts page loads, native form submits and HTMX requests."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from pipes.models import Field, Phase

pytestmark = pytest.mark.e2e

COUNTERS = """
window.__noReload = 1;
window.__submits = 0;
window.__htmx = 0;
document.addEventListener("submit", function () { window.__submits += 1; }, true);
window.__settled = 0;
document.body.addEventListener("htmx:beforeRequest", function () { window.__htmx += 1; });
document.body.addEventListener("htmx:afterSettle", function () { window.__settled += 1; });
"""


def _redrawn(page, action):
    """Do `action` (a change a dropdown answers by redrawing its rule) and wait for the new rule."""
    before = page.evaluate("window.__settled")
    action()
    page.wait_for_function("(n) => window.__settled > n", arg=before)


def _wait_for(predicate, page, timeout_ms=5000):
    """Poll the database until `predicate()` holds (the page's request may still be committing)."""
    waited = 0
    while not predicate():
        if waited >= timeout_ms:
            raise AssertionError("the change never reached the database")
        page.wait_for_timeout(100)
        waited += 100


@pytest.mark.django_db(transaction=True)
def test_a_pipe_admin_builds_phases_and_a_conditional_field_without_a_reload(login, live_server, world):
    assert not world.org.memberships.filter(
        user=world.admin, role="owner"
    ).exists()  # a pipe admin, not an owner
    page = login(world.admin)
    loads = []
    page.on("load", lambda p: loads.append(p.url))
    page.goto(f"{live_server.url}/design/pipes/{world.pipe.pk}/")
    expect(page.locator("#start-preview")).to_be_visible()
    page.evaluate(COUNTERS)
    loads.clear()

    # A new phase, named in the "Add a phase" column: it goes before the final phases.
    page.fill("#new-phase-name", "Legal review")
    page.press("#new-phase-name", "Enter")
    expect(page.locator("#phase-editor .pane-title")).to_have_text("Legal review")
    legal = Phase.objects.get(pipe=world.pipe, key="legal_review")
    assert list(world.pipe.phases.order_by("position").values_list("key", flat=True)) == [
        "triage",
        "approval",
        "legal_review",
        "done",
        "rejected",
    ]

    # Its settings: SLA, what requesters read, where cards may go next, a WIP limit that blocks.
    page.wait_for_load_state("networkidle")  # the preview the add asked for has come back
    page.fill("#phase-sla", "8")
    page.fill("#phase-status", "Legal check")
    page.locator("#phase-next").get_by_label("Purchased").check()
    page.fill("#phase-wip", "3")
    page.check("#phase-wip-blocks")
    page.click("#phase-save")
    expect(page.locator("#phase-saved")).to_be_visible()
    legal.refresh_from_db()
    assert (legal.sla_hours, legal.requester_status, legal.wip_limit, legal.wip_blocks) == (
        8,
        "Legal check",
        3,
        True,
    )
    assert list(legal.allowed_next.values_list("key", flat=True)) == ["done"]
    expect(page.locator(f"#design-phase-{legal.pk}")).to_contain_text("“Legal check”")

    # A refusal stays beside its input: a blocking WIP limit without a limit.
    page.fill("#phase-wip", "")
    page.click("#phase-save")
    expect(page.locator("#phase-wip-blocks-error")).to_be_visible()
    legal.refresh_from_db()
    assert legal.wip_limit == 3

    # Renamed from its column's title.
    page.fill(f"#rename-{legal.pk}", "Legal")
    page.press(f"#rename-{legal.pk}", "Enter")
    _wait_for(lambda: Phase.objects.get(pk=legal.pk).name == "Legal", page)

    # Moved one place left with the keyboard, on its handle.
    page.wait_for_load_state("networkidle")  # no late swap takes the focus from the handle
    page.focus(f"#phase-handle-{legal.pk}")
    page.keyboard.press("ArrowLeft")
    _wait_for(
        lambda: (
            list(world.pipe.phases.order_by("position").values_list("key", flat=True))[1] == "legal_review"
        ),
        page,
    )
    expect(page.locator("#design-phases > .design-col").nth(1)).to_have_attribute(
        "id", f"design-phase-{legal.pk}"
    )
    expect(page.locator(f"#phase-handle-{legal.pk}")).to_be_focused()

    # A required amount on the start form, from the palette.
    page.click("#add-field-start")
    page.locator("#field-palette button[data-type=currency]").click()
    expect(page.locator("#field-editor")).to_be_visible()
    page.fill("#field-label", "Contract value")
    page.check("#field-required")
    page.click("#field-save")
    expect(page.locator("#field-saved")).to_be_visible()
    value = Field.objects.get(pipe=world.pipe, label="Contract value")
    assert value.required and value.phase_id is None and value.type == "currency"

    # A field shown and required only when the amount is above 5,000: built with dropdowns.
    page.click("#add-field-start")
    page.locator("#field-palette button[data-type=long_text]").click()
    expect(page.locator("#field-label")).to_have_value("Long text")
    page.fill("#field-label", "Why so expensive?")
    page.check("#field-required")
    _redrawn(page, lambda: page.click("#cond-add"))
    # Each dropdown redraws its rule for what it chose (the operators of a currency, a value input).
    _redrawn(page, lambda: page.locator("#cond-0-field").select_option(label="Contract value"))
    _redrawn(page, lambda: page.locator("#cond-0-op").select_option("gt"))
    page.fill("#cond-0-value", "5000")
    page.click("#field-save")
    expect(page.locator("#field-saved")).to_be_visible()
    why = Field.objects.get(pipe=world.pipe, label="Why so expensive?")
    assert why.required and why.condition == {"field": value.key, "op": "gt", "value": 5000}

    # The preview of the start form shows both, the second with the rule that makes it appear.
    page.locator("#field-editor .pane-close").click()
    preview = page.locator("#start-preview")
    expect(preview).to_contain_text("Contract value")
    expect(preview.locator(f"#preview-item-{why.key}")).to_contain_text(
        "Appears when “Contract value” is more than 5000"
    )

    # Moved up with the keyboard while the preview is open: the preview follows (designChanged).
    order = f"#preview-item-{value.key} ~ #preview-item-{why.key}"
    expect(page.locator(order)).to_have_count(1)
    page.wait_for_load_state("networkidle")  # the board and the preview have settled
    page.focus(f"#field-handle-{why.pk}")
    expect(page.locator(f"#field-handle-{why.pk}")).to_be_focused()  # no late swap took it away
    page.keyboard.press("ArrowUp")
    # The move's request, then the preview's: on a loaded machine (the suite's other workers) the two
    # round trips can take longer than an expectation's default 5 s.
    _wait_for(
        lambda: Field.objects.get(pk=why.pk).position < Field.objects.get(pk=value.pk).position,
        page,
        timeout_ms=15_000,
    )
    expect(page.locator(f"#preview-item-{why.key} ~ #preview-item-{value.key}")).to_have_count(
        1, timeout=15_000
    )
    why.refresh_from_db()
    value.refresh_from_db()
    assert why.position < value.position
    expect(page.locator(f"#field-handle-{why.pk}")).to_be_focused()

    # Changes not saved yet are not lost to a click elsewhere without asking.
    page.click(f"#field-open-{why.pk}")
    page.fill("#field-label", "Why so much?")
    asked = []
    page.once("dialog", lambda dialog: (asked.append(dialog.message), dialog.dismiss()))
    page.click(f"#field-open-{value.pk}")
    page.wait_for_timeout(300)
    assert asked and "not saved" in asked[0]
    expect(page.locator("#field-label")).to_have_value("Why so much?")

    # No reload, no native submit: every change was an HTMX request.
    assert page.evaluate("window.__noReload") == 1
    assert loads == []
    submits, requests = page.evaluate("[window.__submits, window.__htmx]")
    # A native submit would have loaded a page; each submit event was taken by HTMX instead.
    print(
        f"\nDESIGNER E2E: {len(loads)} page loads, {submits} form submits (all sent by HTMX), {requests} HTMX requests"
    )
    assert requests >= 12


@pytest.mark.django_db(transaction=True)
def test_a_pipe_admin_reorders_phases_and_fields_by_drag_and_drop(login, live_server, world):
    page = login(world.admin)
    page.goto(f"{live_server.url}/design/pipes/{world.pipe.pk}/")
    triage, approval = world.phase("triage"), world.phase("approval")

    page.locator(f"#phase-handle-{approval.pk}").drag_to(page.locator(f"#design-phase-{triage.pk} .col-head"))
    _wait_for(
        lambda: (
            list(world.pipe.phases.order_by("position").values_list("key", flat=True))[:2]
            == ["approval", "triage"]
        ),
        page,
    )
    expect(page.locator("#design-phases > .design-col").first).to_have_attribute(
        "id", f"design-phase-{approval.pk}"
    )

    category, cost_center = (world.pipe.fields.get(key=k) for k in ("category", "cost_center"))
    page.wait_for_load_state("networkidle")  # no late swap of the phase move replaces the field mid-drag
    page.locator(f"#field-handle-{cost_center.pk}").drag_to(page.locator(f"#design-field-{category.pk}"))
    _wait_for(
        lambda: (
            world.pipe.fields.get(key="cost_center").position < world.pipe.fields.get(key="category").position
        ),
        page,
    )
    # An option moved up with Alt+Up in its input, then saved.
    page.click(f"#field-open-{category.pk}")
    expect(page.locator("#field-editor .pane-title")).to_be_focused()  # the editor has settled
    page.focus("#option-2")
    page.keyboard.press("Alt+ArrowUp")
    page.click("#field-save")
    expect(page.locator("#field-saved")).to_be_visible()
    category.refresh_from_db()
    assert category.options == ["Software", "Hardware", "Services"]
