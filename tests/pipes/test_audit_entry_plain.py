"""The audit entry of a card's field change, written in plain SQL on PostgreSQL (services.common
._audit_update), is the entry django-auditlog's own log_create writes: same columns, the actor the audit
log's context sets, the same correlation id."""

import pytest
from auditlog.cid import set_cid
from auditlog.context import set_actor
from auditlog.models import LogEntry
from django.db import transaction

from pipes.services import Actor, card_create, card_lock, card_update_fields
from tests.personas import good_start_values

pytestmark = pytest.mark.django_db

COMPARED = [f.attname for f in LogEntry._meta.concrete_fields if f.name not in ("id", "timestamp")]


def test_the_entry_of_a_field_change_is_the_one_log_create_writes(world):
    card = card_create(actor=Actor.for_user(world.requester), pipe=world.pipe, values=good_start_values())
    set_cid(None)
    with set_actor(world.member, remote_addr="10.1.2.3"):
        with transaction.atomic():
            locked = card_lock(card=card)
            card_update_fields(
                actor=Actor.for_user(world.member), card=locked, values={"category": "Hardware"}
            )
        written = LogEntry.objects.get_for_object(card).filter(action=LogEntry.Action.UPDATE).latest("id")
        expected = LogEntry.objects.log_create(locked, action=LogEntry.Action.UPDATE, changes=written.changes)
    expected.refresh_from_db()

    assert written.actor_id == world.member.pk
    assert written.remote_addr == "10.1.2.3"
    assert "Hardware" in written.changes_dict["values"][1]
    assert {name: getattr(written, name) for name in COMPARED} == {
        name: getattr(expected, name) for name in COMPARED
    }
