"""The role matrix: what each role may do on a pipe, and who sees which pipes."""

import pytest
from django.contrib.auth.models import Group
from guardian.shortcuts import assign_perm

from pipes.choices import OrgRole, PipeRole
from pipes.models import Membership
from pipes.roles import access_cache, pipe_access, pipe_role_grant, pipe_role_revoke, pipes_for_user
from tests.personas import build_purchase_pipe

#            persona      administer work  review request board  pii
MATRIX = [
    ("owner", True, True, True, True, True, True),
    ("admin", True, True, True, True, True, True),
    ("member", False, True, False, True, True, True),
    ("reviewer", False, False, True, False, True, False),
    ("requester", False, False, False, True, False, False),
    ("viewer", False, False, False, False, True, False),
    ("outsider", False, False, False, False, False, False),
]


@pytest.mark.parametrize(("persona", "administer", "work", "review", "file", "board", "pii"), MATRIX)
def test_it_grants_each_role_its_permissions(world, persona, administer, work, review, file, board, pii):
    access = pipe_access(user=getattr(world, persona), pipe=world.pipe)
    assert (
        access.can_administer,
        access.can_work,
        access.can_review,
        access.can_request,
        access.can_view_board,
        access.can_view_pii,
    ) == (administer, work, review, file, board, pii)


def test_it_names_the_role_a_person_holds(world):
    assert pipe_access(user=world.reviewer, pipe=world.pipe).role == PipeRole.REVIEWER
    assert pipe_access(user=world.requester, pipe=world.pipe).role == PipeRole.REQUESTER
    assert pipe_access(user=world.outsider, pipe=world.pipe).role is None


def test_it_replaces_a_role_instead_of_adding_to_it(world):
    pipe_role_grant(pipe=world.pipe, user=world.member, role=PipeRole.VIEWER)
    access = pipe_access(user=world.member, pipe=world.pipe)
    assert access.role == PipeRole.VIEWER and not access.can_work
    pipe_role_revoke(pipe=world.pipe, user=world.member)
    assert pipe_access(user=world.member, pipe=world.pipe).perms == frozenset()


def test_it_shows_people_only_the_pipes_they_take_part_in(world):
    other_pipe = build_purchase_pipe(world.org, slug="other", code="OT")
    assert set(pipes_for_user(world.member)) == {world.pipe}
    assert set(pipes_for_user(world.owner)) == {world.pipe, other_pipe}  # owners see every pipe of their org
    assert set(pipes_for_user(world.outsider)) == set()
    assert world.member.organizations.get() == world.org


def test_it_gives_inactive_people_nothing(world):
    world.admin.is_active = False
    world.admin.save()
    assert not pipe_access(user=world.admin, pipe=world.pipe).perms
    assert not pipes_for_user(world.admin).exists()


def test_it_answers_the_same_access_question_once_per_request(world, django_assert_num_queries):
    with access_cache():
        with django_assert_num_queries(1):
            first = pipe_access(user=world.member, pipe=world.pipe)
            again = pipe_access(user=world.member, pipe=world.pipe)
        assert first == again and first.can_work
    with django_assert_num_queries(2):  # outside a request nothing is remembered
        pipe_access(user=world.member, pipe=world.pipe)
        pipe_access(user=world.member, pipe=world.pipe)


def test_it_forgets_what_it_remembered_when_roles_or_owners_change(world):
    with access_cache():
        assert pipe_access(user=world.member, pipe=world.pipe).can_work
        pipe_role_grant(pipe=world.pipe, user=world.member, role=PipeRole.VIEWER)
        assert not pipe_access(user=world.member, pipe=world.pipe).can_work
        assert not pipe_access(user=world.viewer, pipe=world.pipe).can_administer
        Membership.objects.filter(user=world.viewer, organization=world.org).update(role=OrgRole.OWNER)
        membership = Membership.objects.get(user=world.viewer, organization=world.org)
        membership.save()  # a saved membership (the admin, the services) is a change it hears of
        assert pipe_access(user=world.viewer, pipe=world.pipe).can_administer


def test_it_counts_permissions_held_through_a_group(world):
    group = Group.objects.create(name="Buyers")
    assign_perm("work_pipe", group, world.pipe)
    assign_perm("view_pipe", group, world.pipe)
    assert not pipe_access(user=world.outsider, pipe=world.pipe).can_work
    world.outsider.groups.add(group)
    access = pipe_access(user=world.outsider, pipe=world.pipe)
    assert access.can_work and access.can_view_board and not access.can_administer


def test_it_keeps_answers_apart_per_person_and_pipe(world):
    other_pipe = build_purchase_pipe(world.org, slug="other", code="OT")
    with access_cache():
        assert pipe_access(user=world.member, pipe=world.pipe).can_work
        assert not pipe_access(user=world.member, pipe=other_pipe).perms
        assert not pipe_access(user=world.viewer, pipe=world.pipe).can_work
        assert pipe_access(user=world.owner, pipe=other_pipe).can_administer
