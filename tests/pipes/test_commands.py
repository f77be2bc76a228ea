"""import_pipe, export_pipe and verify_timeline, run as an operator runs them."""

from __future__ import annotations

import io
import json

import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from pipes.design import definition_dump, pipe_export, process_templates
from pipes.models import CardEvent, Organization, Pipe
from pipes.services import Actor, card_comment, card_create, card_move, card_update_fields
from tests.personas import good_start_values


def run(*args) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command(*args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


@pytest.fixture
def acme(db):
    return Organization.objects.create(name="Acme", slug="acme")


# ---------------------------------------------------------------- import_pipe


def test_it_imports_a_template_and_prints_where_it_lives(acme):
    out, _err = run("import_pipe", str(process_templates()["accounts_payable"]), "--org", "acme")

    pipe = Pipe.objects.get(organization=acme, slug="accounts-payable")
    assert out.strip() == (
        f"Created pipe Invoice approval (accounts-payable, 5 phases, {pipe.fields.count()} fields) "
        f"in Acme: /pipes/{pipe.pk}/"
    )


def test_it_prints_each_problem_on_its_own_line_and_fails(acme, tmp_path):
    broken = tmp_path / "broken.yaml"
    broken.write_text(
        "name: Broken\nslug: broken\ncode: BR\nphases:\n"
        "  - key: start\n    name: Start\n    allowed_next: [nowhere]\n"
        "    fields:\n      - {key: amount, label: Amount, type: numbr}\n",
        encoding="utf-8",
    )
    err = io.StringIO()

    with pytest.raises(CommandError) as info:
        call_command("import_pipe", str(broken), "--org", "acme", stdout=io.StringIO(), stderr=err)

    assert err.getvalue().splitlines() == [
        "broken.yaml: phases[0].allowed_next[0]: unknown phase 'nowhere'",
        "broken.yaml: phases: at least one phase must be final (where finished cards rest)",
        "broken.yaml: phases[0].fields[0].type: unknown type 'numbr'",
    ]
    assert str(info.value) == "broken.yaml has 3 problem(s); nothing was imported."
    assert info.value.returncode == 1
    assert not Pipe.objects.exists()


def test_it_refuses_a_slug_the_organization_already_uses(acme):
    path = str(process_templates()["credit_analysis"])
    run("import_pipe", path, "--org", "acme")
    err = io.StringIO()

    with pytest.raises(CommandError):
        call_command("import_pipe", path, "--org", "acme", stdout=io.StringIO(), stderr=err)

    assert "slug: Acme already has a pipe with the slug 'credit-analysis'" in err.getvalue()
    assert Pipe.objects.count() == 1


def test_it_names_an_unknown_organization(db):
    with pytest.raises(CommandError, match="no organization with the slug 'nope'"):
        run("import_pipe", str(process_templates()["credit_analysis"]), "--org", "nope")


def test_it_names_a_missing_file(acme, tmp_path):
    with pytest.raises(CommandError, match="Cannot read"):
        run("import_pipe", str(tmp_path / "missing.yaml"), "--org", "acme")


# ---------------------------------------------------------------- export_pipe


def test_it_exports_by_id_and_by_slugs(world):
    expected = definition_dump(pipe_export(world.pipe))

    by_id, _ = run("export_pipe", str(world.pipe.pk))
    by_slugs, _ = run("export_pipe", "acme/purchases")

    assert by_id == by_slugs == expected
    assert by_id.startswith("name: Purchase requests\nslug: purchases\ncode: PR\n")


def test_it_exports_to_a_file_that_imports_elsewhere(world, tmp_path):
    target = tmp_path / "purchases.yaml"
    out, _ = run("export_pipe", "acme/purchases", "--output", str(target))
    assert out.strip() == f"Wrote acme/purchases to {target}."

    run("import_pipe", str(target), "--org", "other")

    copy_ = Pipe.objects.get(organization__slug="other", slug="purchases")
    assert definition_dump(pipe_export(copy_)) == target.read_text(encoding="utf-8")


@pytest.mark.parametrize(
    ("reference", "message"),
    [
        ("999999", "There is no pipe '999999'."),
        ("acme/nope", "There is no pipe 'acme/nope'."),
        ("purchases", "Name the pipe"),
    ],
)
def test_it_names_a_pipe_it_cannot_find(world, reference, message):
    with pytest.raises(CommandError, match=message):
        run("export_pipe", reference)


# ---------------------------------------------------------------- verify_timeline


@pytest.fixture
def cards(world):
    member = Actor.for_user(world.member)
    made = []
    for item in ("Laptop", "Monitor", "Desk"):
        card = card_create(actor=member, pipe=world.pipe, values=good_start_values(item=item))
        card = card_update_fields(actor=member, card=card, values={"category": "Hardware"})
        card_comment(actor=member, card=card, text=f"Ordering the {item.lower()}.")
        card = card_move(actor=member, card=card, to_phase=world.phase("approval"))
        made.append(card)
    return made


def test_it_verifies_untouched_timelines(cards):
    out, _ = run("verify_timeline")
    assert out.strip() == "3 cards, 12 events verified, no breaks"


def test_it_detects_an_event_edited_in_sql(cards):
    event = CardEvent.objects.get(card=cards[1], seq=3)
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE pipes_cardevent SET payload = %s WHERE id = %s",
            [json.dumps({"text": "Ordering two.", "mentions": [], "to_requester": False}), event.pk],
        )
    out = io.StringIO()

    with pytest.raises(CommandError) as info:
        call_command("verify_timeline", stdout=out)

    assert out.getvalue().splitlines() == [
        f"card {cards[1].pk}, event #3: content was changed after it was written"
    ]
    assert str(info.value) == "1 break(s) in 3 cards, 12 events."
    assert info.value.returncode == 1


def test_it_detects_edited_metadata(cards):
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE pipes_cardevent SET actor_label = %s WHERE card_id = %s AND seq = 4",
            ["Someone else", cards[0].pk],
        )
    out = io.StringIO()
    with pytest.raises(CommandError):
        call_command("verify_timeline", stdout=out)
    assert out.getvalue().splitlines() == [
        f"card {cards[0].pk}, event #4: metadata or hash was changed after it was written"
    ]


def test_it_detects_a_deleted_event(cards):
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM pipes_cardevent WHERE card_id = %s AND seq = 2", [cards[2].pk])
    out = io.StringIO()

    with pytest.raises(CommandError, match="break"):
        call_command("verify_timeline", stdout=out)

    assert out.getvalue().splitlines() == [
        f"card {cards[2].pk}, event #3: expected event #2 here (a row was deleted?)",
        f"card {cards[2].pk}, event #3: does not follow the previous event (reordered or altered)",
    ]


def test_it_detects_a_deleted_last_event(cards):
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM pipes_cardevent WHERE card_id = %s AND seq = 4", [cards[0].pk])
    out = io.StringIO()
    with pytest.raises(CommandError):
        call_command("verify_timeline", stdout=out)
    assert out.getvalue().splitlines() == [
        f"card {cards[0].pk}, timeline: the last events are missing or the card's head hash was altered"
    ]


def test_it_verifies_only_the_chosen_card_or_pipe(world, cards):
    with connection.cursor() as cursor:
        cursor.execute("UPDATE pipes_cardevent SET reason = %s WHERE card_id = %s", ["edited", cards[0].pk])

    out, _ = run("verify_timeline", "--card", str(cards[1].pk))
    assert out.strip() == "1 cards, 4 events verified, no breaks"
    with pytest.raises(CommandError, match="4 break"):
        run("verify_timeline", "--pipe", str(world.pipe.pk))
    with pytest.raises(CommandError, match="no pipe 999999"):
        run("verify_timeline", "--pipe", "999999")
    with pytest.raises(CommandError, match="no card 999999"):
        run("verify_timeline", "--card", "999999")
