"""The Django admin designs processes, and respects pipe roles."""

from pipes.models import Card, Phase, Pipe
from pipes.services import Actor, card_create
from tests.personas import PASSWORD, build_purchase_pipe, good_start_values


def signed_in(client, user):
    assert client.login(username=user.username, password=PASSWORD)
    return client


def test_it_lists_only_the_pipes_a_person_administers(world, client):
    hidden = build_purchase_pipe(world.org, slug="hidden", code="HD")
    response = signed_in(client, world.admin).get("/admin/pipes/pipe/")
    assert response.status_code == 200
    assert f"/admin/pipes/pipe/{world.pipe.pk}/change/" in response.text
    assert f"/admin/pipes/pipe/{hidden.pk}/change/" not in response.text
    assert client.get(f"/admin/pipes/pipe/{hidden.pk}/change/").status_code in (302, 403, 404)


def test_it_lets_a_pipe_admin_rename_a_phase_and_audits_it(world, client):
    triage = world.phase("triage")
    signed_in(client, world.admin)
    page = client.get(f"/admin/pipes/phase/{triage.pk}/change/")
    assert page.status_code == 200
    data = {
        "pipe": world.pipe.pk,
        "name": "Screening",
        "key": "triage",
        "position": 1,
        "description": "",
        "sla_hours": 12,
        "requester_status": "Received",
        "allowed_next": [world.phase("approval").pk],
    }
    response = client.post(f"/admin/pipes/phase/{triage.pk}/change/", data)
    assert response.status_code == 302, response.text[:2000]
    triage.refresh_from_db()
    assert triage.name == "Screening" and triage.sla_hours == 12
    from auditlog.models import LogEntry

    entry = LogEntry.objects.get_for_object(triage).latest("timestamp")
    assert entry.actor == world.admin and "Screening" in str(entry.changes)


def test_it_keeps_members_out_of_the_designer(world, client):
    world.member.is_staff = True
    world.member.save()
    signed_in(client, world.member)
    assert f"/admin/pipes/pipe/{world.pipe.pk}/change/" not in client.get("/admin/pipes/pipe/").text
    assert client.get(f"/admin/pipes/phase/{world.phase('triage').pk}/change/").status_code in (302, 403, 404)


def test_it_shows_cards_read_only_because_cards_change_through_the_services(world, client):
    card = card_create(actor=Actor.for_user(world.member), pipe=world.pipe, values=good_start_values())
    signed_in(client, world.admin)
    assert client.get(f"/admin/pipes/card/{card.pk}/change/").status_code == 200
    response = client.post(f"/admin/pipes/card/{card.pk}/change/", {"title": "Hacked"})
    assert response.status_code == 403
    assert Card.objects.get(pk=card.pk).title == "Laptop for Ana"
    assert Pipe.objects.count() == 1 and Phase.objects.count() == 4
