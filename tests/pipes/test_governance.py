"""Governance pages through their URLs: who may open them, the audit trail, the SLA report page
and its CSV, retention with its dry run."""

from __future__ import annotations

import csv
import datetime as dt
import io

import pytest
from auditlog.context import set_actor
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.utils import timezone

from pipes import governance, services
from pipes.choices import EventKind
from pipes.governance import audit
from pipes.models import Card, Phase, PipePolicy, PrivacyRequest
from pipes.timeline import verify_timelines
from tests.personas import PASSWORD, good_start_values

PEOPLE = ("owner", "admin", "member", "reviewer", "requester", "viewer", "outsider")


def _user(name: str):
    return get_user_model().objects.get(username=name)


def _login(client, name: str):
    assert client.login(username=name, password=PASSWORD)
    return client


def _card(world, **values) -> Card:
    return services.card_create(
        actor=services.Actor.for_user(world.requester), pipe=world.pipe, values=good_start_values(**values)
    )


def _urls(world, card: Card) -> dict[str, str]:
    p = world.pipe.pk
    return {
        "index": "/governance/",
        "sla": f"/governance/pipes/{p}/sla/",
        "sla_csv": f"/governance/pipes/{p}/sla/?export=summary",
        "pipe_audit": f"/governance/pipes/{p}/audit/",
        "pipe_audit_csv": f"/governance/pipes/{p}/audit/?export=csv",
        "card_audit": f"/governance/cards/{card.pk}/audit/",
        "retention": f"/governance/pipes/{p}/retention/",
        "org_audit": "/governance/orgs/acme/audit/",
        "privacy": "/governance/orgs/acme/privacy/",
    }


# Who gets what: pipe pages are for pipe admins and owners; the organization's audit trail for owners.
EXPECTED = {
    "index": {"owner": 200, "admin": 200, "outsider": 200, "*": 403},  # the outsider owns "Other Co"
    "sla": {"owner": 200, "admin": 200, "outsider": 404, "*": 403},
    "sla_csv": {"owner": 200, "admin": 200, "outsider": 404, "*": 403},
    "pipe_audit": {"owner": 200, "admin": 200, "outsider": 404, "*": 403},
    "pipe_audit_csv": {"owner": 200, "admin": 200, "outsider": 404, "*": 403},
    "card_audit": {"owner": 200, "admin": 200, "outsider": 404, "*": 403},
    "retention": {"owner": 200, "admin": 200, "outsider": 404, "*": 403},
    "org_audit": {"owner": 200, "outsider": 404, "*": 403},
    "privacy": {"owner": 200, "admin": 200, "outsider": 404, "*": 403},
}


@pytest.mark.parametrize("who", PEOPLE)
def test_it_opens_governance_pages_only_to_admins_and_owners(client, world, who):
    card = _card(world)
    _login(client, who)
    got = {}
    for name, url in _urls(world, card).items():
        got[name] = client.get(url).status_code
    want = {name: rules.get(who, rules["*"]) for name, rules in EXPECTED.items()}
    assert got == want


def test_it_sends_anonymous_people_to_sign_in(client, world):
    card = _card(world)
    for url in _urls(world, card).values():
        response = client.get(url)
        assert response.status_code == 302 and "/accounts/login/" in response["Location"]


def test_posts_are_refused_to_non_admins(client, world):
    _login(client, "member")
    url = f"/governance/pipes/{world.pipe.pk}/retention/"

    response = client.post(url, {"action": "save", "retention_days": "1"})

    assert response.status_code == 403
    assert not PipePolicy.objects.exists()


# ---------------------------------------------------------------- audit trail


@pytest.fixture
def history(world):
    """A card worked by a person and marked by the system, and a design change by the admin."""
    card = _card(world)
    member = services.Actor.for_user(world.member)
    card = services.card_update_fields(actor=member, card=card, values={"category": "Software"})
    services.card_comment(actor=member, card=card, text="Asked for a second quote.")
    services.card_mark_overdue(
        card_id=card.pk,
        kind="late",
        since=timezone.now(),
        phase_id=card.phase_id,
        payload={"phase": "triage", "sla_hours": 24},
        actor=services.Actor.system("SLA monitor"),
    )
    with set_actor(world.admin):
        triage = world.phase("triage")
        triage.sla_hours = 12
        triage.save()
        gone = Phase.objects.create(pipe=world.pipe, name="Legal check", key="legal", position=9)
        gone.delete()
    return card


def test_the_card_trail_lists_who_changed_what(client, world, history):
    _login(client, "admin")

    page = client.get(f"/governance/cards/{history.pk}/audit/").content.decode()

    assert "Member" in page and "SLA monitor" in page
    assert "Category: — → Software" in page
    assert "Asked for a second quote." in page
    assert "Passed the 24 h SLA of Triage." in page
    assert "Legal check" not in page  # the design belongs to the pipe's trail


def test_the_pipe_trail_shows_design_changes_including_deleted_objects(client, world, history):
    _login(client, "admin")

    page = client.get(f"/governance/pipes/{world.pipe.pk}/audit/").content.decode()

    assert "sla_hours: 24 → 12" in page
    assert "Legal check" in page and "Deleted" in page


def test_the_trails_record_who_granted_and_took_away_access(client, world):
    from pipes.choices import OrgRole, PipeRole
    from pipes.models import Membership
    from pipes.roles import pipe_role_grant, pipe_role_revoke
    from tests.personas import make_user

    newcomer = make_user("nina", first_name="Nina", last_name="Costa")
    with set_actor(world.owner):
        pipe_role_grant(pipe=world.pipe, user=newcomer, role=PipeRole.VIEWER)
        pipe_role_revoke(pipe=world.pipe, user=newcomer)
        membership = Membership.objects.get(organization=world.org, user=newcomer)
        membership.role = OrgRole.OWNER
        membership.save()
    _login(client, "owner")

    pipe_trail = client.get(f"/governance/pipes/{world.pipe.pk}/audit/", {"actor": "user"}).content.decode()
    org_trail = client.get("/governance/orgs/acme/audit/", {"actor": "user"}).content.decode()

    assert "access: — → Nina Costa: view_pipe" in pipe_trail
    assert "access: Nina Costa: view_pipe → —" in pipe_trail
    export = client.get(f"/governance/pipes/{world.pipe.pk}/audit/", {"export": "csv"})
    rows = list(csv.reader(io.StringIO(b"".join(export.streaming_content).decode("utf-8-sig"))))
    grants = [r for r in rows if "Nina Costa: view_pipe" in r[6]]
    assert len(grants) == 2 and {(r[1], r[2], r[3]) for r in grants} == {("design", "user", "Owner")}
    assert "members: — → Nina Costa (member)" in org_trail
    assert "members: Nina Costa (member) → Nina Costa (owner)" in org_trail


def test_the_trail_filters_by_actor_kind(client, world, history):
    _login(client, "owner")
    url = f"/governance/pipes/{world.pipe.pk}/audit/"

    system = client.get(url, {"actor": "system"}).content.decode()
    people = client.get(url, {"actor": "user", "source": "timeline"}).content.decode()
    agents = client.get(url, {"actor": "agent"}).content.decode()

    assert "SLA monitor" in system and "Asked for a second quote." not in system
    assert "Asked for a second quote." in people and "SLA monitor" not in people and "sla_hours" not in people
    assert "Nothing recorded for these filters." in agents


def test_the_trail_answers_htmx_with_the_results_fragment(client, world, history):
    _login(client, "admin")

    response = client.get(
        f"/governance/pipes/{world.pipe.pk}/audit/", {"actor": "user"}, HTTP_HX_REQUEST="true"
    )

    body = response.content.decode()
    assert response.status_code == 200
    assert body.lstrip().startswith('<section id="audit-results"') and "<html" not in body


def test_the_trail_exports_csv_in_the_organization_time_zone(client, world, history):
    _login(client, "admin")

    response = client.get(f"/governance/pipes/{world.pipe.pk}/audit/", {"export": "csv"})

    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode("utf-8-sig"))))
    assert response["Content-Type"].startswith("text/csv")
    assert rows[0] == ["When", "Source", "Actor kind", "Actor", "Action", "Object", "Details"]
    kinds = {(r[1], r[2]) for r in rows[1:]}
    assert {("timeline", "user"), ("timeline", "system"), ("design", "user")} <= kinds
    assert all(r[0].endswith("-03:00") for r in rows[1:])  # America/Sao_Paulo
    times = [dt.datetime.fromisoformat(r[0]) for r in rows[1:]]
    assert times == sorted(times, reverse=True)


def test_the_organization_trail_spans_its_pipes(client, world, history):
    from tests.personas import build_purchase_pipe

    other = build_purchase_pipe(world.org, slug="travel", code="TR")
    with set_actor(world.owner):
        other.name = "Travel requests"
        other.save()
    _login(client, "owner")

    page = client.get("/governance/orgs/acme/audit/").content.decode()

    assert "Travel requests" in page and history.reference in page


def test_the_rail_can_add_its_step_runs_as_a_source(world, history):
    def steps(scope, filters):
        yield audit.AuditEntry(
            at=timezone.now() + dt.timedelta(seconds=1),
            source="steps",
            actor_kind="agent",
            actor="Triage agent",
            action="Step run",
            subject=history.reference,
        )

    audit.register_audit_source("steps", "Step runs", steps)
    try:
        scope = audit.AuditScope(level="card", organization=world.org, pipes=(world.pipe,), card=history)
        entries = list(audit.audit_entries(scope=scope, filters=audit.AuditFilters()))
    finally:
        audit.SOURCES.pop("steps")

    assert entries[0].actor == "Triage agent"
    assert [e.at for e in entries] == sorted((e.at for e in entries), reverse=True)


# ---------------------------------------------------------------- SLA report page


def test_the_sla_page_shows_the_month_and_exports_csv(client, world):
    card = _card(world)
    Card.objects.filter(pk=card.pk).update(phase_entered_at=timezone.now() - dt.timedelta(hours=30))
    card.phase_entries.update(entered_at=timezone.now() - dt.timedelta(hours=30))
    _login(client, "admin")
    month = timezone.now().astimezone(dt.timezone(dt.timedelta(hours=-3))).strftime("%Y-%m")
    url = f"/governance/pipes/{world.pipe.pk}/sla/"

    page = client.get(url, {"month": month}).content.decode()
    summary = client.get(url, {"month": month, "export": "summary"})
    late = client.get(url, {"month": month, "export": "late"})
    bad = client.get(url, {"month": "March"})

    assert "Time in each phase" in page and card.reference in page and "Still open" in page
    rows = list(csv.reader(io.StringIO(summary.content.decode("utf-8-sig"))))
    assert [r[2] for r in rows[1:]] == ["Triage", "Approval", "End to end (finished cards)"]
    assert rows[1][9] == "1"  # open past SLA
    late_rows = list(csv.reader(io.StringIO(late.content.decode("utf-8-sig"))))
    assert late_rows[1][0] == card.reference and late_rows[1][5] == "still open"
    assert bad.status_code == 400 and "YYYY-MM" in bad.content.decode()


# ---------------------------------------------------------------- retention


def _finish(world, card: Card, days_ago: int) -> Card:
    member = services.Actor.for_user(world.member)
    card = services.card_update_fields(actor=member, card=card, values={"category": "Hardware"})
    card = services.card_move(actor=member, card=card, to_phase=world.phase("rejected"))
    Card.objects.filter(pk=card.pk).update(finished_at=timezone.now() - dt.timedelta(days=days_ago))
    return card


def test_retention_previews_then_anonymises_old_finished_cards(client, world, capsys):
    old = _finish(world, _card(world, requester_email="old@example.com"), days_ago=400)
    recent = _finish(world, _card(world, requester_email="recent@example.com"), days_ago=10)
    still_open = _card(world, requester_email="open@example.com")
    Card.objects.filter(pk=still_open.pk).update(created_at=timezone.now() - dt.timedelta(days=900))
    _login(client, "admin")
    url = f"/governance/pipes/{world.pipe.pk}/retention/"

    saved = client.post(url, {"action": "save", "retention_days": "365", "trace_retention_days": "30"})
    page = client.get(url).content.decode()
    call_command("retention", "--dry-run")
    dry = capsys.readouterr().out

    assert saved.status_code == 302
    assert PipePolicy.objects.get(pipe=world.pipe).retention_days == 365
    assert governance.trace_retention_cutoffs()[world.pipe.pk] < timezone.now() - dt.timedelta(days=29)
    assert old.reference in page and recent.reference not in page
    assert "would anonymise 1" in dry
    old.refresh_from_db()
    assert old.values["requester_email"] == "old@example.com"

    applied = client.post(url, {"action": "apply"})

    assert applied.status_code == 302 and "anonymised=1" in applied["Location"]
    old.refresh_from_db()
    recent.refresh_from_db()
    assert old.values["requester_email"] == services.ERASED and old.events.last().kind == EventKind.ERASED
    assert old.events.last().actor_label == "Retention policy"
    assert recent.values["requester_email"] == "recent@example.com"
    assert list(verify_timelines(Card.objects.all())) == []
    assert PrivacyRequest.objects.get(kind="retention").card_ids == [old.pk]
    assert governance.retention_apply().total == 0  # already anonymised


def test_retention_refuses_nonsense(client, world):
    _login(client, "admin")

    response = client.post(
        f"/governance/pipes/{world.pipe.pk}/retention/", {"action": "save", "retention_days": "0"}
    )

    assert response.status_code == 422 and "from 1 to 36500" in response.content.decode()


def test_the_index_leads_owners_to_the_rail_health_page_and_no_one_else(client, world):
    health = 'href="/rail/health/"'
    _login(client, "owner")
    assert health in client.get("/governance/").content.decode()
    _login(client, "admin")  # a pipe admin who owns no organization: the page would refuse them
    assert health not in client.get("/governance/").content.decode()
