"""The designer's members page: roles given by name, through design_grant / design_invite / design_revoke."""

from __future__ import annotations

import re

from django.contrib.auth import get_user_model
from django.core import mail
from django.urls import reverse
from guardian.models import UserObjectPermission

from pipes.choices import PipeRole
from pipes.models import Membership
from pipes.roles import pipe_access
from tests.personas import PASSWORD, make_user

HX = {"HTTP_HX_REQUEST": "true"}


def _as(client, user):
    assert client.login(username=user.username, password=PASSWORD)
    return client


def _grants():
    return sorted(UserObjectPermission.objects.values_list("user_id", "permission_id", "object_pk"))


def test_it_lists_the_pipes_people_with_their_roles_and_offers_the_organizations_others(client, world):
    colleague = make_user("colleague", first_name="Carla")
    Membership.objects.create(organization=world.org, user=colleague)
    page = _as(client, world.admin).get(reverse("designer:members", args=[world.pipe.pk]))
    assert page.status_code == 200
    html = page.content.decode()
    rows = re.findall(r'<tr id="member-(\d+)"', html)
    assert str(world.owner.pk) == rows[0]  # the owner first, then admins, members...
    assert {
        str(p.pk) for p in (world.admin, world.member, world.reviewer, world.requester, world.viewer)
    } <= set(rows)
    assert str(colleague.pk) not in rows
    assert f'<option value="{colleague.pk}">Carla' in html  # offered in "Add a person"
    assert "outsider" not in html
    assert "Decides the reviews given to them" in html  # one line on what each role allows


def test_it_gives_a_role_by_its_name_without_reloading_the_page(client, world):
    colleague = make_user("colleague")
    Membership.objects.create(organization=world.org, user=colleague)
    response = _as(client, world.admin).post(
        reverse("designer:members", args=[world.pipe.pk]), {"user": colleague.pk, "role": "reviewer"}, **HX
    )
    assert response.status_code == 200
    html = response.content.decode()
    assert "<html" not in html and 'id="members"' in html  # the region, swapped in place
    assert "Colleague is now reviewer." in html
    assert pipe_access(user=colleague, pipe=world.pipe).role == PipeRole.REVIEWER


def test_it_changes_and_takes_back_a_role(client, world):
    url = reverse("designer:member", args=[world.pipe.pk, world.viewer.pk])
    _as(client, world.admin).post(url, {"role": "member"}, **HX)
    assert pipe_access(user=world.viewer, pipe=world.pipe).role == PipeRole.MEMBER
    response = client.post(url, {"role": ""}, **HX)
    assert response.status_code == 200 and "no longer has a role" in response.content.decode()
    assert not pipe_access(user=world.viewer, pipe=world.pipe).perms


def test_it_refuses_people_who_do_not_administer_the_pipe(client, world):
    before = _grants()
    for person in (world.member, world.reviewer, world.viewer):
        _as(client, person)
        assert client.get(reverse("designer:members", args=[world.pipe.pk])).status_code == 403
        response = client.post(
            reverse("designer:members", args=[world.pipe.pk]), {"user": person.pk, "role": "admin"}, **HX
        )
        assert response.status_code == 403
        response = client.post(reverse("designer:member", args=[world.pipe.pk, person.pk]), {"role": "admin"})
        assert response.status_code == 403
    assert _grants() == before


def test_it_hides_another_organizations_pipe(client, world):
    before = _grants()
    _as(client, world.outsider)
    assert client.get(reverse("designer:members", args=[world.pipe.pk])).status_code == 404
    response = client.post(
        reverse("designer:members", args=[world.pipe.pk]), {"user": world.outsider.pk, "role": "admin"}
    )
    assert response.status_code == 404
    assert _grants() == before


def test_it_refuses_a_person_from_outside_the_organization(client, world):
    before = _grants()
    response = _as(client, world.admin).post(
        reverse("designer:members", args=[world.pipe.pk]), {"user": world.outsider.pk, "role": "admin"}, **HX
    )
    assert response.status_code == 422
    assert "Choose a person of this organization." in response.content.decode()
    response = client.post(
        reverse("designer:member", args=[world.pipe.pk, world.outsider.pk]), {"role": "admin"}
    )
    assert response.status_code == 422
    assert _grants() == before and not pipe_access(user=world.outsider, pipe=world.pipe).perms


def test_it_never_removes_the_pipes_last_admin(client, world):
    url = reverse("designer:member", args=[world.pipe.pk, world.admin.pk])
    response = _as(client, world.owner).post(url, {"role": ""}, **HX)
    assert response.status_code == 422
    assert "is the last admin of this pipe" in response.content.decode()
    response = client.post(url, {"role": "viewer"}, **HX)
    assert response.status_code == 422
    assert pipe_access(user=world.admin, pipe=world.pipe).can_administer


def test_it_invites_someone_new_by_email_who_then_chooses_a_password(
    client, world, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = _as(client, world.admin).post(
            reverse("designer:members", args=[world.pipe.pk]),
            {"email": "Bia.Lima@acme.example", "name": "Bia Lima", "role": "requester"},
            **HX,
        )
    assert response.status_code == 200, response.content.decode()[:2000]
    assert "Invitation sent to Bia.Lima@acme.example." in response.content.decode()
    bia = get_user_model().objects.get(email="bia.lima@acme.example")
    assert not bia.has_usable_password() and bia.first_name == "Bia Lima"
    assert Membership.objects.filter(organization=world.org, user=bia).exists()
    assert pipe_access(user=bia, pipe=world.pipe).role == PipeRole.REQUESTER
    (message,) = mail.outbox
    assert message.to == ["bia.lima@acme.example"] and "Requester" in message.body
    link = re.search(r"https?://\S+/accounts/set-password/\S+/", message.body).group(0)
    client.logout()
    form = client.get(link, follow=True)
    assert form.status_code == 200 and "Choose your password" in form.content.decode()
    done = client.post(
        form.redirect_chain[-1][0], {"new_password1": "a-Long-pass-99", "new_password2": "a-Long-pass-99"}
    )
    assert done.status_code == 302
    assert client.login(username=bia.username, password="a-Long-pass-99")
    assert "This link no longer works" in client.get(link, follow=True).content.decode()


def test_it_gives_a_role_to_an_existing_account_invited_by_email_without_a_second_account(
    client, world, django_capture_on_commit_callbacks
):
    colleague = make_user("colleague")
    Membership.objects.create(organization=world.org, user=colleague)
    with django_capture_on_commit_callbacks(execute=True):
        _as(client, world.admin).post(
            reverse("designer:members", args=[world.pipe.pk]),
            {"email": colleague.email.upper(), "role": "viewer"},
            **HX,
        )
    assert get_user_model().objects.filter(email__iexact=colleague.email).count() == 1
    assert pipe_access(user=colleague, pipe=world.pipe).role == PipeRole.VIEWER
    assert "set-password" not in mail.outbox[0].body


def test_it_refuses_a_bad_email_or_no_role_and_creates_nobody(client, world):
    people = get_user_model().objects.count()
    url = reverse("designer:members", args=[world.pipe.pk])
    response = _as(client, world.admin).post(url, {"email": "not an email", "role": "viewer"}, **HX)
    assert response.status_code == 422 and "Enter an email address" in response.content.decode()
    response = client.post(url, {"email": "new@acme.example", "role": "boss"}, **HX)
    assert response.status_code == 422 and "Choose a role." in response.content.decode()
    response = client.post(url, {"role": "viewer"}, **HX)
    assert response.status_code == 422 and "Choose a person, or enter an email" in response.content.decode()
    assert get_user_model().objects.count() == people
