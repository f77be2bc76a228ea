"""The one write path: every gate, for people, agents and the system."""

from decimal import Decimal

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from guardian.shortcuts import assign_perm

from pipes.choices import FieldType
from pipes.models import Card, CardEvent, CardFile, Field, Membership, Organization, PhaseEntry
from pipes.services import (
    Actor,
    Authority,
    CardAuthorityError,
    CardConflictError,
    CardError,
    CardPermissionError,
    CardTransitionError,
    card_assign,
    card_attach_files,
    card_comment,
    card_create,
    card_move,
    card_request_changes,
    card_update_fields,
)
from tests.personas import good_start_values, make_user

PDF = b"%PDF-1.4\n1 0 obj <<>> endobj\ntrailer <<>>\n%%EOF\n"


def new_card(world, actor=None, **values):
    return card_create(
        actor=actor or Actor.for_user(world.requester), pipe=world.pipe, values=good_start_values(**values)
    )


def agent(world, **scope):
    scope.setdefault("writable_fields", ["category"])
    scope.setdefault("allowed_phases", ["approval"])
    return Actor.agent(name="Triage agent", pipe_id=world.pipe.pk, **scope)


def assert_unchanged(card):
    before = (card.version, card.phase_id, dict(card.values), card.event_count)
    card.refresh_from_db()
    assert (card.version, card.phase_id, card.values, card.event_count) == before


# ------------------------------------------------------------------ create


def test_it_creates_a_card_in_the_first_phase_with_its_timeline_and_entry(
    world, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        card = new_card(world)
    assert card.phase.key == "triage"
    assert card.title == "Laptop for Ana"
    assert card.created_by == world.requester
    assert card.requester_email == "requester@example.com"
    assert len(card.tracking_token) >= 30
    assert card.events.get().kind == "created"
    assert PhaseEntry.objects.filter(card=card, phase__key="triage", left_at=None).count() == 1
    assert callbacks, "the rail is told about the entry after commit"


@pytest.mark.parametrize("persona", ["requester", "member", "admin", "owner"])
def test_it_lets_people_who_may_request_create(world, persona):
    assert new_card(world, Actor.for_user(getattr(world, persona))).pk


@pytest.mark.parametrize("persona", ["viewer", "reviewer", "outsider"])
def test_it_refuses_creation_by_people_without_the_request_role(world, persona):
    with pytest.raises(CardPermissionError):
        new_card(world, Actor.for_user(getattr(world, persona)))
    assert not Card.objects.exists()


def test_it_refuses_creation_by_an_agent_and_allows_the_system(world):
    with pytest.raises(CardPermissionError):
        new_card(world, agent(world))
    assert new_card(world, Actor.system("Public form")).created_by is None


def test_it_refuses_an_anonymous_request_where_the_start_form_is_not_public(world):
    with pytest.raises(CardPermissionError) as exc:
        new_card(world, Actor.anonymous("Public form"))
    assert "only from people with an account" in exc.value.message
    assert not Card.objects.exists()


def test_it_files_an_anonymous_request_through_a_public_start_form(world):
    world.pipe.public_form = True
    world.pipe.save()
    card = new_card(world, Actor.anonymous("Public form"))
    assert card.created_by is None and card.events.get().actor_label == "Public form"


def test_it_lets_an_anonymous_requester_do_nothing_but_file(world):
    world.pipe.public_form = True
    world.pipe.save()
    card = new_card(world, Actor.anonymous("Public form"))
    with pytest.raises(CardPermissionError):
        card_update_fields(actor=Actor.anonymous("Public form"), card=card, values={"category": "Hardware"})
    with pytest.raises(CardPermissionError):
        card_move(actor=Actor.anonymous("Public form"), card=card, to_phase=world.phase("rejected"))
    with pytest.raises(CardPermissionError):
        card_comment(actor=Actor.anonymous("Public form"), card=card, text="Any news?")
    assert_unchanged(card)


def test_it_names_every_missing_required_field_and_creates_nothing(world):
    with pytest.raises(CardError) as exc:
        card_create(actor=Actor.for_user(world.requester), pipe=world.pipe, values={"item": ""})
    assert set(exc.value.errors) == {"item", "amount", "requester_email"}
    assert exc.value.errors["amount"] == ["This field is required."]
    assert "Amount: This field is required." in exc.value.message
    assert not Card.objects.exists() and not CardEvent.objects.exists() and not PhaseEntry.objects.exists()


def test_it_names_each_bad_value_and_why(world):
    with pytest.raises(CardError) as exc:
        new_card(world, amount="lots", requester_email="ana@", nonsense="x")
    assert "Enter a number" in exc.value.errors["amount"][0]
    assert "email address" in exc.value.errors["requester_email"][0]
    assert "no field" in exc.value.errors["nonsense"][0]


def test_it_refuses_phase_fields_on_the_start_form(world):
    with pytest.raises(CardError) as exc:
        new_card(world, category="Hardware")
    assert "later in the process" in exc.value.errors["category"][0]


def test_it_requires_a_conditional_field_only_when_its_condition_holds(world):
    with pytest.raises(CardError) as exc:
        new_card(world, urgent="on")
    assert list(exc.value.errors) == ["urgency_reason"]
    card = new_card(world, urgent="on", urgency_reason="Broken laptop")
    assert card.values["urgency_reason"] == "Broken laptop"


def test_it_refuses_an_answer_to_a_question_that_does_not_apply(world):
    with pytest.raises(CardError) as exc:
        new_card(world, urgency_reason="Not urgent at all")
    assert "does not apply" in exc.value.errors["urgency_reason"][0]


def test_it_stores_start_form_files_and_records_them(world, media_root):
    quote = SimpleUploadedFile("quote 1.pdf", PDF, content_type="application/pdf")
    card = card_create(
        actor=Actor.for_user(world.requester),
        pipe=world.pipe,
        values=good_start_values(),
        files={"quote": [quote]},
    )
    stored = CardFile.objects.get(card=card)
    assert card.values["quote"] == [stored.pk]
    assert (
        stored.name == "quote 1.pdf" and stored.content_type == "application/pdf" and len(stored.sha256) == 64
    )
    assert stored.file.read() == PDF
    assert card.events.get().payload["files"][0]["sha256"] == stored.sha256


def test_it_refuses_html_disguised_as_pdf_and_keeps_nothing(world, media_root):
    fake = SimpleUploadedFile(
        "invoice.pdf", b"<html><script>alert(1)</script></html>", content_type="application/pdf"
    )
    with pytest.raises(CardError) as exc:
        card_create(
            actor=Actor.for_user(world.requester),
            pipe=world.pipe,
            values=good_start_values(),
            files={"quote": [fake]},
        )
    assert "does not look like a PDF" in exc.value.errors["quote"][0]
    assert not Card.objects.exists() and not CardFile.objects.exists()
    assert not any(media_root.rglob("*.pdf")) if media_root.exists() else True


# ------------------------------------------------------------------ update


def test_it_updates_fields_with_before_and_after_on_the_timeline(world):
    card = new_card(world)
    card = card_update_fields(
        actor=Actor.for_user(world.member),
        card=card,
        values={"category": "Software", "item": "Licence"},
        reason="triage",
    )
    assert card.values["category"] == "Software" and card.title == "Licence" and card.version == 2
    event = card.events.last()
    assert event.kind == "fields_changed" and event.reason == "triage" and event.actor_user == world.member
    assert event.payload["changes"]["item"] == {"before": "Laptop for Ana", "after": "Licence"}


@pytest.mark.parametrize("persona", ["viewer", "reviewer", "outsider"])
def test_it_refuses_updates_by_people_who_only_look(world, persona):
    card = new_card(world)
    with pytest.raises(CardPermissionError):
        card_update_fields(
            actor=Actor.for_user(getattr(world, persona)), card=card, values={"category": "Software"}
        )
    assert_unchanged(card)


def test_it_lets_a_requester_fill_only_what_the_current_phase_asks_of_them(world):
    card = new_card(world)
    cost_center = world.pipe.fields.get(key="cost_center")
    with pytest.raises(CardPermissionError) as exc:
        card_update_fields(actor=Actor.for_user(world.requester), card=card, values={"cost_center": "CC-100"})
    assert "cost_center" in exc.value.errors
    cost_center.requester_editable = True
    cost_center.save()
    card_update_fields(actor=Actor.for_user(world.requester), card=card, values={"cost_center": "CC-100"})
    other = new_card(world, Actor.for_user(world.member))
    with pytest.raises(CardPermissionError):
        card_update_fields(
            actor=Actor.for_user(world.requester), card=other, values={"cost_center": "CC-100"}
        )


def test_it_keeps_an_agent_to_its_writable_fields_and_its_pipe(world):
    card = new_card(world)
    card_update_fields(actor=agent(world), card=card, values={"category": "Services"})
    with pytest.raises(CardPermissionError) as exc:
        card_update_fields(actor=agent(world), card=card, values={"amount": "1000000"})
    assert "may not write" in exc.value.errors["amount"][0]
    stranger = Actor.agent(name="Other", pipe_id=world.pipe.pk + 999, writable_fields=["category"])
    with pytest.raises(CardPermissionError):
        card_update_fields(actor=stranger, card=card, values={"category": "Hardware"})
    card.refresh_from_db()
    assert card.values["amount"]["amount"] == "4500.00"


def test_an_agent_that_may_not_see_personal_data_may_not_overwrite_it(world):
    """Even when its design lets it write the field: it is shown masked, and a document fed to it could
    ask it to replace the requester's address with another."""
    card = card_create(actor=Actor.for_user(world.requester), pipe=world.pipe, values=good_start_values())
    before = card.values["requester_email"]
    blind = agent(world, writable_fields=["category", "requester_email"])
    with pytest.raises(CardPermissionError) as exc:
        card_update_fields(
            actor=blind, card=card, values={"category": "Hardware", "requester_email": "thief@example.com"}
        )
    assert exc.value.errors == {
        "requester_email": ["Agent Triage agent may not see this personal data, so it may not change it."]
    }
    assert_unchanged(card)
    assert card.values["requester_email"] == before

    seeing = agent(world, writable_fields=["requester_email"], may_see_pii=True)
    card = card_update_fields(actor=seeing, card=card, values={"requester_email": "new@example.com"})
    assert Card.objects.get(pk=card.pk).values["requester_email"] == "new@example.com"


def worker_without_pii(world):
    """Someone who works the pipe but may not see its personal data (no view_pii)."""
    user = make_user("clerk")
    Membership.objects.create(organization=world.org, user=user)
    for perm in ("work_pipe", "view_pipe"):
        assign_perm(perm, user, world.pipe)
    return user


def test_it_refuses_a_worker_writing_personal_data_they_may_not_see(world):
    card = new_card(world)
    with pytest.raises(CardPermissionError) as exc:
        card_update_fields(
            actor=Actor.for_user(worker_without_pii(world)),
            card=card,
            values={"requester_email": "someone.else@example.com"},
        )
    assert list(exc.value.errors) == ["requester_email"]
    assert "may not see this personal data" in exc.value.message
    assert_unchanged(card)


def test_it_lets_a_worker_without_view_pii_write_other_fields(world):
    card = card_update_fields(
        actor=Actor.for_user(worker_without_pii(world)), card=new_card(world), values={"category": "Hardware"}
    )
    assert card.values["category"] == "Hardware"


def test_it_refuses_a_worker_attaching_to_a_personal_data_field_they_may_not_see(world, media_root):
    Field.objects.filter(pipe=world.pipe, key="quote").update(pii=True)
    card = new_card(world)
    with pytest.raises(CardPermissionError):
        card_attach_files(
            actor=Actor.for_user(worker_without_pii(world)),
            card=card,
            uploads=[SimpleUploadedFile("id.pdf", PDF, content_type="application/pdf")],
            field_key="quote",
        )
    assert not CardFile.objects.exists()


def test_it_lets_a_requester_correct_their_own_personal_data(world):
    card = new_card(world)
    card_request_changes(
        actor=Actor.for_user(world.member), card=card, field_keys=["requester_email"], comment="Typo?"
    )
    card = card_update_fields(
        actor=Actor.for_user(world.requester), card=card, values={"requester_email": "ana.s@example.com"}
    )
    assert card.values["requester_email"] == "ana.s@example.com"


def test_it_refuses_to_clear_a_required_start_field(world):
    card = new_card(world)
    with pytest.raises(CardError) as exc:
        card_update_fields(actor=Actor.for_user(world.member), card=card, values={"item": ""})
    assert exc.value.errors["item"] == ["This field is required."]
    assert_unchanged(card)


def test_it_removes_answers_that_stop_applying_and_records_it(world):
    card = new_card(world, urgent="on", urgency_reason="Broken")
    card = card_update_fields(actor=Actor.for_user(world.member), card=card, values={"urgent": False})
    assert "urgency_reason" not in card.values
    assert card.events.last().payload["changes"]["urgency_reason"] == {"before": "Broken", "after": None}


def test_it_refuses_a_stale_version_and_changes_nothing(world):
    card = new_card(world)
    card_update_fields(actor=Actor.for_user(world.member), card=card, values={"category": "Software"})
    with pytest.raises(CardConflictError):
        card_update_fields(
            actor=Actor.for_user(world.admin), card=card, values={"category": "Hardware"}, expected_version=1
        )
    card.refresh_from_db()
    assert card.values["category"] == "Software"


def test_it_checks_referenced_people_take_part_in_the_pipe(world):
    card = new_card(world)
    with pytest.raises(CardError) as exc:
        card_update_fields(
            actor=Actor.for_user(world.member), card=card, values={"approved_by": world.outsider.pk}
        )
    assert "take part" in exc.value.errors["approved_by"][0]
    card_update_fields(
        actor=Actor.for_user(world.member), card=card, values={"approved_by": world.reviewer.pk}
    )


# ------------------------------------------------------------------ move


def test_it_refuses_to_leave_a_phase_with_its_required_fields_empty(world):
    card = new_card(world)
    with pytest.raises(CardTransitionError) as exc:
        card_move(actor=Actor.for_user(world.member), card=card, to_phase=world.phase("approval"))
    assert exc.value.errors == {"category": ["This field is required."]}
    assert exc.value.field_labels == {"category": "Category"}
    assert_unchanged(card)


def test_it_moves_forward_once_the_fields_are_filled_and_records_entries(world):
    card = new_card(world)
    card_update_fields(actor=Actor.for_user(world.member), card=card, values={"category": "Hardware"})
    card = card_move(
        actor=Actor.for_user(world.member), card=card, to_phase=world.phase("approval"), reason="ok"
    )
    assert card.phase.key == "approval" and card.finished_at is None
    entries = list(PhaseEntry.objects.filter(card=card).order_by("entered_at"))
    assert [e.phase.key for e in entries] == ["triage", "approval"]
    assert entries[0].left_at is not None and entries[1].left_at is None
    assert card.events.last().payload == {"from": "triage", "to": "approval"}


def test_it_refuses_transitions_the_phase_does_not_allow(world):
    card = new_card(world)
    card_update_fields(actor=Actor.for_user(world.member), card=card, values={"category": "Hardware"})
    with pytest.raises(CardTransitionError) as exc:
        card_move(actor=Actor.for_user(world.member), card=card, to_phase=world.phase("done"))
    assert "may only move to: Approval, Rejected" in exc.value.message


def test_it_lets_a_card_go_back_without_the_next_phase_fields(world):
    card = new_card(world)
    card_update_fields(actor=Actor.for_user(world.member), card=card, values={"category": "Hardware"})
    card_move(actor=Actor.for_user(world.member), card=card, to_phase=world.phase("approval"))
    card = card_move(actor=Actor.for_user(world.member), card=card, to_phase=world.phase("triage"))
    assert card.phase.key == "triage"


def test_it_finishes_a_card_in_a_final_phase(world):
    card = new_card(world)
    card_update_fields(actor=Actor.for_user(world.member), card=card, values={"category": "Hardware"})
    card = card_move(actor=Actor.for_user(world.member), card=card, to_phase=world.phase("rejected"))
    assert card.is_finished


@pytest.mark.parametrize("persona", ["viewer", "reviewer", "requester", "outsider"])
def test_it_refuses_moves_by_people_who_may_not_work_the_pipe(world, persona):
    card = new_card(world)
    with pytest.raises(CardPermissionError):
        card_move(actor=Actor.for_user(getattr(world, persona)), card=card, to_phase=world.phase("rejected"))
    assert_unchanged(card)


def test_it_keeps_an_agent_to_its_allowed_phases(world):
    card = new_card(world)
    card_update_fields(actor=agent(world), card=card, values={"category": "Hardware"})
    with pytest.raises(CardPermissionError):
        card_move(actor=agent(world), card=card, to_phase=world.phase("rejected"))
    card = card_move(actor=agent(world), card=card, to_phase=world.phase("approval"))
    assert card.events.last().actor_kind == "agent" and card.events.last().actor_label == "Triage agent"


def test_it_holds_the_system_to_the_process_too(world):
    card = new_card(world)
    with pytest.raises(CardTransitionError):
        card_move(actor=Actor.system(), card=card, to_phase=world.phase("approval"))


def test_it_blocks_moves_into_a_full_phase_when_the_limit_blocks(world):
    approval = world.phase("approval")
    approval.wip_limit, approval.wip_blocks = 1, True
    approval.save()
    first, second = new_card(world), new_card(world)
    for card in (first, second):
        card_update_fields(actor=Actor.for_user(world.member), card=card, values={"category": "Hardware"})
    card_move(actor=Actor.for_user(world.member), card=first, to_phase=approval)
    with pytest.raises(CardTransitionError) as exc:
        card_move(actor=Actor.for_user(world.member), card=second, to_phase=approval)
    assert "limit of 1" in exc.value.message


def test_it_refuses_a_new_card_when_the_first_phase_is_full_and_blocks(world):
    triage = world.phase("triage")
    new_card(world)
    triage.wip_limit, triage.wip_blocks = 1, True
    triage.save()
    with pytest.raises(CardTransitionError) as exc:
        new_card(world)
    assert "Triage is at its limit of 1 cards" in exc.value.message
    assert Card.objects.count() == 1


# ------------------------------------------------------------------ an agent's authority limit


def with_authority(world, limit="10000", **kw):
    return agent(
        world,
        writable_fields=kw.pop("writable_fields", ["category"]),
        authority=Authority(field=kw.pop("field", "amount"), limit=Decimal(limit), **kw),
    )


def test_it_lets_an_agent_act_within_its_authority(world):
    card = card_update_fields(
        actor=with_authority(world), card=new_card(world), values={"category": "Hardware"}
    )
    card = card_move(actor=with_authority(world), card=card, to_phase=world.phase("approval"))
    assert card.phase.key == "approval"


def test_it_refuses_an_agents_move_above_its_authority(world):
    card = card_update_fields(
        actor=Actor.for_user(world.member),
        card=new_card(world, amount="52000"),
        values={"category": "Hardware"},
    )
    with pytest.raises(CardAuthorityError) as exc:
        card_move(actor=with_authority(world), card=card, to_phase=world.phase("approval"))
    assert exc.value.message == (
        "Amount: BRL 52,000.00 is above the authority of Triage agent (BRL 10,000). A person decides."
    )
    assert exc.value.rail_reason == "amount 52,000 exceeds authority 10,000"
    assert_unchanged(card)


def test_it_refuses_an_agents_write_above_its_authority(world):
    card = new_card(world, amount="52000")
    with pytest.raises(CardAuthorityError):
        card_update_fields(actor=with_authority(world), card=card, values={"category": "Hardware"})
    assert_unchanged(card)


def test_it_refuses_an_agent_raising_the_amount_above_its_authority(world):
    card = new_card(world)
    with pytest.raises(CardAuthorityError):
        card_update_fields(
            actor=with_authority(world, writable_fields=["amount"]), card=card, values={"amount": "10000.01"}
        )
    assert_unchanged(card)


def test_it_refuses_an_agent_when_the_amount_is_empty(world):
    Field.objects.create(pipe=world.pipe, key="budget", label="Budget", type=FieldType.NUMBER, position=9)
    card = new_card(world)
    with pytest.raises(CardAuthorityError) as exc:
        card_update_fields(
            actor=with_authority(world, field="budget"), card=card, values={"category": "Hardware"}
        )
    assert exc.value.rail_reason == "budget empty, authority 10,000 needs an amount"
    assert_unchanged(card)


def test_it_refuses_an_agent_when_the_amount_cannot_be_read(world):
    card = new_card(world)  # "item" holds text, not an amount
    with pytest.raises(CardAuthorityError) as exc:
        card_update_fields(
            actor=with_authority(world, field="item"), card=card, values={"category": "Hardware"}
        )
    assert exc.value.rail_reason == "item unreadable, authority 10,000 needs an amount"
    assert_unchanged(card)


def test_it_refuses_an_agent_when_the_amount_is_in_another_currency(world):
    card = new_card(world, amount="100")
    with pytest.raises(CardAuthorityError) as exc:
        card_update_fields(
            actor=with_authority(world, currency="USD"), card=card, values={"category": "Hardware"}
        )
    assert exc.value.rail_reason == "amount in BRL, authority 10,000 is in USD"
    assert "is in BRL, but the authority of Triage agent (USD 10,000) is in USD" in exc.value.message
    assert_unchanged(card)


def test_it_reads_the_limit_in_the_organizations_currency(world):
    card = new_card(world, amount="100")  # BRL, the organization's currency then
    Organization.objects.filter(pk=world.org.pk).update(currency="EUR")
    with pytest.raises(CardAuthorityError) as exc:
        card_update_fields(
            actor=with_authority(world), card=Card.objects.get(pk=card.pk), values={"category": "Hardware"}
        )
    assert exc.value.rail_reason == "amount in BRL, authority 10,000 is in EUR"


# ------------------------------------------------------------------ people, comments, files


def test_it_assigns_only_people_of_the_pipe(world):
    card = new_card(world)
    card = card_assign(actor=Actor.for_user(world.member), card=card, users=[world.member, world.reviewer])
    assert set(card.assignees.all()) == {world.member, world.reviewer}
    with pytest.raises(CardError):
        card_assign(actor=Actor.for_user(world.member), card=card, users=[world.outsider])
    with pytest.raises(CardPermissionError):
        card_assign(actor=Actor.for_user(world.viewer), card=card, users=[world.viewer])


def test_it_lets_requesters_comment_on_their_own_cards_only(world):
    mine = new_card(world)
    theirs = new_card(world, Actor.for_user(world.member))
    event = card_comment(actor=Actor.for_user(world.requester), card=mine, text="Any news?")
    assert event.payload["text"] == "Any news?"
    with pytest.raises(CardPermissionError):
        card_comment(actor=Actor.for_user(world.requester), card=theirs, text="Hi")
    with pytest.raises(CardError) as exc:
        card_comment(actor=Actor.for_user(world.reviewer), card=mine, text="   ")
    assert "text" in exc.value.errors


def test_it_attaches_files_to_a_field_and_refuses_bad_ones_whole(world, media_root):
    card = new_card(world)
    good = SimpleUploadedFile("q.pdf", PDF)
    files = card_attach_files(
        actor=Actor.for_user(world.member), card=card, uploads=[good], field_key="quote"
    )
    card.refresh_from_db()
    assert card.values["quote"] == [files[0].pk]
    bad = [SimpleUploadedFile("r.pdf", PDF), SimpleUploadedFile("evil.png", b"<svg onload=alert(1)>")]
    with pytest.raises(CardError):
        card_attach_files(actor=Actor.for_user(world.member), card=card, uploads=bad, field_key="quote")
    card.refresh_from_db()
    assert card.values["quote"] == [files[0].pk] and CardFile.objects.count() == 1


# ------------------------------------------------------------------ changes asked of the requester


def test_it_lets_the_requester_correct_exactly_the_fields_asked_of_them(world):
    card = new_card(world)
    card = card_request_changes(
        actor=Actor.for_user(world.reviewer),
        card=card,
        field_keys=["amount"],
        comment="The amount does not match the quote.",
    )
    assert card.requested_fields == ["amount"]
    event = card.events.last()
    assert event.payload["to_requester"] is True and event.payload["requested_fields"] == ["amount"]
    card_update_fields(actor=Actor.for_user(world.requester), card=card, values={"amount": "4300.00"})
    with pytest.raises(CardPermissionError):
        card_update_fields(actor=Actor.for_user(world.requester), card=card, values={"item": "Other"})


def test_it_stops_the_requester_editing_once_the_card_moves_on(world):
    card = new_card(world)
    card_request_changes(
        actor=Actor.for_user(world.member), card=card, field_keys=["amount"], comment="Fix it"
    )
    card_update_fields(actor=Actor.for_user(world.member), card=card, values={"category": "Hardware"})
    card = card_move(actor=Actor.for_user(world.member), card=card, to_phase=world.phase("approval"))
    assert card.requested_fields == []
    with pytest.raises(CardPermissionError):
        card_update_fields(actor=Actor.for_user(world.requester), card=card, values={"amount": "1.00"})


def test_it_needs_fields_and_a_comment_to_ask_for_changes(world):
    card = new_card(world)
    with pytest.raises(CardError) as exc:
        card_request_changes(actor=Actor.for_user(world.member), card=card, field_keys=[], comment="")
    assert set(exc.value.errors) == {"fields", "comment"}
    with pytest.raises(CardPermissionError):
        card_request_changes(
            actor=Actor.for_user(world.viewer), card=card, field_keys=["amount"], comment="x"
        )
