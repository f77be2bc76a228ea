"""Data-subject export and erasure: nothing of the person stays in the database or storage, and
every timeline still verifies (while a row altered in SQL still does not)."""

from __future__ import annotations

import json
import os

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command
from django.db import connection

from pipes import governance, services
from pipes.choices import EventKind, FieldType
from pipes.models import Card, CardEvent, CardFile, Field, Notification, PrivacyRequest
from pipes.timeline import verify_timelines
from tests.personas import PASSWORD, good_start_values

EMAIL = "ana.souza@example.com"
NAME = "Ana Souza Ção"
FORMER_NAME = "Ana Souza-Pereira Ção"
PHONE = "+5511987654321"
DOC_SECRET = b"ANA-DOC-SECRET-4242"
THEIRS = [EMAIL, NAME, FORMER_NAME, PHONE, DOC_SECRET.decode()]


@pytest.fixture
def pii_pipe(world, media_root):
    """The purchase pipe with a name, a phone and an ID document marked as personal data."""
    for position, (key, label, kind) in enumerate(
        [
            ("full_name", "Full name", FieldType.SHORT_TEXT),
            ("phone", "Phone", FieldType.PHONE),
            ("id_document", "ID document", FieldType.ATTACHMENT),
        ],
        start=7,
    ):
        Field.objects.create(pipe=world.pipe, key=key, label=label, type=kind, pii=True, position=position)
    return world


def _pdf(name: str, body: bytes) -> SimpleUploadedFile:
    return SimpleUploadedFile(name, b"%PDF-1.4\n" + body + b"\n%%EOF\n", content_type="application/pdf")


@pytest.fixture
def ana(pii_pipe, django_capture_on_commit_callbacks):
    """Ana's request, worked on for a while: edited, commented, attached, moved, marked late."""
    world = pii_pipe
    member = services.Actor.for_user(world.member)
    with django_capture_on_commit_callbacks(execute=True):
        card = services.card_create(
            actor=services.Actor.for_user(world.requester),
            pipe=world.pipe,
            values=good_start_values(
                item=f"Laptop for {FORMER_NAME}",
                requester_email=EMAIL,
                full_name=FORMER_NAME,
                phone="+55 11 98765-4321",
            ),
            files={
                "id_document": [_pdf("id-ana.pdf", DOC_SECRET)],
                "quote": [_pdf("quote.pdf", b"quote 100")],
            },
            requester_email=EMAIL,
        )
        card = services.card_update_fields(actor=member, card=card, values={"full_name": NAME})
        services.card_comment(actor=member, card=card, text=f"Called {NAME} at {EMAIL} about the laptop.")
        card = services.card_update_fields(actor=member, card=card, values={"category": "Hardware"})
        card = services.card_move(actor=member, card=card, to_phase=world.phase("approval"))
        Notification.objects.create(
            user=world.admin, card=card, message=f"{card.reference} {card.title} is late"
        )
    card.refresh_from_db()
    return card


@pytest.fixture
def bob(pii_pipe, django_capture_on_commit_callbacks):
    world = pii_pipe
    with django_capture_on_commit_callbacks(execute=True):
        return services.card_create(
            actor=services.Actor.for_user(world.requester),
            pipe=world.pipe,
            values=good_start_values(
                item="Desk for Bob", requester_email="bob@example.com", full_name="Bob Lee"
            ),
            files={"id_document": [_pdf("id-bob.pdf", b"BOB-DOC")]},
        )


def _forms(needle: str) -> set[str]:
    """How a value can sit in a column: as is, JSON-escaped, or JSON-escaped inside JSON (auditlog)."""
    once = json.dumps(needle)[1:-1]
    return {needle.lower(), once.lower(), json.dumps(once)[1:-1].lower()}


def _database_hits(needles: list[str]) -> list[str]:
    """Every table and column of the database whose text holds any of `needles`."""
    hits = []
    quote = connection.ops.quote_name
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names(cursor):
            for column in connection.introspection.get_table_description(cursor, table):
                cursor.execute(f"SELECT {quote(column.name)} FROM {quote(table)}")
                for (value,) in cursor.fetchall():
                    if value is None:
                        continue
                    if isinstance(value, bytes | memoryview):
                        text = bytes(value).decode("utf-8", "replace")
                    elif isinstance(value, dict | list):
                        text = json.dumps(value, ensure_ascii=False) + json.dumps(value)
                    else:
                        text = str(value)
                    text = text.lower()
                    for needle in needles:
                        if any(form in text for form in _forms(needle)):
                            hits.append(f"{table}.{column.name}: {needle}")
    return hits


def _storage_hits(root, needles: list[bytes]) -> list[str]:
    hits = []
    for folder, _dirs, files in os.walk(root):
        for name in files:
            with open(os.path.join(folder, name), "rb") as handle:
                content = handle.read()
            hits += [f"{name}: {n!r}" for n in needles if n in content]
    return hits


def _login(client, user):
    assert client.login(username=user.username, password=PASSWORD)
    return client


def test_the_fixture_really_holds_ana_everywhere(ana, bob, media_root):
    hits = _database_hits(THEIRS)
    tables = {hit.split(".")[0] for hit in hits}
    assert {"pipes_card", "pipes_cardevent", "auditlog_logentry", "pipes_notification"} <= tables
    assert _storage_hits(media_root, [DOC_SECRET])


def test_it_exports_everything_held_about_the_person(client, ana, bob):
    _login(client, ana.pipe.organization.memberships.get(role="owner").user)

    response = client.post(
        f"/governance/orgs/{ana.pipe.organization.slug}/privacy/",
        {"identifier": EMAIL.upper(), "action": "export"},
    )

    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert "attachment" in response["Content-Disposition"]
    data = json.loads(response.content)
    [card] = data["cards"]
    assert card["reference"] == ana.reference
    assert card["values"]["full_name"] == {"label": "Full name", "pii": True, "value": NAME}
    assert card["values"]["phone"]["value"] == PHONE
    assert {f["name"] for f in card["files"]} == {"id-ana.pdf", "quote.pdf"}
    kinds = [e["kind"] for e in card["timeline"]]
    assert kinds[:3] == [EventKind.CREATED, EventKind.FIELDS_CHANGED, EventKind.COMMENTED]
    assert any(NAME in json.dumps(e["payload"], ensure_ascii=False) for e in card["timeline"])
    assert card["audit_log"]
    assert PrivacyRequest.objects.get(kind="export").subject_digest == governance.subject_digest(EMAIL)
    assert EMAIL not in json.dumps(list(PrivacyRequest.objects.values()), default=str)


def test_it_exports_what_people_were_told_about_the_person_s_card(ana, bob):
    data, _request = governance.subject_export(
        user=_admin_of(ana), organization=ana.pipe.organization, identifier=EMAIL
    )
    [card] = data["cards"]
    assert [n["message"] for n in card["notifications"]] == [f"{ana.reference} {ana.title} is late"]
    held = set(Notification.objects.filter(card=ana).values_list("message", flat=True))
    assert held == {n["message"] for n in card["notifications"]}


def test_it_finds_the_person_by_another_identifying_field(ana, bob, pii_pipe):
    by_phone = governance.subject_cards(pipes=[ana.pipe], identifier="+55 11 98765-4321", field_key="phone")
    by_name = governance.subject_cards(
        pipes=[ana.pipe], identifier="ana SOUZA Ção"
    )  # SQLite folds only ASCII case

    assert list(by_phone) == [ana]
    assert list(by_name) == [ana]


def test_it_erases_the_person_everywhere_and_the_timelines_still_verify(
    client, ana, bob, media_root, django_capture_on_commit_callbacks, capsys
):
    admin = _admin_of(ana)
    _login(client, admin)
    bob_values = dict(bob.values)

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            f"/governance/orgs/{ana.pipe.organization.slug}/privacy/",
            {"identifier": EMAIL, "confirm": EMAIL, "understood": "1", "action": "erase"},
        )

    assert response.status_code == 200
    assert "still verif" in response.content.decode()
    assert _database_hits(THEIRS) == []
    assert _storage_hits(media_root, [DOC_SECRET]) == []
    assert _storage_hits(media_root, [b"quote 100"])  # not personal data: the quote stays

    ana.refresh_from_db()
    assert ana.values["full_name"] == services.ERASED and ana.values["phone"] == services.ERASED
    assert ana.values["requester_email"] == services.ERASED and ana.requester_email == ""
    assert ana.title == f"Laptop for {services.ERASED}"
    assert list(CardFile.objects.filter(card=ana).values_list("name", flat=True)) == ["quote.pdf"]
    events = list(ana.events.order_by("seq"))
    erased = events[-1]
    assert (erased.kind, erased.actor_label) == (EventKind.ERASED, admin.get_full_name() or admin.username)
    assert (
        erased.payload["fields"] == sorted(erased.payload["fields"])
        and "full_name" in erased.payload["fields"]
    )
    assert erased.payload["events"] and all(events[s - 1].payload is None for s in erased.payload["events"])
    assert all(events[s - 1].payload_digest for s in erased.payload["events"])  # provable: digests stay

    bob.refresh_from_db()
    assert bob.values == bob_values and bob.files.count() == 1
    assert list(verify_timelines(Card.objects.all())) == []
    call_command("verify_timeline")
    assert "no breaks" in capsys.readouterr().out


def _admin_of(card: Card):
    from pipes.roles import pipe_users_with

    return pipe_users_with(card.pipe, "administer_pipe").get(username="admin")


def test_a_row_tampered_with_in_sql_still_fails_after_an_erasure(ana, bob):
    governance.subject_erase(user=_admin_of(ana), organization=ana.pipe.organization, identifier=EMAIL)
    assert list(verify_timelines(Card.objects.all())) == []
    erased_payload = ana.events.filter(payload__isnull=True).order_by("seq").first()
    table = connection.ops.quote_name(CardEvent._meta.db_table)

    with connection.cursor() as cursor:  # slip a value back into an erased event
        cursor.execute(
            f"UPDATE {table} SET payload = %s WHERE id = %s", ['{"text": "guess"}', erased_payload.pk]
        )
    breaks = list(verify_timelines(Card.objects.filter(pk=ana.pk)))
    assert [(b.seq, b.problem) for b in breaks] == [
        (erased_payload.seq, "content present without its salt (altered)")
    ]
    with pytest.raises(CommandError):
        call_command("verify_timeline", "--card", str(ana.pk))

    with connection.cursor() as cursor:  # or rewrite a kept event's reason
        cursor.execute(f"UPDATE {table} SET payload = NULL WHERE id = %s", [erased_payload.pk])
        cursor.execute(
            f"UPDATE {table} SET reason = 'nothing happened' WHERE card_id = %s AND kind = 'erased'", [ana.pk]
        )
    assert list(verify_timelines(Card.objects.filter(pk=ana.pk)))
    assert list(verify_timelines(Card.objects.filter(pk=bob.pk))) == []


def test_a_dry_run_changes_nothing(ana, bob, media_root):
    before = list(CardEvent.objects.order_by("pk").values_list("pk", "payload_salt"))

    report = governance.subject_erase(
        user=_admin_of(ana), organization=ana.pipe.organization, identifier=EMAIL, dry_run=True
    )

    assert report.dry_run and [c.reference for c in report.cards] == [ana.reference]
    assert set(report.cards[0].fields) >= {"full_name", "phone", "requester_email", "id_document", "item"}
    assert report.cards[0].files == ["id-ana.pdf"] and report.cards[0].log_entries > 0
    assert list(CardEvent.objects.order_by("pk").values_list("pk", "payload_salt")) == before
    assert not PrivacyRequest.objects.exists()
    assert _storage_hits(media_root, [DOC_SECRET])
    ana.refresh_from_db()
    assert ana.values["full_name"] == NAME


def test_the_page_previews_and_asks_for_confirmation(client, ana, bob):
    _login(client, _admin_of(ana))
    url = f"/governance/orgs/{ana.pipe.organization.slug}/privacy/"

    preview = client.post(url, {"identifier": EMAIL, "action": "preview"})
    unconfirmed = client.post(url, {"identifier": EMAIL, "confirm": "someone@else", "action": "erase"})

    assert preview.status_code == 200 and ana.reference in preview.content.decode()
    assert "Erase from 1 card" in preview.content.decode()
    assert unconfirmed.status_code == 422
    ana.refresh_from_db()
    assert ana.values["full_name"] == NAME


@pytest.mark.parametrize(
    "who,status", [("member", 403), ("viewer", 403), ("requester", 403), ("outsider", 404)]
)
def test_only_pipe_admins_may_export_or_erase(client, ana, who, status):
    from django.contrib.auth import get_user_model

    _login(client, get_user_model().objects.get(username=who))

    response = client.post(
        f"/governance/orgs/{ana.pipe.organization.slug}/privacy/",
        {"identifier": EMAIL, "confirm": EMAIL, "understood": "1", "action": "erase"},
    )

    assert response.status_code == status
    ana.refresh_from_db()
    assert ana.values["full_name"] == NAME
    with pytest.raises(services.CardPermissionError):
        services.card_erase_personal_data(
            actor=services.Actor.for_user(get_user_model().objects.get(username=who)),
            card=ana,
            identifiers=[EMAIL],
        )


def test_the_erase_person_command_exports_then_erases(ana, bob, tmp_path, capsys):
    target = tmp_path / "ana.json"

    call_command(
        "erase_person", EMAIL, "--org", "acme", "--as", "admin", "--export", str(target), "--dry-run"
    )
    assert "would be erased" in capsys.readouterr().out
    assert json.loads(target.read_text())["cards"][0]["values"]["full_name"]["value"] == NAME

    call_command("erase_person", EMAIL, "--org", "acme", "--as", "admin")
    assert "their timelines verify" in capsys.readouterr().out
    ana.refresh_from_db()
    assert ana.values["full_name"] == services.ERASED


def test_the_card_says_a_typed_value_was_erased_rather_than_empty(client, ana):
    from django.urls import reverse

    world_pipe = ana.pipe
    Field.objects.create(
        pipe=world_pipe, key="birth_date", label="Birth date", type=FieldType.DATE, pii=True, position=20
    )
    admin = _admin_of(ana)
    ana = services.card_update_fields(
        actor=services.Actor.for_user(admin),
        card=Card.objects.get(pk=ana.pk),
        values={"birth_date": "1990-04-02"},
    )

    governance.subject_erase(user=admin, organization=world_pipe.organization, identifier=EMAIL)

    ana.refresh_from_db()
    assert "birth_date" not in ana.values  # a date cannot hold the marker: the value is removed
    panel = _login(client, admin).get(reverse("card_detail", args=[world_pipe.pk, ana.pk])).content.decode()
    row = panel.split('id="field-birth_date"', 1)[1].split("</div>\n</div>", 1)[0]
    assert "Erased (personal data)" in row and "1990" not in panel
