"""The admin as a designer for pipe admins: a pipe with its phases, fields and labels on one page,
saved through the design service with the same checks as everywhere (the live-process rules too)."""

from __future__ import annotations

from django.urls import reverse

from pipes.models import Card, Field, Phase, Pipe
from pipes.roles import pipe_access
from pipes.services import Actor, card_create
from pipes.timeline import verify_timelines
from tests.personas import PASSWORD, good_start_values
from tests.pipes.test_admin_tenancy import _form_data


def _as(client, user):
    user.is_staff = True
    user.save(update_fields=["is_staff"])
    assert client.login(username=user.username, password=PASSWORD)
    return client


def _change(client, pipe):
    url = reverse("admin:pipes_pipe_change", args=[pipe.pk])
    page = client.get(url)
    assert page.status_code == 200
    return url, page, _form_data(page)


def _row(page, prefix, **match):
    """The index of the inline row of formset `prefix` whose instance matches."""
    for inline in page.context["inline_admin_formsets"]:
        if inline.formset.prefix == prefix:
            for i, form in enumerate(inline.formset.initial_forms):
                if all(getattr(form.instance, k) == v for k, v in match.items()):
                    return i, form
    raise AssertionError(f"no {prefix} row {match}")


def _card(world):
    return card_create(actor=Actor.for_user(world.member), pipe=world.pipe, values=good_start_values())


def _empty_formsets(prefixes=("phases", "fields", "labels")) -> dict:
    data = {}
    for p in prefixes:
        data.update({f"{p}-TOTAL_FORMS": "0", f"{p}-INITIAL_FORMS": "0", f"{p}-MIN_NUM_FORMS": "0"})
        data[f"{p}-MAX_NUM_FORMS"] = "1000"
    return data


def test_it_lets_a_pipe_admin_who_is_not_an_owner_add_a_pipe_with_its_phases_and_fields(client, world):
    _as(client, world.admin)
    add = client.get(reverse("admin:pipes_pipe_add"))
    assert add.status_code == 200
    offered = list(add.context["adminform"].form.fields["organization"].queryset)
    assert offered == [world.org]
    data = {
        "organization": world.org.pk,
        "name": "Travel",
        "slug": "travel",
        "code": "TR",
        "description": "",
        "title_field": "destination",
        "key_fields": "destination",
        "portal_group": "",
        **_empty_formsets(),
        "phases-TOTAL_FORMS": "2",
        "phases-0-position": "1",
        "phases-0-name": "Booking",
        "phases-0-key": "booking",
        "phases-1-position": "2",
        "phases-1-name": "Booked",
        "phases-1-key": "booked",
        "phases-1-is_final": "on",
        "fields-TOTAL_FORMS": "1",
        "fields-0-key": "destination",
        "fields-0-label": "Destination",
        "fields-0-type": "short_text",
        "fields-0-position": "1",
        "fields-0-required": "on",
        "fields-0-options": "",
        "fields-0-validation": "{}",
        "fields-0-config": "{}",
        "fields-0-condition": "null",
        "fields-0-visible_to_requester": "on",
    }
    response = client.post(reverse("admin:pipes_pipe_add"), data)
    assert response.status_code == 302, response.content.decode()[:3000]
    pipe = Pipe.objects.get(slug="travel")
    assert [p.key for p in pipe.phases.order_by("position")] == ["booking", "booked"]
    assert pipe.fields.get().key == "destination" and pipe.key_fields == ["destination"]
    assert pipe_access(user=world.admin, pipe=pipe).can_administer


def test_it_saves_the_pipe_page_with_its_inlines_unchanged_and_changed(client, world):
    _as(client, world.admin)
    url, page, data = _change(client, world.pipe)
    assert "created_at" not in page.context["adminform"].form.fields  # timestamps are read-only
    response = client.post(url, data)
    assert response.status_code == 302, response.content.decode()[:3000]
    i, _form = _row(page, "phases", key="triage")
    data[f"phases-{i}-name"] = "Screening"
    assert client.post(url, data).status_code == 302
    assert world.phase("triage").name == "Screening"


def test_it_shows_the_checkers_message_beside_the_inline_row_and_field_and_saves_nothing(client, world):
    _as(client, world.admin)
    url, page, data = _change(client, world.pipe)
    i, _form = _row(page, "fields", key="cost_center")
    data[f"fields-{i}-options"] = "red\nblue"
    data[f"fields-{i}-validation"] = '{"bogus": 1}'
    j, _phase = _row(page, "phases", key="triage")
    data[f"phases-{j}-name"] = "Renamed"
    response = client.post(url, data)
    assert response.status_code == 200
    row = next(
        x for x in response.context["inline_admin_formsets"] if x.formset.prefix == "fields"
    ).formset.forms[i]
    assert any("only select" in e for e in row.errors["options"])
    assert row.errors["validation"] == ["bogus: unknown key"]
    assert Field.objects.get(pipe=world.pipe, key="cost_center").options == []
    assert world.phase("triage").name == "Triage"  # nothing of the post was kept


def test_it_refuses_a_key_change_once_cards_use_it_in_the_inline(client, world):
    _card(world)
    _as(client, world.admin)
    url, page, data = _change(client, world.pipe)
    i, _form = _row(page, "fields", key="item")
    data[f"fields-{i}-key"] = "thing"
    response = client.post(url, data)
    assert response.status_code == 200
    row = next(
        x for x in response.context["inline_admin_formsets"] if x.formset.prefix == "fields"
    ).formset.forms[i]
    assert "1 card already uses the key “item”" in row.errors["key"][0]
    assert Field.objects.filter(pipe=world.pipe, key="item").exists()


def test_it_deletes_an_inline_field_holding_data_only_once_confirmed(client, world):
    card = _card(world)
    _as(client, world.admin)
    url, page, data = _change(client, world.pipe)
    i, _form = _row(page, "fields", key="requester_email")
    data[f"fields-{i}-DELETE"] = "on"
    response = client.post(url, data)
    assert response.status_code == 200
    html = response.content.decode()
    assert "1 card holds a value in this field." in html and 'name="_confirm_impact"' in html
    assert Field.objects.filter(pipe=world.pipe, key="requester_email").exists()
    data["_confirm_impact"] = "1"
    response = client.post(url, data)
    assert response.status_code == 302, response.content.decode()[:3000]
    assert not Field.objects.filter(pipe=world.pipe, key="requester_email").exists()
    card.refresh_from_db()
    assert card.values["requester_email"] == "ana@example.com"
    assert not list(verify_timelines(Card.objects.filter(pipe=world.pipe)))


def test_it_refuses_to_delete_an_inline_phase_with_cards_in_it(client, world):
    _card(world)
    _as(client, world.admin)
    url, page, data = _change(client, world.pipe)
    i, _form = _row(page, "phases", key="triage")
    data[f"phases-{i}-DELETE"] = "on"
    data["_confirm_impact"] = "1"
    response = client.post(url, data)
    assert response.status_code == 200
    # Django's own check of protected rows says it first, naming the card (the service would too).
    assert "PR-1" in response.content.decode()
    assert Phase.objects.filter(pipe=world.pipe, key="triage").exists()


def test_it_archives_a_pipe_with_cards_instead_of_deleting_it(client, world):
    _card(world)
    _as(client, world.admin)
    response = client.get(reverse("admin:pipes_pipe_delete", args=[world.pipe.pk]), follow=True)
    assert "archive it instead" in response.content.decode()
    assert Pipe.objects.filter(pk=world.pipe.pk).exists()
    response = client.post(
        reverse("admin:pipes_pipe_changelist"),
        {"action": "archive_pipes", "_selected_action": [world.pipe.pk]},
    )
    assert response.status_code == 302
    assert Pipe.objects.get(pk=world.pipe.pk).is_archived
    client.post(
        reverse("admin:pipes_pipe_changelist"),
        {"action": "restore_pipes", "_selected_action": [world.pipe.pk]},
    )
    assert not Pipe.objects.get(pk=world.pipe.pk).is_archived


def test_it_refuses_members_the_archive_action(client, world):
    _as(client, world.member)
    client.post(
        reverse("admin:pipes_pipe_changelist"),
        {"action": "archive_pipes", "_selected_action": [world.pipe.pk]},
    )
    assert not Pipe.objects.get(pk=world.pipe.pk).is_archived


def test_it_says_on_a_fields_delete_page_how_many_cards_hold_a_value_and_deletes_on_confirmation(
    client, world
):
    card = _card(world)
    field = Field.objects.get(pipe=world.pipe, key="requester_email")
    _as(client, world.admin)
    url = reverse("admin:pipes_field_delete", args=[field.pk])
    assert "1 card holds a value in this field." in client.get(url).content.decode()
    assert client.post(url, {"post": "yes"}).status_code == 302
    assert not Field.objects.filter(pk=field.pk).exists()
    card.refresh_from_db()
    assert card.values["requester_email"] == "ana@example.com"


def test_it_refuses_a_phase_with_cards_on_its_delete_page(client, world):
    _card(world)
    triage = world.phase("triage")
    _as(client, world.admin)
    response = client.post(
        reverse("admin:pipes_phase_delete", args=[triage.pk]), {"post": "yes"}, follow=True
    )
    assert Phase.objects.filter(pk=triage.pk).exists()
    assert "card" in response.content.decode()


def test_it_edits_a_select_fields_options_one_per_line(client, world):
    _as(client, world.admin)
    url, page, data = _change(client, world.pipe)
    i, form = _row(page, "fields", key="category")
    assert data[f"fields-{i}-options"] == "Hardware\nSoftware\nServices"
    data[f"fields-{i}-options"] = "Hardware\n  Software \n\nServices\nTravel"
    assert client.post(url, data).status_code == 302
    assert Field.objects.get(pipe=world.pipe, key="category").options == [
        "Hardware",
        "Software",
        "Services",
        "Travel",
    ]
