"""Bad input never gets an HTTP 500: dates past year 9999 or that don't exist, and integers too big
for the database, in every filter, form field and id a request carries, get a 4xx (or the filter
is ignored).

The first part names each input the outside review of issue #12 found; the second throws random
strings (hypothesis) at every query parameter and form field of every view the project defines,
as the organization's owner and as an anonymous visitor, and fails on any 5xx.
"""

from __future__ import annotations

import datetime as dt
import re

import pytest
from django.core.cache import cache
from django.db import transaction
from django.test import Client
from django.urls import reverse
from django.utils.http import urlencode
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipes.board.selectors import BoardFilters
from pipes.choices import FieldType
from pipes.models import Field
from pipes.services import Actor, card_create
from tests.personas import PASSWORD, good_start_values
from tests.test_permission_matrix import OK, TABLE, matrix, project_urls  # noqa: F401 (the matrix fixture)

HUGE = "9" * 20  # past a 64-bit integer
PAST_9999 = ("9999-12-31", "10000-01-01")
IMPOSSIBLE = "2026-02-30"
EXAMPLES_PER_VIEW = 25


def _client(username: str | None) -> Client:
    client = Client(raise_request_exception=False)
    if username:
        assert client.login(username=username, password=PASSWORD)
    return client


def _refused_plainly(response) -> None:
    """A 4xx, or a page that simply ignored what it could not use: never a 5xx."""
    assert response.status_code < 500, response.status_code


@pytest.fixture
def dated(world):
    """The purchase pipe, public, with a date, a date-and-time and a due date on its start form."""
    for position, (key, type_) in enumerate(
        (("needed_on", FieldType.DATE), ("meeting_at", FieldType.DATETIME), ("due", FieldType.DUE_DATE)),
        start=20,
    ):
        Field.objects.create(pipe=world.pipe, key=key, label=key, type=type_, position=position)
    world.pipe.public_form = True
    world.pipe.save(update_fields=["public_form"])
    world.card = card_create(
        actor=Actor.for_user(world.requester), pipe=world.pipe, values=good_start_values()
    )
    return world


def _card_url(world, name: str, **extra) -> str:
    return reverse(name, kwargs={"pipe_id": world.pipe.pk, "card_id": world.card.pk, **extra})


# ---------------------------------------------------------------- the inputs the review found


@pytest.mark.parametrize("value", [*(f"{d}T23:59" for d in PAST_9999), f"{IMPOSSIBLE}T10:00"])
def test_it_refuses_a_due_date_past_9999_or_impossible_with_a_4xx(dated, value):
    response = _client("member").post(_card_url(dated, "card_due"), {"due_at": value}, HTTP_HX_REQUEST="true")

    assert 400 <= response.status_code < 500
    dated.card.refresh_from_db()
    assert dated.card.due_at is None


@pytest.mark.parametrize("key", ["needed_on", "meeting_at", "due"])
@pytest.mark.parametrize("value", [*PAST_9999, IMPOSSIBLE, "0001-01-01", f"{PAST_9999[0]}T23:59"])
def test_it_refuses_a_date_field_past_9999_or_impossible_with_a_4xx(dated, key, value):
    response = _client("member").post(
        _card_url(dated, "card_field", key=key), {"value": value}, HTTP_HX_REQUEST="true"
    )

    assert 400 <= response.status_code < 500
    dated.card.refresh_from_db()
    assert key not in dated.card.values


@pytest.mark.parametrize("key", ["needed_on", "meeting_at", "due"])
def test_it_refuses_a_public_form_date_past_9999_without_an_account(dated, key):
    data = {f"f-{k}": v for k, v in good_start_values().items()}
    data[f"f-{key}"] = f"{PAST_9999[0]}T23:59" if key != "needed_on" else "0001-01-01"

    response = _client(None).post(
        reverse("portal:public_form", kwargs={"org_slug": "acme", "pipe_slug": dated.pipe.slug}), data
    )

    assert 400 <= response.status_code < 500
    assert "between" in response.content.decode()


def test_it_answers_the_public_form_fields_fragment_without_an_account(dated):
    response = _client(None).post(
        reverse("portal:public_fields", kwargs={"org_slug": "acme", "pipe_slug": dated.pipe.slug}),
        {"f-due": f"{PAST_9999[0]}T23:59", "f-needed_on": IMPOSSIBLE},
        HTTP_HX_REQUEST="true",
    )

    _refused_plainly(response)


@pytest.mark.parametrize("value", [*PAST_9999, IMPOSSIBLE, "0001-01-01"])
@pytest.mark.parametrize("name", ["created_from", "created_to"])
def test_it_ignores_a_board_date_filter_past_9999_or_impossible(dated, name, value):
    response = _client("owner").get(reverse("board", args=[dated.pipe.pk]), {name: value})

    assert response.status_code == 200
    assert dated.card.reference in response.content.decode()  # the filter was dropped


@pytest.mark.parametrize("value", [*PAST_9999, IMPOSSIBLE, "0001-01-01"])
@pytest.mark.parametrize("name", ["since", "until"])
@pytest.mark.parametrize("level", ["pipe", "org"])
def test_it_ignores_an_audit_date_filter_past_9999_or_impossible(dated, name, value, level):
    url = (
        reverse("governance:pipe_audit", args=[dated.pipe.pk])
        if level == "pipe"
        else reverse("governance:org_audit", args=["acme"])
    )

    response = _client("owner").get(url, {name: value})

    assert response.status_code == 200


@pytest.mark.parametrize("value", [f"{IMPOSSIBLE}T00:00:00+00:00", "9999-12-31T23:59:59-23:00", "0001-01-01"])
def test_it_ignores_a_board_changes_since_that_is_no_moment(dated, value):
    response = _client("owner").get(
        reverse("board_changes", args=[dated.pipe.pk]), {"since": value}, HTTP_HX_REQUEST="true"
    )

    assert response.status_code == 200


@pytest.mark.parametrize("month", ["9999-12", "0001-01", "10000-01", "2026-13", "99999999999-01"])
@pytest.mark.parametrize("export", ["", "summary", "late"])
def test_it_refuses_an_sla_month_out_of_range_with_a_400(dated, month, export):
    response = _client("owner").get(
        reverse("governance:sla_report", args=[dated.pipe.pk]), {"month": month, "export": export}
    )

    assert response.status_code == 400
    assert "Choose a month" in response.content.decode()


@pytest.mark.parametrize("name", ["label", "assignee"])
@pytest.mark.parametrize("value", [HUGE, "-1", "²", "1_0"])
def test_it_ignores_a_board_filter_id_that_is_no_id(dated, name, value):
    response = _client("owner").get(reverse("board", args=[dated.pipe.pk]), {name: value})

    assert response.status_code == 200
    assert dated.card.reference in response.content.decode()


@pytest.mark.parametrize("value", [HUGE, "²", "-5"])
def test_it_reads_a_column_offset_that_is_no_count_as_the_start(dated, value):
    url = reverse("column_more", kwargs={"pipe_id": dated.pipe.pk, "phase_id": dated.card.phase_id})

    response = _client("owner").get(url, {"offset": value}, HTTP_HX_REQUEST="true")

    assert response.status_code == 200
    assert dated.card.reference in response.content.decode()


@pytest.mark.parametrize("value", [HUGE, "²"])
def test_it_ignores_an_inbox_pipe_filter_that_is_no_id(dated, value):
    response = _client("owner").get(reverse("inbox:index"), {"pipe": value})

    assert response.status_code == 200


@pytest.mark.parametrize(("name", "field"), [("card_assign", "assignees"), ("card_labels", "labels")])
@pytest.mark.parametrize("value", [HUGE, "²"])
def test_it_refuses_assignee_and_label_ids_that_are_no_ids_with_a_4xx(dated, name, field, value):
    response = _client("member").post(_card_url(dated, name), {field: [value]}, HTTP_HX_REQUEST="true")

    assert 400 <= response.status_code < 500


@pytest.mark.parametrize("value", [HUGE, "²"])
def test_it_refuses_a_reference_field_id_that_is_no_id_with_a_4xx(dated, value):
    response = _client("admin").post(
        _card_url(dated, "card_field", key="approved_by"), {"value": [value]}, HTTP_HX_REQUEST="true"
    )

    assert 400 <= response.status_code < 500


def test_it_reads_an_expected_version_that_is_no_number_as_none(dated):
    response = _client("member").post(
        _card_url(dated, "card_assign"),
        {"assignees": [dated.member.pk], "expected_version": "²"},
        HTTP_HX_REQUEST="true",
    )

    assert response.status_code == 200
    assert list(dated.card.assignees.all()) == [dated.member]


@pytest.mark.parametrize(("name", "field"), [("inbox:bulk_approve", "tasks")])
@pytest.mark.parametrize("value", [HUGE, "²"])
def test_it_skips_inbox_task_ids_that_are_no_ids(dated, name, field, value):
    response = _client("owner").post(reverse(name), {field: [value]})

    _refused_plainly(response)


@pytest.mark.parametrize("value", [HUGE, "²"])
def test_it_reads_retention_counts_that_are_no_numbers_plainly(dated, value):
    url = reverse("governance:retention", args=[dated.pipe.pk])

    got = _client("owner").get(url, {"anonymised": value, "pruned": value})
    posted = _client("owner").post(url, {"action": "save", "retention_days": value})

    _refused_plainly(got)
    assert posted.status_code == 422


def test_it_refuses_a_nul_character_in_a_query_with_a_400(dated):
    """PostgreSQL keeps no NUL in text: a search for one failed inside the query (found by the fuzzing below)."""
    response = _client("owner").get(reverse("board", args=[dated.pipe.pk]), {"q": "a\x00b"})

    assert response.status_code == 400
    assert "null character" in response.content.decode()


def test_it_refuses_a_nul_character_in_a_public_form_with_a_400(dated):
    data = {f"f-{k}": v for k, v in good_start_values(item="Laptop\x00").items()}

    response = _client(None).post(
        reverse("portal:public_form", kwargs={"org_slug": "acme", "pipe_slug": dated.pipe.slug}), data
    )

    assert response.status_code == 400
    assert not dated.pipe.cards.exclude(pk=dated.card.pk).exists()


def test_the_dates_named_here_are_real_edges():
    """A guard on the guard: these inputs are the ones Python's dates can't step past."""
    with pytest.raises(OverflowError):
        dt.date(9999, 12, 31) + dt.timedelta(days=1)
    assert re.fullmatch(r"\d{20}", HUGE) and int(HUGE) > 2**63


# ---------------------------------------------------------------- random strings at every view

# Query parameters a view reads that no form of its page names (the forms' fields are read from
# the page itself, see _names_on).
BOARD_QUERY = (*BoardFilters.NAMES, "focus")
QUERY: dict[str, tuple[str, ...]] = {
    "board": BOARD_QUERY,
    "card_detail": BOARD_QUERY,
    "column_more": (*BOARD_QUERY, "offset"),
    "board_changes": (*BOARD_QUERY, "since"),
    "card_field": (*BOARD_QUERY, "cancel", "value"),
    "card_file": ("inline",),
    "card_move": (*BOARD_QUERY, "to_phase", "expected_version"),
    "card_assign": ("assignees", "expected_version"),
    "card_labels": ("labels", "expected_version"),
    "card_due": ("due_at", "expected_version"),
    "governance:sla_report": ("month", "export"),
    "governance:pipe_audit": ("since", "until", "actor", "source", "page", "export"),
    "governance:card_audit": ("since", "until", "actor", "source", "page", "export"),
    "governance:org_audit": ("since", "until", "actor", "source", "page", "export"),
    "governance:retention": (
        "action",
        "retention_days",
        "trace_retention_days",
        "saved",
        "anonymised",
        "pruned",
    ),
    "governance:privacy": ("action", "identifier", "field", "confirm", "understood"),
    "portal:home": ("q",),
    "portal:my_requests": ("state", "q"),
    "rail:pipe_costs": ("period",),
    "inbox:index": ("view", "pipe"),
    "inbox:bulk_approve": ("tasks", "comment", "view", "pipe"),
    "inbox:decide": ("decision", "comment", "to_phase", "fields"),
    "inbox:delegate": ("to_user", "note"),
}
# The date fields added to the seeded world, so their edit forms are thrown at too.
DATE_FIELDS = {"needed_on": FieldType.DATE, "meeting_at": FieldType.DATETIME, "due": FieldType.DUE_DATE}
BROAD = ("owner", "requester", "reviewer", "member", "admin")  # the first that may use a view
NAME_ATTR = re.compile(r"<(?:input|select|textarea)\b[^>]*\bname=\"([^\"]+)\"")

EDGES = (
    HUGE,
    "-" + HUGE,
    "0",
    "-1",
    "²",
    "١٢",
    "1_000",
    "1e309",
    "NaN",
    "me",
    IMPOSSIBLE,
    "0000-00-00",
    "0001-01-01",
    "9999-12-31",
    "10000-01-01",
    "9999-12-31T23:59",
    "0001-01-01T00:00+14:00",
    "2026-03-01T25:61",
    "2026-03-01T10:00+99:00",
    "9999-12",
    "0001-01",
    "2026-13",
    "",
    " ",
    "\x00",
    "<script>alert(1)</script>",
    "' OR 1=1 --",
    "%",
    "a" * 5000,
)
VALUES = st.one_of(
    st.sampled_from(EDGES),
    st.text(max_size=40),
    st.integers(min_value=-(10**25), max_value=10**25).map(str),
    st.dates().map(dt.date.isoformat),
    st.datetimes().map(lambda d: d.isoformat(timespec="minutes")),
)


def _cases() -> list:
    cases = [pytest.param(name, {}, id=name) for name in sorted(TABLE)]
    cases += [pytest.param("card_field", {"key": key}, id=f"card_field-{key}") for key in DATE_FIELDS]
    return cases


@pytest.fixture(scope="module")
def fuzz_world(request, django_db_blocker):
    """The permission matrix's world, plus a date, a date-and-time and a due date on the start form."""
    world = request.getfixturevalue("matrix")  # built and rolled back by tests/test_permission_matrix.py
    with django_db_blocker.unblock():
        for position, (key, type_) in enumerate(DATE_FIELDS.items(), start=20):
            Field.objects.create(pipe=world.pipe, key=key, label=key, type=type_, position=position)
    return world


def _who(row) -> list[tuple[str, str]]:
    """(persona, method) pairs that get past the view's gate: a broad persona, and anonymous."""
    pairs = []
    for method, outcomes in row.expect.items():
        persona = next((p for p in BROAD if outcomes[p] == OK), None)
        if persona:
            pairs.append((persona, method))
        if outcomes["anonymous"] == OK:
            pairs.append(("anonymous", method))
    return pairs or [("owner", next(iter(row.expect)))]


def _names_on(client: Client, url: str) -> set[str]:
    response = client.get(url)
    if response.status_code != 200 or response.streaming:
        return set()
    return set(NAME_ATTR.findall(response.content.decode()))


def test_it_throws_at_every_view_the_project_defines():
    assert set(project_urls()) == set(TABLE)


@pytest.mark.django_db
@pytest.mark.parametrize(("name", "extra_kwargs"), _cases())
def test_it_never_answers_random_input_with_a_5xx(fuzz_world, name, extra_kwargs):
    row = TABLE[name]
    url = reverse(name, kwargs={**row.kwargs(fuzz_world), **extra_kwargs})
    pairs = _who(row)
    clients = {}
    for persona in {p for p, _method in pairs}:
        clients[persona] = Client(raise_request_exception=False)
        if persona != "anonymous":
            clients[persona].force_login(getattr(fuzz_world, persona))
    names = set(QUERY.get(name, ())) | set(row.data(fuzz_world))
    for client in clients.values():
        names |= _names_on(client, url)
    names.discard("csrfmiddlewaretoken")
    names = sorted(names) or ["q"]

    @settings(
        max_examples=EXAMPLES_PER_VIEW,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(
        who=st.sampled_from(pairs),
        params=st.dictionaries(
            st.sampled_from(names), st.one_of(VALUES, st.lists(VALUES, min_size=1, max_size=3)), max_size=6
        ),
    )
    def throw(who, params):
        persona, method = who
        client = clients[persona]
        headers = {"HTTP_HX_REQUEST": "true"} if method.startswith("HX-") else {}
        cache.clear()  # throttles would answer 429 before the input is read
        with transaction.atomic():
            if method.endswith("POST"):
                response = client.post(f"{url}?{urlencode(params, doseq=True)}", params, **headers)
            else:
                response = client.get(url, params, **headers)
            if response.streaming:
                b"".join(response.streaming_content)
            transaction.set_rollback(True)
        assert response.status_code < 500, (
            f"{method} {url} as {persona} with {params!r}: {response.status_code}"
        )

    throw()
