"""SLA marks (the beat job's work) and the monthly SLA report, with a frozen clock."""

from __future__ import annotations

import datetime as dt
import statistics
import zoneinfo
from dataclasses import dataclass, field

import pytest
from django.core import mail
from django.core.management import call_command

from pipes import hooks, services
from pipes.governance import sla_mark_late, sla_preview
from pipes.governance.sla_report import sla_report
from pipes.models import Card, CardEvent, Notification
from pipes.timeline import verify_timelines
from tests.personas import good_start_values

UTC = dt.UTC
SAO_PAULO = zoneinfo.ZoneInfo("America/Sao_Paulo")


@pytest.fixture
def announced():
    seen: list[tuple[int, str]] = []

    def receiver(sender, card_id, kind, **kwargs):
        seen.append((card_id, kind))

    hooks.card_changed.connect(receiver, weak=False)
    yield seen
    hooks.card_changed.disconnect(receiver)


def _file(world, *, by=None, **values) -> Card:
    return services.card_create(
        actor=services.Actor.for_user(by or world.requester),
        pipe=world.pipe,
        values=good_start_values(**values),
    )


def _move(world, card: Card, to: str, *, by=None) -> Card:
    card.refresh_from_db()
    actor = services.Actor.for_user(by or world.member)
    if card.phase.key == "triage" and to != "triage":
        card = services.card_update_fields(actor=actor, card=card, values={"category": "Hardware"})
    if card.phase.key == "approval" and to in ("done", "rejected"):
        card = services.card_update_fields(actor=actor, card=card, values={"po_number": "PO-1"})
    return services.card_move(actor=actor, card=card, to_phase=world.phase(to))


# ---------------------------------------------------------------- marking


def test_it_marks_a_card_late_when_it_passes_its_phase_sla_and_tells_people(
    world, clock, announced, django_capture_on_commit_callbacks
):
    card = _file(world)
    services.card_assign(actor=services.Actor.for_user(world.admin), card=card, users=[world.member])
    clock.advance(hours=23, minutes=59)
    assert sla_mark_late().late == []

    clock.advance(minutes=2)
    with django_capture_on_commit_callbacks(execute=True):
        result = sla_mark_late()

    card.refresh_from_db()
    assert result.late == [card.pk]
    assert card.late_at == card.phase_entered_at + dt.timedelta(hours=24)
    event = card.events.order_by("-seq").first()
    assert (event.kind, event.actor_kind, event.actor_label) == ("late", "system", "SLA monitor")
    assert event.payload == {"phase": "triage", "sla_hours": 24, "due": card.late_at.isoformat()}
    told = set(Notification.objects.filter(card=card).values_list("user__username", flat=True))
    assert told == {"member", "admin", "owner"}  # the assignee and the pipe's admins (owners included)
    assert sorted(m.to[0] for m in mail.outbox) == [
        "admin@example.com",
        "member@example.com",
        "owner@example.com",
    ]
    assert (
        "is late" in mail.outbox[0].subject
        and f"/pipes/{world.pipe.pk}/cards/{card.pk}/" in mail.outbox[0].body
    )
    assert (card.pk, "late") in announced
    assert list(verify_timelines([card])) == []


def test_it_marks_each_card_once(world, clock):
    card = _file(world)
    clock.advance(hours=30)
    assert sla_mark_late().late == [card.pk]
    events = CardEvent.objects.filter(card=card).count()
    notes = Notification.objects.count()

    clock.advance(minutes=1)
    again = sla_mark_late()

    assert again.late == [] and again.cleared_late == []
    assert CardEvent.objects.filter(card=card).count() == events
    assert Notification.objects.count() == notes


def test_it_recomputes_a_late_card_after_it_moves_on(world, clock):
    card = _file(world)
    clock.advance(hours=25)
    sla_mark_late()
    clock.advance(hours=1)
    _move(world, card, "approval")

    card.refresh_from_db()
    assert card.late_at is None  # the move itself clears the badge: the new phase's clock starts
    assert sla_mark_late().cleared_late == []

    clock.advance(hours=48, seconds=1)  # approval's SLA is 48 h
    marked = sla_mark_late()
    card.refresh_from_db()
    assert marked.late == [card.pk]
    assert card.late_at == card.phase_entered_at + dt.timedelta(hours=48)
    assert [e.payload["phase"] for e in card.events.filter(kind="late").order_by("seq")] == [
        "triage",
        "approval",
    ]


def test_it_clears_the_mark_when_the_sla_is_lengthened(world, clock):
    card = _file(world)
    clock.advance(hours=25)
    sla_mark_late()
    world.phase("triage").__class__.objects.filter(pipe=world.pipe, key="triage").update(sla_hours=72)

    result = sla_mark_late()

    card.refresh_from_db()
    assert result.cleared_late == [card.pk] and card.late_at is None


def test_it_marks_a_card_expired_past_the_pipe_deadline(
    world, clock, announced, django_capture_on_commit_callbacks
):
    card = _file(world)
    clock.advance(days=30, seconds=1)

    with django_capture_on_commit_callbacks(execute=True):
        result = sla_mark_late()

    card.refresh_from_db()
    assert result.expired == [card.pk]
    assert card.expired_at == card.created_at + dt.timedelta(days=30)
    assert card.events.filter(kind="expired").count() == 1
    assert (card.pk, "expired") in announced
    assert sla_mark_late().expired == []


def test_it_leaves_finished_cards_alone_and_clears_their_late_mark(world, clock):
    card = _file(world)
    clock.advance(hours=30)
    sla_mark_late()
    _move(world, card, "rejected")
    clock.advance(days=40)

    result = sla_mark_late()

    card.refresh_from_db()
    assert result.late == [] and result.expired == []
    assert card.late_at is None and card.expired_at is None
    assert card.events.filter(kind="late").count() == 1  # the fact stays on the timeline


def test_moving_an_expired_card_to_a_final_phase_clears_its_expired_mark(world, clock):
    card = _file(world)
    clock.advance(days=31)
    sla_mark_late()
    card.refresh_from_db()
    assert card.expired_at is not None and card.late_at is not None

    _move(world, card, "approval")
    card.refresh_from_db()
    assert card.late_at is None and card.expired_at is not None  # still open, still past the deadline

    _move(world, card, "done")
    card.refresh_from_db()
    assert card.late_at is None and card.expired_at is None
    assert list(verify_timelines([card])) == []


def test_it_previews_a_run_without_changing_anything(world, clock):
    card = _file(world)
    clock.advance(hours=25)

    plan = sla_preview()

    assert [(pk, phase) for pk, _since, phase in plan.late] == [(card.pk, world.phase("triage").pk)]
    card.refresh_from_db()
    assert card.late_at is None and not card.events.filter(kind="late").exists()


def test_the_mark_late_command_runs_and_dry_runs(world, clock, capsys):
    card = _file(world)
    clock.advance(hours=25)

    call_command("mark_late", "--dry-run")
    assert "dry run: 1 late" in capsys.readouterr().out
    card.refresh_from_db()
    assert card.late_at is None

    call_command("mark_late")
    assert "1 late" in capsys.readouterr().out
    card.refresh_from_db()
    assert card.late_at is not None


# ---------------------------------------------------------------- the monthly report


@dataclass
class Journey:
    """A card's planned life: created at `start`, then (hours later, phase) moves."""

    start: dt.datetime
    moves: list[tuple[float, str]] = field(default_factory=list)


SLA = {"triage": 24, "approval": 48}
FINAL = {"done", "rejected"}


def _journeys() -> list[Journey]:
    """Hand-made edge cases plus a deterministic spread, around March 2026 in São Paulo (UTC-3)."""
    t = lambda *a: dt.datetime(*a, tzinfo=UTC)  # noqa: E731
    journeys = [
        Journey(
            t(2026, 2, 27, 10), [(96, "approval"), (20, "done")]
        ),  # enters in Feb, late triage ends in Mar
        Journey(t(2026, 3, 5, 12), [(10, "approval"), (30, "done")]),  # all within SLA
        Journey(t(2026, 3, 8, 9), [(30, "approval"), (50, "triage"), (5, "approval"), (12, "rejected")]),
        Journey(t(2026, 3, 10, 8), [(2, "approval")]),  # open in approval past its SLA at month end
        Journey(t(2026, 3, 20, 8), []),  # stuck in triage
        Journey(t(2026, 3, 29, 12), [(1, "approval"), (70, "done")]),  # approval ends in April
        Journey(
            t(2026, 2, 1, 12), [(20, "approval"), (24 * 40, "done")]
        ),  # finishes past the 30-day deadline
        Journey(t(2026, 3, 31, 20), [(5, "approval")]),  # leaves 1 Apr 01:00 UTC = 31 Mar 22:00 local: March
        Journey(
            t(2026, 2, 28, 20), [(6, "approval")]
        ),  # leaves 1 Mar 02:00 UTC = 28 Feb 23:00 local: February
        Journey(t(2026, 3, 31, 23), [(7, "approval")]),  # leaves 1 Apr 06:00 UTC = 1 Apr 03:00 local: April
        Journey(
            t(2026, 2, 20, 12), [(166, "approval"), (45, "done")]
        ),  # late in triage in February only, finishes in March: missed an SLA on its way
    ]
    hours = [3, 7, 12, 19, 23, 26, 31, 40, 47, 52, 60, 75, 5, 9, 14]
    for i in range(15):
        start = t(2026, 3, 1 + i, 14) + dt.timedelta(minutes=17 * i)
        outcome = "done" if i % 4 else "rejected"
        journeys.append(Journey(start, [(hours[i], "approval"), (hours[(i * 7) % 15] * 1.5, outcome)]))
    return journeys


def _seed(world, clock, journeys: list[Journey]) -> None:
    for journey in journeys:
        clock.set(journey.start)
        card = _file(world)
        for after, phase in journey.moves:
            clock.advance(hours=after)
            card = _move(world, card, phase)


def _expected(journeys: list[Journey], start: dt.datetime, end: dt.datetime, as_of: dt.datetime) -> dict:
    """The report's figures computed from the plan itself, not from the database."""
    stays: list[tuple[str, dt.datetime, dt.datetime | None]] = []
    finished: list[tuple[dt.datetime, dt.datetime, bool]] = []
    card_of: dict[tuple[str, dt.datetime], int] = {}  # cards are filed in journey order
    for number, journey in enumerate(journeys):
        phase, entered, moment, ok = "triage", journey.start, journey.start, True
        for after, target in journey.moves:
            moment = moment + dt.timedelta(hours=after)
            stays.append((phase, entered, moment))
            card_of[phase, entered] = number
            ok = ok and (moment - entered) <= dt.timedelta(hours=SLA[phase])
            phase, entered = target, moment
        if phase in FINAL:
            finished.append((journey.start, moment, ok))
        else:
            stays.append((phase, entered, None))
            card_of[phase, entered] = number
    figures: dict = {"late_list": []}
    for phase, sla in SLA.items():
        closed = [
            (entered, left) for p, entered, left in stays if p == phase and left and start <= left < end
        ]
        spans = sorted((left - entered).total_seconds() for entered, left in closed)
        open_over = [
            (entered, left)
            for p, entered, left in stays
            if p == phase
            and entered < as_of
            and (left is None or left >= as_of)
            and entered + dt.timedelta(hours=sla) < as_of
        ]
        # A late stay is listed once: closed late in the month, else open past its SLA at as_of.
        late = [
            (phase, entered, (left - entered).total_seconds() - sla * 3600)
            for entered, left in closed
            if left - entered > dt.timedelta(hours=sla)
        ] + [
            (phase, entered, (as_of - entered).total_seconds() - sla * 3600)
            for entered, left in open_over
            if not (left and start <= left < end)
        ]
        figures["late_list"] += late
        figures[phase] = {
            "stays": len(spans),
            "met": sum(1 for s in spans if s <= sla * 3600),
            "median": statistics.median(spans),
            "p90": statistics.quantiles(spans, n=10, method="inclusive")[8],
            "late": len(late),
            "open_over": len(open_over),
        }
    # Most over first; ties by card, then entry time.
    figures["late_list"].sort(key=lambda stay: (-stay[2], card_of[stay[0], stay[1]], stay[1]))
    done = [(created, ended, ok) for created, ended, ok in finished if start <= ended < end]
    totals = [(ended - created).total_seconds() for created, ended, _ok in done]
    figures["e2e"] = {
        "finished": len(done),
        "within": sum(1 for t in totals if t <= 30 * 86400),
        "every": sum(1 for *_x, ok in done if ok),
        "median": statistics.median(totals),
        "p90": statistics.quantiles(totals, n=10, method="inclusive")[8],
    }
    return figures


def _assert_figures(report, expected: dict) -> None:
    by_key = {f.phase.key: f for f in report.phases}
    assert set(by_key) == {"triage", "approval"}  # final phases have no stays to time
    for key in ("triage", "approval"):
        got, want = by_key[key], expected[key]
        assert (got.stays, got.met, got.open_over) == (want["stays"], want["met"], want["open_over"]), key
        assert got.median == pytest.approx(want["median"], abs=1e-3), key
        assert got.p90 == pytest.approx(want["p90"], abs=1e-3), key
    e2e = report.end_to_end
    want = expected["e2e"]
    assert (e2e.finished, e2e.within_deadline, e2e.every_phase_met) == (
        want["finished"],
        want["within"],
        want["every"],
    )
    assert e2e.median == pytest.approx(want["median"], abs=1e-3)
    assert e2e.p90 == pytest.approx(want["p90"], abs=1e-3)
    assert report.late_total == expected["triage"]["late"] + expected["approval"]["late"]
    assert [(s.phase.key, s.entered_at) for s in report.late] == [
        (p, e) for p, e, _o in expected["late_list"]
    ]
    assert [s.over for s in report.late] == pytest.approx([o for *_pe, o in expected["late_list"]], abs=1e-3)
    assert all(s.spent - s.over == s.phase.sla_hours * 3600 for s in report.late)


def test_the_report_figures_match_figures_computed_from_the_seeded_month(world, clock):
    journeys = _journeys()
    _seed(world, clock, journeys)
    start = dt.datetime(2026, 3, 1, tzinfo=SAO_PAULO)
    end = dt.datetime(2026, 4, 1, tzinfo=SAO_PAULO)
    expected = _expected(journeys, start, end, as_of=end)

    report = sla_report(pipe=world.pipe, month="2026-03", now=dt.datetime(2026, 5, 1, tzinfo=UTC))

    assert (report.start, report.end, report.as_of) == (start, end, end)
    assert {s.is_open for s in report.late} == {True, False}  # closed late and still open past SLA
    _assert_figures(report, expected)


def test_the_figures_as_of_a_day_in_the_month_count_a_stay_late_once(world, clock):
    """as_of before some recorded ends: a stay closed in the month may also be open past SLA at as_of."""
    journeys = _journeys()
    _seed(world, clock, journeys)
    now = dt.datetime(2026, 3, 10, 12, tzinfo=UTC)
    report = sla_report(pipe=world.pipe, month="2026-03", now=now)

    expected = _expected(journeys, report.start, report.end, as_of=now)
    assert report.as_of == now
    _assert_figures(report, expected)


def test_a_month_to_date_report_counts_open_stays_as_of_now(world, clock):
    journeys = [Journey(dt.datetime(2026, 3, 2, 12, tzinfo=UTC), [])]
    _seed(world, clock, journeys)
    now = dt.datetime(2026, 3, 3, 13, tzinfo=UTC)  # 25 h in triage

    report = sla_report(pipe=world.pipe, month="2026-03", now=now)

    assert report.as_of == now
    assert {f.phase.key: f.open_over for f in report.phases} == {"triage": 1, "approval": 0}
    assert [(s.phase.key, s.is_open, round(s.over)) for s in report.late] == [("triage", True, 3600)]


@pytest.mark.postgres
def test_it_computes_the_report_with_sql_aggregates_on_postgresql(world, clock):
    journeys = _journeys()
    _seed(world, clock, journeys)

    report = sla_report(pipe=world.pipe, month="2026-03", now=dt.datetime(2026, 5, 1, tzinfo=UTC))

    assert report.engine == "postgresql"
    _assert_figures(report, _expected(journeys, report.start, report.end, report.as_of))
