"""Every request's session and user reads (pipes.accounts: plain SQL in place of the ORM) answer as
Django's own stores do: a signed-in person is recognised; an expired session, a deactivated or
deleted account, or an unknown session key is signed out."""

import datetime as dt

import pytest
from django.contrib.sessions.models import Session
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from pipes.accounts import AccountBackend
from tests.personas import PASSWORD

pytestmark = pytest.mark.django_db

HOME = "/"
BOARD = "/pipes/{}/"


def signed_in(client, world):
    response = client.post("/accounts/login/", {"username": "member", "password": PASSWORD})
    assert response.status_code == 302
    return client


def test_a_signed_in_person_sees_their_board_with_one_read_each_of_session_and_user(client, world):
    signed_in(client, world)
    with CaptureQueriesContext(connection) as queries:
        response = client.get(BOARD.format(world.pipe.pk))
    assert response.status_code == 200
    assert response.wsgi_request.user == world.member
    session_reads = [q for q in queries if "django_session" in q["sql"] and q["sql"].startswith("SELECT")]
    user_reads = [q for q in queries if q["sql"].startswith('SELECT "id", "password"')]
    assert len(session_reads) == 1 and len(user_reads) == 1


def test_an_expired_session_signs_the_person_out(client, world):
    signed_in(client, world)
    Session.objects.update(expire_date=timezone.now() - dt.timedelta(seconds=1))
    response = client.get(BOARD.format(world.pipe.pk))
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]


def test_a_deactivated_account_is_signed_out_at_its_next_request(client, world):
    signed_in(client, world)
    world.member.is_active = False
    world.member.save(update_fields=["is_active"])
    response = client.get(BOARD.format(world.pipe.pk))
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]


def test_a_deleted_account_is_signed_out(client, world):
    signed_in(client, world)
    world.member.delete()
    response = client.get(BOARD.format(world.pipe.pk))
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]


def test_the_backend_finds_no_one_for_an_id_that_is_not_one(world):
    backend = AccountBackend()
    assert backend.get_user(str(world.member.pk)) == world.member
    assert backend.get_user("not-a-number") is None
    assert backend.get_user(str(world.member.pk + 10_000)) is None


def test_an_unknown_session_key_is_a_visitor(client, world):
    client.cookies["sessionid"] = "x" * 32
    response = client.get(BOARD.format(world.pipe.pk))
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]
