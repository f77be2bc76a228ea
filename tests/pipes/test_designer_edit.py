"""The phases and fields editor of the designer, through its real URLs: an honest edit saves, a bad one
answers with the input's error and changes nothing, people who don't administer the pipe get 403
(404 outside its organization); cards keep their values and verifiable timelines; the pipe still
exports and imports again to the same file."""

from __future__ import annotations

import json
import re

import pytest
from django.urls import reverse

from pipes.choices import FieldType
from pipes.design import definition_dump, pipe_export
from pipes.design.importexport import pipe_import
from pipes.models import Card, Field, Organization, Phase
from pipes.services import Actor, card_create, card_move, card_update_fields
from pipes.timeline import verify_timelines
from tests.personas import good_start_values

pytestmark = pytest.mark.django_db

HX = {"HTTP_HX_REQUEST": "true"}


def _as(client, user):
    client.force_login(user)
    return client


def _url(name, world, **kwargs):
    return reverse(f"designer:{name}", kwargs={"pipe_id": world.pipe.pk, **kwargs})


def _field(world, key) -> Field:
    return Field.objects.get(pipe=world.pipe, key=key)


def _card(world, **values) -> Card:
    return card_create(
        actor=Actor.for_user(world.requester), pipe=world.pipe, values=good_start_values(**values)
    )


def _triaged(world, **values) -> Card:
    """A card whose triage fields are filled, so it may leave Triage."""
    card = _card(world, **values)
    return card_update_fields(actor=Actor.for_user(world.admin), card=card, values={"category": "Hardware"})


def _phase_data(phase: Phase, **changes) -> dict:
    data = {
        "name": phase.name,
        "key": phase.key,
        "sla_hours": phase.sla_hours or "",
        "requester_status": phase.requester_status,
        "wip_limit": phase.wip_limit or "",
        "allowed_next": [p.pk for p in phase.allowed_next.all()],
    }
    if phase.is_final:
        data["is_final"] = "on"
    if phase.wip_blocks:
        data["wip_blocks"] = "on"
    data.update(changes)
    return {k: v for k, v in data.items() if v is not None}


def _field_data(f: Field, **changes) -> dict:
    data: dict = {"label": f.label, "key": f.key, "help_text": f.help_text, "options": list(f.options or [])}
    for flag in ("required", "pii", "visible_to_requester", "requester_editable"):
        if getattr(f, flag):
            data[flag] = "on"
    for name, value in (f.validation or {}).items():
        data[f"validation_{name}"] = str(value)
    data.update(changes)
    return {k: v for k, v in data.items() if v is not None}


def _timelines_intact(world):
    assert list(verify_timelines(Card.objects.filter(pipe=world.pipe))) == []


# ---------------------------------------------------------------- who may


EDIT_URLS = [
    ("GET", "phase_edit", "phase"),
    ("POST", "phase_edit", "phase"),
    ("POST", "phase_rename", "phase"),
    ("POST", "phase_add", None),
    ("POST", "phases_order", None),
    ("GET", "phase_delete", "phase"),
    ("POST", "phase_delete", "phase"),
    ("GET", "field_edit", "field"),
    ("POST", "field_edit", "field"),
    ("POST", "field_add", None),
    ("GET", "field_palette", None),
    ("POST", "fields_order", None),
    ("GET", "field_delete", "field"),
    ("POST", "field_delete", "field"),
    ("GET", "condition_row", "field"),
    ("GET", "preview", None),
]


def _kwargs(world, what):
    if what == "phase":
        return {"phase_id": world.phase("triage").pk}
    if what == "field":
        return {"field_id": _field(world, "cost_center").pk}
    return {}


@pytest.mark.parametrize("method,name,what", EDIT_URLS)
@pytest.mark.parametrize("role,status", [("member", 403), ("reviewer", 403), ("outsider", 404)])
def test_it_refuses_people_who_do_not_administer_the_pipe(client, world, method, name, what, role, status):
    before = definition_dump(pipe_export(world.pipe))
    url = _url(name, world, **_kwargs(world, what))
    c = _as(client, getattr(world, role))
    response = c.get(url, **HX) if method == "GET" else c.post(url, {"name": "X", "type": "number"}, **HX)
    assert response.status_code == status
    assert definition_dump(pipe_export(world.pipe)) == before


def test_it_does_not_reach_a_phase_of_another_pipe(client, world):
    other = Organization.objects.get(slug="other")
    foreign = pipe_import(
        organization=other,
        definition={
            "name": "Theirs",
            "slug": "theirs",
            "code": "TH",
            "phases": [{"key": "a", "name": "A"}, {"key": "b", "name": "B", "final": True}],
        },
    )
    phase = foreign.phases.first()
    url = _url("phase_edit", world, phase_id=phase.pk)
    assert _as(client, world.admin).post(url, {"name": "Hijacked"}, **HX).status_code == 404
    phase.refresh_from_db()
    assert phase.name == "A"


# ---------------------------------------------------------------- phases


def test_it_opens_the_design_page_with_the_editor_and_the_preview(client, world):
    html = _as(client, world.admin).get(_url("pipe", world)).content.decode()
    assert 'id="design-board"' in html and 'id="design-pane"' in html and 'id="start-preview"' in html
    assert 'id="new-phase-name"' in html and 'id="add-field-start"' in html
    # the preview draws the start form with the portal's own field template
    assert 'id="row-urgency_reason"' in html and "Appears when" in html


def test_it_adds_a_phase_before_the_final_ones_with_a_key_from_its_name(client, world):
    response = _as(client, world.admin).post(_url("phase_add", world), {"name": "Legal review"}, **HX)
    assert response.status_code == 200
    phase = Phase.objects.get(pipe=world.pipe, name="Legal review")
    assert phase.key == "legal_review"
    keys = list(world.pipe.phases.order_by("position").values_list("key", flat=True))
    assert keys == ["triage", "approval", "legal_review", "done", "rejected"]
    body = response.content.decode()
    assert 'id="phase-editor"' in body and 'hx-swap-oob="true"' in body
    assert json.loads(response["HX-Trigger"])["designChanged"] is True


def test_it_refuses_a_phase_without_a_name_and_adds_nothing(client, world):
    before = world.pipe.phases.count()
    response = _as(client, world.admin).post(_url("phase_add", world), {"name": "  "}, **HX)
    assert response.status_code == 422 and "Give the new phase a name." in response.content.decode()
    assert response["HX-Retarget"] == "#design-board"
    assert world.pipe.phases.count() == before


def test_it_saves_a_phases_settings(client, world):
    triage, done = world.phase("triage"), world.phase("done")
    data = _phase_data(
        triage,
        name="First look",
        sla_hours="12",
        requester_status="Being read",
        wip_limit="5",
        wip_blocks="on",
        allowed_next=[world.phase("approval").pk, done.pk],
    )
    response = _as(client, world.admin).post(_url("phase_edit", world, phase_id=triage.pk), data, **HX)
    assert response.status_code == 200, response.content.decode()
    triage.refresh_from_db()
    assert (triage.name, triage.sla_hours, triage.requester_status, triage.wip_limit, triage.wip_blocks) == (
        "First look",
        12,
        "Being read",
        5,
        True,
    )
    assert set(triage.allowed_next.values_list("key", flat=True)) == {"approval", "done"}
    assert 'id="phase-saved"' in response.content.decode()


def test_it_shows_the_checkers_refusal_beside_the_final_checkbox(client, world):
    triage = world.phase("triage")
    data = _phase_data(triage, is_final="on")
    response = _as(client, world.admin).post(_url("phase_edit", world, phase_id=triage.pk), data, **HX)
    assert response.status_code == 422
    html = response.content.decode()
    assert 'id="phase-final-error"' in html and "the first phase cannot be final" in html
    triage.refresh_from_db()
    assert triage.is_final is False


def test_it_refuses_blocking_without_a_wip_limit_and_a_bad_number(client, world):
    triage = world.phase("triage")
    data = _phase_data(triage, sla_hours="soon", wip_blocks="on", name="Changed")
    response = _as(client, world.admin).post(_url("phase_edit", world, phase_id=triage.pk), data, **HX)
    html = response.content.decode()
    assert response.status_code == 422
    assert 'id="phase-sla-error"' in html and 'id="phase-wip-blocks-error"' in html
    triage.refresh_from_db()
    assert triage.name == "Triage"


def test_it_refuses_a_key_another_phase_uses(client, world):
    triage = world.phase("triage")
    data = _phase_data(triage, key="approval")
    response = _as(client, world.admin).post(_url("phase_edit", world, phase_id=triage.pk), data, **HX)
    assert response.status_code == 422 and 'id="phase-key-error"' in response.content.decode()
    assert Phase.objects.filter(pipe=world.pipe, key="triage").exists()


def test_it_keeps_a_phase_key_once_cards_used_it_but_renames(client, world):
    _card(world)
    triage = world.phase("triage")
    page = _as(client, world.admin).get(_url("phase_edit", world, phase_id=triage.pk), **HX).content.decode()
    assert 'id="phase-key" value="triage" readonly' in page
    data = _phase_data(triage, key="first", name="First look")
    response = client.post(_url("phase_edit", world, phase_id=triage.pk), data, **HX)
    assert response.status_code == 200
    triage.refresh_from_db()
    assert (triage.key, triage.name) == ("triage", "First look")


def test_it_renames_a_phase_inline_and_refuses_an_empty_name(client, world):
    triage = world.phase("triage")
    url = _url("phase_rename", world, phase_id=triage.pk)
    assert _as(client, world.admin).post(url, {"name": "Inbox"}, **HX).status_code == 200
    triage.refresh_from_db()
    assert triage.name == "Inbox"
    response = client.post(url, {"name": ""}, **HX)
    assert response.status_code == 422 and f'id="rename-error-{triage.pk}"' in response.content.decode()
    triage.refresh_from_db()
    assert triage.name == "Inbox"


def test_it_reorders_the_phases(client, world):
    order = [world.phase(k).pk for k in ("triage", "done", "approval", "rejected")]
    response = _as(client, world.admin).post(
        _url("phases_order", world), {"order": ",".join(map(str, order))}, **HX
    )
    assert response.status_code == 200
    assert list(world.pipe.phases.order_by("position").values_list("pk", flat=True)) == order


def test_it_refuses_an_order_that_puts_a_final_phase_first(client, world):
    before = list(world.pipe.phases.order_by("position").values_list("pk", flat=True))
    order = [world.phase(k).pk for k in ("done", "triage", "approval", "rejected")]
    response = _as(client, world.admin).post(
        _url("phases_order", world), {"order": ",".join(map(str, order))}, **HX
    )
    assert response.status_code == 422
    assert "the first phase cannot be final" in response.content.decode()
    assert "“Purchased”" in response.content.decode()  # told by name, not by definition path
    assert list(world.pipe.phases.order_by("position").values_list("pk", flat=True)) == before


def test_it_refuses_an_order_that_misses_a_phase(client, world):
    response = _as(client, world.admin).post(
        _url("phases_order", world), {"order": str(world.phase("done").pk)}, **HX
    )
    assert response.status_code == 409


def test_it_deletes_an_empty_phase_after_the_confirmation(client, world):
    rejected = world.phase("rejected")
    url = _url("phase_delete", world, phase_id=rejected.pk)
    confirm = _as(client, world.admin).get(url, **HX).content.decode()
    assert 'id="phase-delete-confirm"' in confirm and "No card is in this phase." in confirm
    assert client.post(url, **HX).status_code == 200
    assert not Phase.objects.filter(pk=rejected.pk).exists()


def test_it_says_how_many_cards_a_phase_holds_and_moves_them_before_deleting(client, world):
    cards = [_triaged(world), _triaged(world, item="Chair")]
    triage, approval = world.phase("triage"), world.phase("approval")
    rejected = world.phase("rejected")
    url = _url("phase_delete", world, phase_id=rejected.pk)
    for card in cards:
        card_move(actor=Actor.for_user(world.admin), card=card, to_phase=rejected)
    confirm = _as(client, world.admin).get(url, **HX).content.decode()
    assert "2 cards are in this phase." in confirm
    assert "2 cards went through this phase." in confirm
    # No destination chosen: nothing happens.
    assert client.post(url, {}, **HX).status_code == 422
    assert Phase.objects.filter(pk=rejected.pk).exists()
    response = client.post(url, {"move_to": triage.pk}, **HX)
    assert response.status_code == 200, response.content.decode()
    assert not Phase.objects.filter(pk=rejected.pk).exists()
    assert set(Card.objects.filter(pk__in=[c.pk for c in cards]).values_list("phase_id", flat=True)) == {
        triage.pk
    }
    _timelines_intact(world)
    assert approval.pk  # the other phases stay


def test_it_moves_no_card_when_one_is_refused(client, world):
    triage, approval = world.phase("triage"), world.phase("approval")
    card = _triaged(world)
    card_move(actor=Actor.for_user(world.admin), card=card, to_phase=world.phase("rejected"))
    # Approval is full and its WIP limit blocks: the card can't go there, so nothing happens.
    approval.wip_limit, approval.wip_blocks = 1, True
    approval.save()
    other = _triaged(world, item="Desk")
    card_move(actor=Actor.for_user(world.admin), card=other, to_phase=approval)
    rejected = world.phase("rejected")
    response = _as(client, world.admin).post(
        _url("phase_delete", world, phase_id=rejected.pk), {"move_to": approval.pk}, **HX
    )
    assert response.status_code == 422
    assert Phase.objects.filter(pk=rejected.pk).exists()
    card.refresh_from_db()
    assert card.phase_id == rejected.pk
    assert triage.pk


# ---------------------------------------------------------------- fields


def test_it_adds_a_field_from_the_palette_and_opens_it(client, world):
    triage = world.phase("triage")
    response = _as(client, world.admin).post(
        _url("field_add", world), {"phase": triage.pk, "type": FieldType.MULTI_SELECT}, **HX
    )
    assert response.status_code == 200
    f = Field.objects.get(pipe=world.pipe, phase=triage, type=FieldType.MULTI_SELECT)
    assert f.key == "multi_select" and f.options == ["Option 1", "Option 2"]
    assert f.position == 3
    assert 'id="field-editor"' in response.content.decode()


def test_it_offers_the_18_types_to_add_to_a_phase(client, world):
    triage = world.phase("triage")
    url = _url("field_palette", world) + f"?phase={triage.pk}"
    html = _as(client, world.admin).get(url, **HX).content.decode()
    assert html.count('class="palette-type"') == 18 == len(FieldType.values)
    assert f'name="phase" value="{triage.pk}"' in html and "to Triage" in html


def test_it_adds_a_field_to_the_start_form(client, world):
    _as(client, world.admin).post(_url("field_add", world), {"phase": "start", "type": "number"}, **HX)
    f = Field.objects.get(pipe=world.pipe, key="number")
    assert f.phase_id is None and f.position == 7


def test_it_refuses_an_unknown_type(client, world):
    before = world.pipe.fields.count()
    response = _as(client, world.admin).post(
        _url("field_add", world), {"phase": "start", "type": "numbr"}, **HX
    )
    assert response.status_code == 422 and world.pipe.fields.count() == before


def test_it_saves_a_fields_label_help_flags_and_validation(client, world):
    f = _field(world, "cost_center")
    data = _field_data(
        f,
        label="Cost centre",
        help_text="As on the budget sheet",
        required="on",
        pii="on",
        visible_to_requester=None,
        validation_regex=r"^CC-\d{4}$",
        validation_regex_message="Use CC-1234.",
        validation_max_length="7",
    )
    response = _as(client, world.admin).post(_url("field_edit", world, field_id=f.pk), data, **HX)
    assert response.status_code == 200, response.content.decode()
    f.refresh_from_db()
    assert (f.label, f.help_text, f.required, f.pii, f.visible_to_requester) == (
        "Cost centre",
        "As on the budget sheet",
        True,
        True,
        False,
    )
    assert f.validation == {"regex": r"^CC-\d{4}$", "regex_message": "Use CC-1234.", "max_length": 7}


def test_it_edits_options_as_a_list(client, world):
    f = _field(world, "category")
    data = _field_data(f, options=["Hardware", "Software", "  ", "Travel"], visible_to_requester="on")
    assert (
        _as(client, world.admin).post(_url("field_edit", world, field_id=f.pk), data, **HX).status_code == 200
    )
    f.refresh_from_db()
    assert f.options == ["Hardware", "Software", "Travel"]


def test_it_refuses_a_select_without_options_beside_the_options(client, world):
    f = _field(world, "category")
    response = _as(client, world.admin).post(
        _url("field_edit", world, field_id=f.pk), _field_data(f, options=[""]), **HX
    )
    assert response.status_code == 422 and 'id="field-options-error"' in response.content.decode()
    f.refresh_from_db()
    assert f.options == ["Hardware", "Software", "Services"]


def test_it_refuses_a_pattern_that_does_not_compile_and_min_above_max(client, world):
    f = _field(world, "cost_center")
    response = _as(client, world.admin).post(
        _url("field_edit", world, field_id=f.pk), _field_data(f, validation_regex="^(CC"), **HX
    )
    assert response.status_code == 422 and "This pattern does not work" in response.content.decode()
    amount = _field(world, "amount")
    response = client.post(
        _url("field_edit", world, field_id=amount.pk),
        _field_data(amount, validation_min="100", validation_max="10"),
        **HX,
    )
    assert response.status_code == 422 and "The maximum is below the minimum." in response.content.decode()
    amount.refresh_from_db()
    assert amount.validation == {"min": 0}


def test_it_builds_a_condition_from_dropdowns(client, world):
    f = _field(world, "cost_center")
    data = _field_data(
        f,
        cond_mode="all",
        cond_row=["0", "3"],
        **{"cond-0-field": "amount", "cond-0-op": "gt", "cond-0-value": "5.000,50"},
        **{"cond-3-field": "category", "cond-3-op": "in", "cond-3-values": ["Hardware", "Services"]},
    )
    response = _as(client, world.admin).post(_url("field_edit", world, field_id=f.pk), data, **HX)
    assert response.status_code == 200, response.content.decode()
    f.refresh_from_db()
    assert f.condition == {
        "all": [
            {"field": "amount", "op": "gt", "value": 5000.5},
            {"field": "category", "op": "in", "value": ["Hardware", "Services"]},
        ]
    }
    # Drawn again as rows, with the operators of each field's type.
    html = client.get(_url("field_edit", world, field_id=f.pk), **HX).content.decode()
    assert (
        'name="cond-0-field"' in html
        and 'value="gt" selected' in html
        and 'value="Services" selected' in html
    )


def test_it_saves_a_single_rule_as_a_leaf_and_clears_it(client, world):
    f = _field(world, "urgency_reason")
    data = _field_data(
        f, cond_row=["0"], **{"cond-0-field": "amount", "cond-0-op": "gte", "cond-0-value": "5000"}
    )
    _as(client, world.admin).post(_url("field_edit", world, field_id=f.pk), data, **HX)
    f.refresh_from_db()
    assert f.condition == {"field": "amount", "op": "gte", "value": 5000}
    client.post(_url("field_edit", world, field_id=f.pk), _field_data(f), **HX)
    f.refresh_from_db()
    assert f.condition is None


def test_it_refuses_a_rule_without_a_value_and_keeps_the_condition(client, world):
    f = _field(world, "urgency_reason")
    data = _field_data(f, cond_row=["0"], **{"cond-0-field": "amount", "cond-0-op": "gt", "cond-0-value": ""})
    response = _as(client, world.admin).post(_url("field_edit", world, field_id=f.pk), data, **HX)
    assert response.status_code == 422
    html = response.content.decode()
    assert 'id="field-condition-error"' in html and "Give a value to compare with." in html
    f.refresh_from_db()
    assert f.condition == {"field": "urgent", "op": "true"}


def test_it_refuses_a_condition_on_a_field_asked_later(client, world):
    item = _field(world, "item")
    data = _field_data(item, cond_row=["0"], **{"cond-0-field": "po_number", "cond-0-op": "not_empty"})
    response = _as(client, world.admin).post(_url("field_edit", world, field_id=item.pk), data, **HX)
    assert response.status_code == 422 and 'id="field-condition-error"' in response.content.decode()
    item.refresh_from_db()
    assert item.condition is None


def test_it_offers_only_fields_asked_before_in_a_condition_row(client, world):
    f = _field(world, "cost_center")
    url = _url("condition_row", world, field_id=f.pk) + "?index=2&cond-2-field=urgent"
    html = _as(client, world.admin).get(url, **HX).content.decode()
    assert 'name="cond-2-op"' in html and 'value="true"' in html and 'value="gt"' not in html
    assert (
        'value="po_number"' not in html and 'value="category"' in html and 'value="cost_center"' not in html
    )


def test_it_keeps_a_field_key_once_cards_hold_a_value_but_relabels(client, world):
    _card(world)
    f = _field(world, "item")
    page = _as(client, world.admin).get(_url("field_edit", world, field_id=f.pk), **HX).content.decode()
    assert 'id="field-key" value="item" readonly' in page
    response = client.post(
        _url("field_edit", world, field_id=f.pk), _field_data(f, key="thing", label="What to buy"), **HX
    )
    assert response.status_code == 200
    f.refresh_from_db()
    assert (f.key, f.label) == ("item", "What to buy")
    _timelines_intact(world)


def test_it_reorders_the_fields_of_a_phase(client, world):
    triage = world.phase("triage")
    order = [_field(world, "cost_center").pk, _field(world, "category").pk]
    response = _as(client, world.admin).post(
        _url("fields_order", world), {"phase": triage.pk, "order": ",".join(map(str, order))}, **HX
    )
    assert response.status_code == 200
    assert list(Field.objects.filter(phase=triage).order_by("position").values_list("pk", flat=True)) == order


def test_it_says_how_many_cards_hold_a_value_before_deleting_a_field(client, world):
    _card(world, quote="")
    _card(world, item="Chair")
    f = _field(world, "requester_email")
    url = _url("field_delete", world, field_id=f.pk)
    confirm = _as(client, world.admin).get(url, **HX).content.decode()
    assert "2 cards hold a value in this field." in confirm
    assert client.post(url, **HX).status_code == 200
    assert not Field.objects.filter(pk=f.pk).exists()
    assert all("requester_email" in c.values for c in Card.objects.filter(pipe=world.pipe))
    _timelines_intact(world)


def test_it_refuses_to_delete_a_field_a_condition_reads(client, world):
    f = _field(world, "urgent")
    response = _as(client, world.admin).post(_url("field_delete", world, field_id=f.pk), **HX)
    assert response.status_code == 422
    assert "“Why is it urgent?”" in response.content.decode()
    assert Field.objects.filter(pk=f.pk).exists()


def test_it_previews_the_start_form_with_each_change(client, world):
    f = _field(world, "item")
    _as(client, world.admin).post(
        _url("field_edit", world, field_id=f.pk), _field_data(f, label="What do you need?"), **HX
    )
    html = client.get(_url("preview", world), **HX).content.decode()
    assert "What do you need?" in html and 'id="row-item"' in html
    assert "Appears when “Urgent” is ticked" in html


# ---------------------------------------------------------------- the process stays whole


def test_a_pipe_designed_here_exports_and_imports_again_identically(client, world):
    _card(world)
    c = _as(client, world.admin)
    c.post(_url("phase_add", world), {"name": "Legal review"}, **HX)
    legal = Phase.objects.get(pipe=world.pipe, key="legal_review")
    c.post(_url("phase_edit", world, phase_id=legal.pk), _phase_data(legal, sla_hours="8"), **HX)
    c.post(_url("field_add", world), {"phase": legal.pk, "type": "select"}, **HX)
    f = Field.objects.get(pipe=world.pipe, phase=legal)
    data = _field_data(
        f,
        label="Contract risk",
        options=["Low", "High"],
        required="on",
        cond_row=["0"],
        **{"cond-0-field": "amount", "cond-0-op": "gt", "cond-0-value": "5000"},
    )
    assert c.post(_url("field_edit", world, field_id=f.pk), data, **HX).status_code == 200
    text = definition_dump(pipe_export(world.pipe))
    assert "Contract risk" in text
    copy = pipe_import(
        organization=world.org, definition={**pipe_export(world.pipe), "slug": "copy", "code": "CP"}
    )
    again = definition_dump(pipe_export(copy))
    assert again == text.replace("slug: purchases", "slug: copy").replace("code: PR", "code: CP")
    _timelines_intact(world)


def test_the_design_page_reads_the_same_number_of_queries_however_big_the_process(client, world):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    c = _as(client, world.admin)
    url = _url("pipe", world)

    def count() -> int:
        with CaptureQueriesContext(connection) as queries:
            assert c.get(url).status_code == 200
        return len(queries.captured_queries)

    c.post(_url("field_add", world), {"phase": "start", "type": "label"}, **HX)  # the labels: one read
    count()  # the first request of a session reads a little more
    before = count()
    for n in range(3):
        c.post(_url("phase_add", world), {"name": f"Extra {n}"}, **HX)
        phase = Phase.objects.get(pipe=world.pipe, name=f"Extra {n}")
        c.post(_url("field_add", world), {"phase": phase.pk, "type": "checklist"}, **HX)
        c.post(_url("field_add", world), {"phase": "start", "type": "label"}, **HX)
    assert Field.objects.filter(pipe=world.pipe, type="checklist").count() == 3
    assert Field.objects.filter(pipe=world.pipe, type="label").count() == 4
    assert count() == before


def test_saving_untouched_fields_leaves_the_definition_as_it_was(client, world):
    c = _as(client, world.admin)
    c.post(_url("field_add", world), {"phase": "start", "type": "label"}, **HX)
    before = definition_dump(pipe_export(world.pipe))
    for key, extra in (
        ("label", {"config_multiple": "on"}),  # labels allow several by default
        ("quote", {"config_multiple": "on"}),
        ("amount", {}),
        ("cost_center", {}),
        ("urgency_reason", {"cond_row": ["0"], "cond-0-field": "urgent", "cond-0-op": "true"}),
    ):
        f = _field(world, key)
        data = _field_data(f, **extra)
        assert c.post(_url("field_edit", world, field_id=f.pk), data, **HX).status_code == 200
    assert definition_dump(pipe_export(world.pipe)) == before


# ---------------------------------------------------------------- a native submit (no HTMX)
# Enter in a form htmx has not processed yet (it was swapped in a moment before), or a browser
# without JavaScript, submits the form itself: it posts to the same URL as hx-post, is saved the
# same way, and is answered with the design page, not with a fragment the browser would show bare.


def _form_tags(html: str) -> list[tuple[str, str]]:
    """(attributes, body) of each form of `html` that htmx posts."""
    return [
        (attrs, body)
        for attrs, body in re.findall(r"<form\b([^>]*)>(.*?)</form>", html, re.S)
        if "hx-post=" in attrs
    ]


def _attr(attrs: str, name: str) -> str:
    match = re.search(rf'\b{name}="([^"]*)"', attrs)
    return match.group(1) if match else ""


def _full_page(response) -> str:
    html = response.content.decode()
    assert "<!doctype html>" in html and 'id="design-board"' in html and 'id="design-pane"' in html
    assert "HX-Retarget" not in response and "HX-Trigger" not in response
    return html


def _landed(response, world, query: str = "") -> str:
    """The design page a saved native submit was sent back to (303), with `query` opening an editor."""
    assert response.redirect_chain == [(_url("pipe", world) + query, 303)], response.content.decode()[:500]
    assert response.status_code == 200
    return response.content.decode()


def test_its_forms_post_natively_to_the_url_htmx_posts_to_with_a_csrf_token(client, world):
    c = _as(client, world.admin)
    triage, f = world.phase("triage"), _field(world, "category")
    pages = [
        c.get(_url("pipe", world)).content.decode(),  # the board: add a phase, rename each phase
        c.get(_url("field_palette", world) + "?phase=start", **HX).content.decode(),
        c.get(_url("phase_edit", world, phase_id=triage.pk), **HX).content.decode(),
        c.get(_url("phase_delete", world, phase_id=triage.pk), **HX).content.decode(),
        c.get(_url("field_edit", world, field_id=f.pk), **HX).content.decode(),
        c.get(_url("field_delete", world, field_id=f.pk), **HX).content.decode(),
    ]
    forms = [form for html in pages for form in _form_tags(html)]
    assert len(forms) == 2 + world.pipe.phases.count() + 4
    for attrs, body in forms:
        assert _attr(attrs, "method") == "post", attrs
        assert _attr(attrs, "action") == _attr(attrs, "hx-post") != "", attrs
        assert 'name="csrfmiddlewaretoken"' in body, attrs


def test_a_native_submit_passes_the_csrf_check_with_the_forms_own_token(world):
    from django.test import Client

    c = Client(enforce_csrf_checks=True)
    c.force_login(world.admin)
    f = _field(world, "cost_center")
    page = c.get(_url("pipe", world) + f"?field={f.pk}").content.decode()
    [(attrs, body)] = [form for form in _form_tags(page) if 'id="field-form"' in form[0]]
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', body).group(1)
    data = {**_field_data(f, label="Cost centre"), "csrfmiddlewaretoken": token}
    response = c.post(_attr(attrs, "action"), data)
    assert response.status_code == 303
    f.refresh_from_db()
    assert f.label == "Cost centre"


def test_a_native_submit_adds_a_phase_and_opens_it_on_the_design_page(client, world):
    response = _as(client, world.admin).post(_url("phase_add", world), {"name": "Legal review"}, follow=True)
    phase = Phase.objects.get(pipe=world.pipe, name="Legal review")
    html = _landed(response, world, f"?phase={phase.pk}")
    assert "Phase “Legal review” added." in html and 'id="phase-editor"' in html
    keys = list(world.pipe.phases.order_by("position").values_list("key", flat=True))
    assert keys == ["triage", "approval", "legal_review", "done", "rejected"]


def test_a_native_submit_says_what_was_saved_in_brazilian_portuguese(client, world):
    triage = world.phase("triage")
    c = _as(client, world.admin)
    url = _url("phase_edit", world, phase_id=triage.pk)
    response = c.post(url, _phase_data(triage, name="Triagem"), follow=True, HTTP_ACCEPT_LANGUAGE="pt-br")
    assert "Fase “Triagem” salva." in _landed(response, world, f"?phase={triage.pk}")


def test_a_native_submit_of_a_phase_without_a_name_shows_the_whole_page_and_adds_nothing(client, world):
    before = world.pipe.phases.count()
    response = _as(client, world.admin).post(_url("phase_add", world), {"name": "  "})
    assert response.status_code == 422
    html = _full_page(response)
    assert 'id="design-board-errors"' in html and "Give the new phase a name." in html
    assert world.pipe.phases.count() == before


def test_a_native_submit_renames_a_phase(client, world):
    triage = world.phase("triage")
    url = _url("phase_rename", world, phase_id=triage.pk)
    html = _landed(
        _as(client, world.admin).post(url, {"name": "Inbox"}, follow=True), world, f"?phase={triage.pk}"
    )
    assert "Phase renamed to “Inbox”." in html
    triage.refresh_from_db()
    assert triage.name == "Inbox"


def test_a_native_submit_of_an_empty_phase_name_shows_the_whole_page_and_renames_nothing(client, world):
    triage = world.phase("triage")
    response = _as(client, world.admin).post(_url("phase_rename", world, phase_id=triage.pk), {"name": ""})
    assert response.status_code == 422
    html = _full_page(response)
    assert f'id="rename-error-{triage.pk}"' in html and "Give the phase a name." in html
    triage.refresh_from_db()
    assert triage.name == "Triage"


def test_a_native_submit_saves_a_phases_settings(client, world):
    triage = world.phase("triage")
    data = _phase_data(triage, name="First look", sla_hours="12")
    response = _as(client, world.admin).post(_url("phase_edit", world, phase_id=triage.pk), data, follow=True)
    html = _landed(response, world, f"?phase={triage.pk}")
    assert "Phase “First look” saved." in html and 'id="phase-editor"' in html
    triage.refresh_from_db()
    assert (triage.name, triage.sla_hours) == ("First look", 12)


def test_a_native_submit_of_bad_phase_settings_shows_the_whole_page_and_saves_nothing(client, world):
    triage = world.phase("triage")
    before = (triage.name, triage.sla_hours)
    data = _phase_data(triage, name="Changed", sla_hours="soon")
    response = _as(client, world.admin).post(_url("phase_edit", world, phase_id=triage.pk), data)
    assert response.status_code == 422
    html = _full_page(response)
    assert 'id="phase-editor"' in html and 'id="phase-sla-error"' in html
    triage.refresh_from_db()
    assert (triage.name, triage.sla_hours) == before == ("Triage", 24)


def test_a_native_submit_deletes_a_phase(client, world):
    rejected = world.phase("rejected")
    url = _url("phase_delete", world, phase_id=rejected.pk)
    html = _landed(_as(client, world.admin).post(url, follow=True), world)
    assert "“Rejected” was deleted." in html and 'id="start-preview"' in html
    assert not Phase.objects.filter(pk=rejected.pk).exists()


def test_a_native_submit_deleting_a_phase_with_cards_and_no_destination_shows_the_whole_page(client, world):
    card = _triaged(world)
    rejected = world.phase("rejected")
    card_move(actor=Actor.for_user(world.admin), card=card, to_phase=rejected)
    response = _as(client, world.admin).post(_url("phase_delete", world, phase_id=rejected.pk), {})
    assert response.status_code == 422
    html = _full_page(response)
    assert 'id="phase-delete"' in html and 'id="phase-move-error"' in html
    assert Phase.objects.filter(pk=rejected.pk).exists()
    card.refresh_from_db()
    assert card.phase_id == rejected.pk


def test_a_native_submit_adds_a_field_and_opens_it(client, world):
    triage = world.phase("triage")
    response = _as(client, world.admin).post(
        _url("field_add", world), {"phase": triage.pk, "type": FieldType.NUMBER}, follow=True
    )
    f = Field.objects.get(pipe=world.pipe, phase=triage, type=FieldType.NUMBER)
    html = _landed(response, world, f"?field={f.pk}")
    assert "Field “Number” added." in html and 'id="field-editor"' in html


def test_a_native_submit_of_an_unknown_field_type_shows_the_whole_page_and_adds_nothing(client, world):
    before = world.pipe.fields.count()
    response = _as(client, world.admin).post(_url("field_add", world), {"phase": "start", "type": "numbr"})
    assert response.status_code == 422
    html = _full_page(response)
    assert 'id="design-board-errors"' in html and "Choose a field type from the list." in html
    assert world.pipe.fields.count() == before


def test_a_native_submit_saves_a_field(client, world):
    f = _field(world, "cost_center")
    data = _field_data(f, label="Cost centre", help_text="As on the budget sheet")
    response = _as(client, world.admin).post(_url("field_edit", world, field_id=f.pk), data, follow=True)
    html = _landed(response, world, f"?field={f.pk}")
    assert "Field “Cost centre” saved." in html and 'id="field-editor"' in html
    f.refresh_from_db()
    assert (f.label, f.help_text) == ("Cost centre", "As on the budget sheet")


def test_a_native_submit_of_a_bad_field_shows_the_whole_page_and_saves_nothing(client, world):
    f = _field(world, "category")
    data = _field_data(f, label="Kind", options=[""])
    response = _as(client, world.admin).post(_url("field_edit", world, field_id=f.pk), data)
    assert response.status_code == 422
    html = _full_page(response)
    assert 'id="field-editor"' in html and 'id="field-options-error"' in html
    f.refresh_from_db()
    assert (f.label, f.options) == ("Category", ["Hardware", "Software", "Services"])


def test_a_native_submit_deletes_a_field(client, world):
    f = _field(world, "requester_email")
    html = _landed(
        _as(client, world.admin).post(_url("field_delete", world, field_id=f.pk), follow=True), world
    )
    assert f"“{f.label}” was deleted." in html
    assert not Field.objects.filter(pk=f.pk).exists()


def test_a_native_submit_deleting_a_field_a_condition_reads_shows_the_whole_page(client, world):
    f = _field(world, "urgent")
    response = _as(client, world.admin).post(_url("field_delete", world, field_id=f.pk))
    assert response.status_code == 422
    html = _full_page(response)
    assert 'id="field-delete"' in html and "“Why is it urgent?”" in html
    assert Field.objects.filter(pk=f.pk).exists()


@pytest.mark.parametrize(
    "name,what,data",
    [
        ("phase_add", None, {"name": "Legal review"}),
        ("phase_rename", "phase", {"name": "Inbox"}),
        ("phase_edit", "phase", {"name": "First look"}),
        ("field_add", None, {"phase": "start", "type": "number"}),
        ("field_edit", "field", {"label": "Cost centre", "key": "cost_center"}),
        ("field_delete", "field", {}),
    ],
)
def test_htmx_still_gets_its_fragment_not_a_redirect(client, world, name, what, data):
    response = _as(client, world.admin).post(_url(name, world, **_kwargs(world, what)), data, **HX)
    assert response.status_code == 200, response.content.decode()[:500]
    html = response.content.decode()
    assert "<!doctype html>" not in html and "Location" not in response
    assert json.loads(response["HX-Trigger"])["designChanged"] is True
