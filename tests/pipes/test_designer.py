"""The designer's first pages: the template gallery, create from a template or from scratch, YAML
import and export, and a pipe's design overview -- each through its real URL, per persona."""

from __future__ import annotations

import pytest
from django.urls import reverse

from pipes.design import definition_dump, definition_load, pipe_export
from pipes.models import Pipe
from tests.personas import make_user

pytestmark = pytest.mark.django_db

# What each persona gets from a page: the designer is for pipe admins and organization owners.
# The outsider owns another organization: they design (so the index opens) but Acme's pipe is
# none of their business (404).
INDEX = {"owner": 200, "admin": 200, "member": 403, "outsider": 200}
PIPE_PAGE = {"owner": 200, "admin": 200, "member": 403, "outsider": 404}


def _as(client, user):
    client.force_login(user)
    return client


def _count(world):
    return Pipe.objects.filter(organization=world.org).count()


@pytest.mark.parametrize("role,status", sorted(INDEX.items()))
def test_it_opens_the_gallery_to_people_who_design(client, world, role, status):
    assert _as(client, getattr(world, role)).get(reverse("designer:index")).status_code == status


@pytest.mark.parametrize("role,status", sorted(INDEX.items()))
def test_it_opens_the_create_form_to_people_who_design(client, world, role, status):
    url = reverse("designer:create") + "?template=accounts_payable"
    assert _as(client, getattr(world, role)).get(url).status_code == status


@pytest.mark.parametrize("role,status", sorted(INDEX.items()))
def test_it_opens_the_import_form_to_people_who_design(client, world, role, status):
    assert _as(client, getattr(world, role)).get(reverse("designer:import")).status_code == status


@pytest.mark.parametrize("role,status", sorted(PIPE_PAGE.items()))
def test_it_opens_a_pipes_design_page_to_its_admins_and_owners(client, world, role, status):
    url = reverse("designer:pipe", args=[world.pipe.pk])
    assert _as(client, getattr(world, role)).get(url).status_code == status


@pytest.mark.parametrize("role,status", sorted(PIPE_PAGE.items()))
def test_it_exports_only_to_the_pipes_admins_and_owners(client, world, role, status):
    url = reverse("designer:export", args=[world.pipe.pk])
    assert _as(client, getattr(world, role)).get(url).status_code == status


@pytest.mark.parametrize(
    "name,kwargs",
    [("designer:index", {}), ("designer:create", {}), ("designer:import", {}), ("designer:pipe", None)],
)
def test_it_sends_anonymous_people_to_sign_in(client, world, name, kwargs):
    url = reverse(name, kwargs=kwargs if kwargs is not None else {"pipe_id": world.pipe.pk})
    response = client.get(url)
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]


def test_it_shows_every_shipped_template_with_its_phases(client, world):
    html = _as(client, world.owner).get(reverse("designer:index")).content.decode()
    for key in ("accounts_payable", "credit_analysis", "employee_onboarding", "supplier_onboarding"):
        assert f'id="template-{key}"' in html
    assert "Invoice approval" in html and 'class="mini-col' in html
    assert 'id="template-scratch"' in html


def test_it_prefills_the_create_form_from_the_template(client, world):
    html = (
        _as(client, world.owner)
        .get(reverse("designer:create") + "?template=accounts_payable")
        .content.decode()
    )
    assert 'value="Invoice approval"' in html and 'value="accounts-payable"' in html and 'value="AP"' in html


def test_it_creates_a_pipe_from_a_template(client, world):
    response = _as(client, world.owner).post(
        reverse("designer:create"),
        {
            "template": "accounts_payable",
            "organization": world.org.pk,
            "name": "Invoices",
            "slug": "invoices",
            "code": "INV",
        },
    )
    pipe = Pipe.objects.get(organization=world.org, slug="invoices")
    assert response.status_code == 302 and response["Location"] == reverse("designer:pipe", args=[pipe.pk])
    assert (pipe.name, pipe.code) == ("Invoices", "INV")
    assert pipe.phases.count() == len(definition_load_template("accounts_payable")["phases"])


def definition_load_template(name):
    from pipes.design import process_template_load

    return process_template_load(name)


def test_it_creates_a_pipe_from_scratch_with_one_start_field_and_two_phases(client, world):
    _as(client, world.owner).post(
        reverse("designer:create"),
        {"template": "scratch", "organization": world.org.pk, "name": "Ideas", "slug": "ideas", "code": "ID"},
    )
    pipe = Pipe.objects.get(organization=world.org, slug="ideas")
    assert pipe.fields.filter(phase__isnull=True).count() == 1
    assert [p.is_final for p in pipe.phases.order_by("position")] == [False, True]


def test_it_shows_a_refusal_at_the_field_it_names(client, world):
    response = _as(client, world.owner).post(
        reverse("designer:create"),
        {
            "template": "scratch",
            "organization": world.org.pk,
            "name": "Ideas",
            "slug": "ideas",
            "code": "no way!",
        },
    )
    assert response.status_code == 422
    html = response.content.decode()
    assert "form-row has-error" in html and "must be 1 to 8 letters or digits" in html
    assert not Pipe.objects.filter(slug="ideas").exists()


def test_it_refuses_a_taken_slug_in_the_form(client, world):
    before = _count(world)
    response = _as(client, world.owner).post(
        reverse("designer:create"),
        {
            "template": "scratch",
            "organization": world.org.pk,
            "name": "Again",
            "slug": world.pipe.slug,
            "code": "AG",
        },
    )
    assert response.status_code == 422 and "already has a pipe with the slug" in response.content.decode()
    assert _count(world) == before


def test_it_lets_a_pipe_admin_create_a_pipe_in_their_organization_and_design_it(client, world):
    # The design service lets pipe admins of an organization create pipes in it (not only owners).
    response = _as(client, world.admin).post(
        reverse("designer:create"),
        {"template": "scratch", "organization": world.org.pk, "name": "Mine", "slug": "mine", "code": "MI"},
    )
    pipe = Pipe.objects.get(organization=world.org, slug="mine")
    assert response.status_code == 302 and response["Location"] == reverse("designer:pipe", args=[pipe.pk])
    assert client.get(reverse("designer:pipe", args=[pipe.pk])).status_code == 200


def test_it_does_not_let_an_owner_of_another_organization_create_in_this_one(client, world):
    before = _count(world)
    response = _as(client, world.outsider).post(
        reverse("designer:create"),
        {
            "template": "scratch",
            "organization": world.org.pk,
            "name": "Theirs",
            "slug": "theirs",
            "code": "TH",
        },
    )
    assert response.status_code == 422 and _count(world) == before


def test_it_offers_only_the_organizations_the_user_owns(client, world):
    html = _as(client, world.outsider).get(reverse("designer:create")).content.decode()
    assert "Other Co" in html and ">Acme<" not in html


BROKEN = """\
name: Broken
slug: broken
code: BR
phases:
  - key: a
    name: A
    fields:
      - key: x
        label: X
        type: numbr
  - key: a
    name: Again
"""


def test_it_lists_the_checkers_errors_by_path_and_creates_nothing(client, world):
    before = _count(world)
    response = _as(client, world.owner).post(
        reverse("designer:import"), {"organization": world.org.pk, "yaml": BROKEN}
    )
    html = response.content.decode()
    assert response.status_code == 422
    assert "phases[0].fields[0].type" in html and "phases[1].key" in html
    assert 'id="design-errors"' in html and "Nothing was created" in html
    assert _count(world) == before


def test_it_imports_an_uploaded_file(client, world):
    from django.core.files.uploadedfile import SimpleUploadedFile

    text = definition_dump(pipe_export(world.pipe)).replace(f"slug: {world.pipe.slug}", "slug: uploaded")
    upload = SimpleUploadedFile("p.yaml", text.encode(), content_type="application/yaml")
    response = _as(client, world.owner).post(
        reverse("designer:import"), {"organization": world.org.pk, "file": upload}
    )
    assert (
        response.status_code == 302 and Pipe.objects.filter(organization=world.org, slug="uploaded").exists()
    )


def test_it_exports_a_pipe_that_imports_again_to_the_same_file(client, world):
    client = _as(client, world.owner)
    exported = client.get(reverse("designer:export", args=[world.pipe.pk]))
    assert exported["Content-Disposition"] == f'attachment; filename="{world.pipe.slug}.yaml"'
    text = exported.content.decode()
    again = text.replace(f"slug: {world.pipe.slug}\n", "slug: round-trip\n")
    assert again != text
    client.post(reverse("designer:import"), {"organization": world.org.pk, "yaml": again})
    copy = Pipe.objects.get(organization=world.org, slug="round-trip")
    second = client.get(reverse("designer:export", args=[copy.pk])).content.decode()
    assert second == again
    assert definition_load(second) == definition_load(again)


def test_it_shows_phases_as_columns_with_their_fields(client, world):
    html = _as(client, world.admin).get(reverse("designer:pipe", args=[world.pipe.pk])).content.decode()
    for phase in world.pipe.phases.all():
        assert f'id="design-phase-{phase.pk}"' in html and phase.name in html
    for field in world.pipe.fields.all():
        assert f'id="design-field-{field.pk}"' in html
    assert reverse("designer:export", args=[world.pipe.pk]) in html


def test_it_links_the_board_to_the_design_page_for_admins_only(client, world):
    url = reverse("designer:pipe", args=[world.pipe.pk])
    assert url in _as(client, world.admin).get(reverse("board", args=[world.pipe.pk])).content.decode()
    assert url not in _as(client, world.member).get(reverse("board", args=[world.pipe.pk])).content.decode()


def test_it_offers_new_process_on_the_home_page_to_people_who_design(client, world):
    # Owners, and pipe admins: the design service lets them create pipes in their organization.
    assert 'id="new-process"' in _as(client, world.owner).get(reverse("home")).content.decode()
    assert 'id="new-process"' in _as(client, world.admin).get(reverse("home")).content.decode()
    assert 'id="new-process"' not in _as(client, world.member).get(reverse("home")).content.decode()


def test_it_shows_the_designer_in_the_top_bar_to_people_who_design(client, world):
    link = f'href="{reverse("designer:index")}"'
    assert link in _as(client, world.admin).get(reverse("home")).content.decode()
    assert link not in _as(client, world.member).get(reverse("home")).content.decode()


def test_it_refuses_the_designer_to_someone_in_no_organization(client, world):
    assert _as(client, make_user("nobody")).get(reverse("designer:index")).status_code == 403
