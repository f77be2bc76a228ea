"""Portal start forms (pipes.portal.forms) through the real start-form URL: one input per field type, each type's
error at its field, values and uploads kept when the form comes back, and conversion to card_create's values."""

from __future__ import annotations

import datetime as dt

import pytest
from django.core.cache import cache
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test.html import Element, parse_html

from pipes.choices import FieldType
from pipes.conditions import evaluate
from pipes.models import Card, Field, Label, Pipe
from pipes.portal.forms import PortalForm, condition_keys
from pipes.services import Actor, card_create
from tests.personas import PASSWORD, build_purchase_pipe, good_start_values

PDF = b"%PDF-1.4\n% a small test document\n"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32


# ---------------------------------------------------------------- helpers


def _walk(node):
    if isinstance(node, Element):
        yield node
        for child in node.children:
            yield from _walk(child)


def _text(node) -> str:
    if isinstance(node, str):
        return node
    return " ".join(_text(child) for child in node.children)


def page(response) -> Element:
    return parse_html(response.content.decode())


def by_id(response, element_id: str) -> Element:
    for element in _walk(page(response)):
        if dict(element.attributes).get("id") == element_id:
            return element
    raise AssertionError(f"no element with id {element_id!r}")


def row_text(response, key: str) -> str:
    return " ".join(_text(by_id(response, f"row-{key}")).split())


def inputs(response, name: str) -> list[dict]:
    return [
        {**dict(e.attributes), "_tag": e.name, "_text": _text(e)}
        for e in _walk(page(response))
        if dict(e.attributes).get("name") == name
    ]


def one_input(response, name: str) -> dict:
    found = inputs(response, name)
    assert len(found) == 1, f"{len(found)} inputs named {name!r}"
    return found[0]


def pdf(name: str = "quote.pdf", content: bytes = PDF) -> SimpleUploadedFile:
    return SimpleUploadedFile(name, content, content_type="application/pdf")


def sign_in(client, user):
    assert client.login(username=user.username, password=PASSWORD)
    return client


@pytest.fixture(autouse=True)
def _fresh_cache_and_media(media_root):
    cache.clear()
    yield
    cache.clear()


def build_all_types_pipe(world) -> Pipe:
    """A pipe whose start form has one field of every type."""
    pipe = Pipe.objects.create(organization=world.org, name="Everything", slug="everything", code="EV")
    pipe.phases.create(name="New", key="new", position=1, sla_hours=8)
    pipe.phases.create(name="Done", key="done", position=2, is_final=True)
    suppliers = build_purchase_pipe(world.org, slug="suppliers", code="SU")
    specs = [
        dict(
            key="code",
            type=FieldType.SHORT_TEXT,
            required=True,
            validation={"regex": "^[A-Z]{3}$", "regex_message": "Use three capital letters."},
        ),
        dict(key="notes", type=FieldType.LONG_TEXT, validation={"max_length": 10}),
        dict(key="quantity", type=FieldType.NUMBER, validation={"min": 1, "max": 10}),
        dict(key="price", type=FieldType.CURRENCY),
        dict(key="share", type=FieldType.PERCENTAGE),
        dict(key="deliver_on", type=FieldType.DATE),
        dict(key="meeting", type=FieldType.DATETIME),
        dict(key="deadline", type=FieldType.DUE_DATE),
        dict(key="contact", type=FieldType.EMAIL),
        dict(key="phone", type=FieldType.PHONE),
        dict(key="color", type=FieldType.SELECT, options=["Red", "Blue"]),
        dict(key="sizes", type=FieldType.MULTI_SELECT, options=["S", "M", "L"]),
        dict(key="agree", type=FieldType.CHECKBOX, required=True),
        dict(key="steps", type=FieldType.CHECKLIST, required=True, options=["Read", "Sign"]),
        dict(key="docs", type=FieldType.ATTACHMENT, config={"multiple": True}),
        dict(key="photo", type=FieldType.ATTACHMENT, config={"allowed_types": ["png"], "max_size_mb": 1}),
        dict(key="owner", type=FieldType.ASSIGNEE),
        dict(key="tags", type=FieldType.LABEL),
        dict(key="supplier", type=FieldType.CONNECTION, config={"pipe": suppliers.slug}),
    ]
    for position, spec in enumerate(specs, 1):
        Field.objects.create(
            pipe=pipe, label=spec["key"].replace("_", " ").title(), position=position, **spec
        )
    Label.objects.create(pipe=pipe, name="Blue team")
    Label.objects.create(pipe=pipe, name="Red team")
    from pipes.choices import PipeRole
    from pipes.roles import pipe_role_grant

    pipe_role_grant(pipe=pipe, user=world.requester, role=PipeRole.REQUESTER)
    pipe_role_grant(pipe=pipe, user=world.member, role=PipeRole.MEMBER)
    pipe_role_grant(pipe=suppliers, user=world.requester, role=PipeRole.REQUESTER)
    return pipe


@pytest.fixture
def everything(world):
    return build_all_types_pipe(world)


def url(pipe) -> str:
    return f"/portal/{pipe.pk}/new/"


def valid_post(world, pipe, **overrides) -> dict:
    supplier_card = card_create(
        actor=Actor.for_user(world.requester),
        pipe=Pipe.objects.get(slug="suppliers"),
        values=good_start_values(item="Acme Parts"),
    )
    data = {
        "f-code": "ABC",
        "f-notes": "short",
        "f-quantity": "3",
        "f-price": "1.234,50",
        "f-share": "12,5",
        "f-deliver_on": "2026-03-31",
        "f-meeting": "2026-03-31T14:30",
        "f-deadline": "2026-04-10T18:00",
        "f-contact": "ana@Example.COM",
        "f-phone": "+55 (11) 98765-4321",
        "f-color": "Blue",
        "f-sizes": ["S", "L"],
        "f-agree": "on",
        "f-steps": ["Read", "Sign"],
        "f-owner": str(world.member.pk),
        "f-tags": [str(pipe.labels.get(name="Red team").pk)],
        "f-supplier": str(supplier_card.pk),
    }
    data.update(overrides)
    return {k: v for k, v in data.items() if v is not None}


# ---------------------------------------------------------------- inputs


def test_it_renders_one_proper_input_per_field_type(client, world, everything):
    response = sign_in(client, world.requester).get(url(everything))
    assert response.status_code == 200
    assert one_input(response, "f-code")["type"] == "text"
    assert one_input(response, "f-notes")["_tag"] == "textarea"
    assert one_input(response, "f-notes")["maxlength"] == "10"
    assert one_input(response, "f-quantity")["inputmode"] == "decimal"
    assert one_input(response, "f-price")["inputmode"] == "decimal"
    assert "R$" in row_text(response, "price")  # the organization's currency (BRL)
    assert "%" in row_text(response, "share")
    assert one_input(response, "f-deliver_on")["type"] == "date"
    assert one_input(response, "f-meeting")["type"] == "datetime-local"
    assert one_input(response, "f-deadline")["type"] == "datetime-local"
    assert one_input(response, "f-contact")["type"] == "email"
    assert one_input(response, "f-phone")["type"] == "tel"
    color = one_input(response, "f-color")
    assert color["_tag"] == "select" and "Red" in color["_text"] and "Blue" in color["_text"]
    sizes = inputs(response, "f-sizes")
    assert [(i["type"], i["value"]) for i in sizes] == [
        ("checkbox", "S"),
        ("checkbox", "M"),
        ("checkbox", "L"),
    ]
    assert one_input(response, "f-agree")["type"] == "checkbox"
    assert [i["value"] for i in inputs(response, "f-steps")] == ["Read", "Sign"]
    docs = one_input(response, "f-docs")
    assert docs["type"] == "file" and "multiple" in docs and ".pdf" in docs["accept"]
    photo = one_input(response, "f-photo")
    assert photo["type"] == "file" and "multiple" not in photo and photo["accept"] == ".png"
    assert "PNG · up to 1 MB" in row_text(response, "photo")
    owner = one_input(response, "f-owner")
    assert owner["_tag"] == "select" and "Member" in owner["_text"] and "Requester" not in owner["_text"]
    assert [i["type"] for i in inputs(response, "f-tags")] == ["checkbox", "checkbox"]
    assert "Acme Parts" not in one_input(response, "f-supplier")["_text"]  # nothing filed yet
    required = by_id(response, "row-code")
    assert "required" in _text(required)


def test_it_shows_the_currency_of_the_pipes_organization(client, world):
    from pipes.models import Organization

    other = Organization.objects.get(slug="other")
    pipe = build_purchase_pipe(other, slug="buy", code="BY")
    sign_in(client, world.outsider)  # owner of Other Co (USD)
    response = client.get(url(pipe))
    assert "US$" in row_text(response, "amount")


def test_it_lists_only_the_requesters_own_cards_for_a_connection(client, world, everything):
    suppliers = Pipe.objects.get(slug="suppliers")
    mine = card_create(
        actor=Actor.for_user(world.requester), pipe=suppliers, values=good_start_values(item="Mine")
    )
    card_create(actor=Actor.for_user(world.owner), pipe=suppliers, values=good_start_values(item="Theirs"))
    response = sign_in(client, world.requester).get(url(everything))
    options = one_input(response, "f-supplier")["_text"]
    assert mine.reference in options and "Theirs" not in options


# ---------------------------------------------------------------- errors, one per type

BAD_VALUES = [
    ("code", {"f-code": ""}, "This field is required."),
    ("code", {"f-code": "abc1"}, "Use three capital letters."),
    ("notes", {"f-notes": "x" * 20}, "Use at most 10 characters (this has 20)."),
    ("quantity", {"f-quantity": "many"}, "Enter a number, like 1250 or 1250.50."),
    ("quantity", {"f-quantity": "11"}, "Enter 10 or less."),
    ("price", {"f-price": "12.345"}, "Use at most two decimal places."),
    ("share", {"f-share": "half"}, "Enter a number, like 1250 or 1250.50."),
    ("deliver_on", {"f-deliver_on": "2026-02-30"}, "Enter a real date as YYYY-MM-DD, like 2026-03-31."),
    ("meeting", {"f-meeting": "tomorrow"}, "Enter a date and time as YYYY-MM-DD HH:MM."),
    ("deadline", {"f-deadline": "soon"}, "Enter a date and time as YYYY-MM-DD HH:MM."),
    ("contact", {"f-contact": "ana-at-example"}, "Enter an email address like name@example.com."),
    (
        "phone",
        {"f-phone": "call me"},
        "A phone number has only digits, spaces, dashes, parentheses and a leading +.",
    ),
    ("color", {"f-color": "Green"}, "“Green” is not one of the options."),
    ("sizes", {"f-sizes": ["XXL"]}, "“XXL” is not one of the options."),
    ("agree", {"f-agree": None}, "This field is required."),
    ("steps", {"f-steps": ["Read"]}, "This field is required."),
    ("owner", {"f-owner": "not-a-number"}, "This is not a valid reference."),
    ("tags", {"f-tags": ["999999"]}, "Choose labels of this pipe."),
    ("supplier", {"f-supplier": "999999"}, "Choose cards of the connected pipe."),
]


@pytest.mark.parametrize(
    ("key", "override", "message"), BAD_VALUES, ids=[f"{b[0]}-{i}" for i, b in enumerate(BAD_VALUES)]
)
def test_it_shows_each_field_types_error_at_its_field(client, world, everything, key, override, message):
    sign_in(client, world.requester)
    data = valid_post(world, everything, **override)
    response = client.post(url(everything), data)
    assert response.status_code == 422
    assert message in row_text(response, key)
    assert 'aria-invalid="true"' in response.content.decode()
    assert message in " ".join(_text(by_id(response, "error-summary")).split())
    assert not Card.objects.filter(pipe=everything).exists()


def test_it_refuses_a_person_who_does_not_take_part_in_the_pipe(client, world, everything):
    sign_in(client, world.requester)
    response = client.post(
        url(everything), valid_post(world, everything, **{"f-owner": str(world.outsider.pk)})
    )
    assert response.status_code == 422
    assert "Choose people who take part in this pipe." in row_text(response, "owner")


# ---------------------------------------------------------------- values for card_create


def test_it_turns_each_input_into_the_value_card_create_stores(client, world, everything):
    sign_in(client, world.requester)
    data = valid_post(world, everything)
    data["f-docs"] = [pdf("a.pdf"), pdf("b.pdf", PDF + b"b")]
    data["f-photo"] = SimpleUploadedFile("me.png", PNG, content_type="image/png")
    response = client.post(url(everything), data)
    assert response.status_code == 302, response.content.decode()[:2000]
    card = Card.objects.get(pipe=everything)
    v = card.values
    assert v["code"] == "ABC"
    assert v["price"] == {"amount": "1234.50", "currency": "BRL"}
    assert v["share"] == "12.5"
    assert v["deliver_on"] == "2026-03-31"
    assert v["meeting"] == "2026-03-31T17:30:00Z"  # 14:30 in São Paulo
    assert v["contact"] == "ana@example.com"
    assert v["phone"] == "+5511987654321"
    assert v["sizes"] == ["S", "L"]
    assert v["agree"] is True
    assert v["steps"] == ["Read", "Sign"]
    assert v["owner"] == [world.member.pk]
    assert v["tags"] == [everything.labels.get(name="Red team").pk]
    assert sorted(card.files.filter(field_key="docs").values_list("name", flat=True)) == ["a.pdf", "b.pdf"]
    assert list(card.files.filter(field_key="photo").values_list("name", flat=True)) == ["me.png"]
    assert card.due_at == dt.datetime(2026, 4, 10, 21, 0, tzinfo=dt.UTC)
    assert card.created_by == world.requester


def test_it_refills_every_value_when_the_form_comes_back(client, world, everything):
    sign_in(client, world.requester)
    data = valid_post(world, everything, **{"f-code": "bad"})
    response = client.post(url(everything), data)
    assert response.status_code == 422
    assert one_input(response, "f-code")["value"] == "bad"
    assert one_input(response, "f-notes")["_text"].strip() == "short"
    assert one_input(response, "f-price")["value"] == "1.234,50"
    assert one_input(response, "f-deliver_on")["value"] == "2026-03-31"
    assert one_input(response, "f-meeting")["value"] == "2026-03-31T14:30"
    assert one_input(response, "f-contact")["value"] == "ana@Example.COM"
    assert "checked" in one_input(response, "f-agree")
    assert [i["value"] for i in inputs(response, "f-sizes") if "checked" in i] == ["S", "L"]
    assert [i["value"] for i in inputs(response, "f-steps") if "checked" in i] == ["Read", "Sign"]
    color = by_id(response, "id-color")
    assert [
        dict(o.attributes)["value"]
        for o in _walk(color)
        if o.name == "option" and "selected" in dict(o.attributes)
    ] == ["Blue"]


# ---------------------------------------------------------------- uploads


def test_it_keeps_an_upload_that_passed_when_the_form_comes_back_and_submits_it_later(client, world):
    sign_in(client, world.requester)
    data = {"f-item": "Laptop", "f-amount": "not money", "f-requester_email": "ana@example.com"}
    response = client.post(url(world.pipe), {**data, "f-quote": [pdf("offer.pdf")]})
    assert response.status_code == 422
    assert "kept: offer.pdf" in row_text(response, "quote")
    token = one_input(response, "_staging")["value"]
    response = client.post(url(world.pipe), {**data, "f-amount": "4500", "_staging": token})
    assert response.status_code == 302
    card = Card.objects.get(pipe=world.pipe)
    assert list(card.files.values_list("name", flat=True)) == ["offer.pdf"]
    assert card.values["quote"] == list(card.files.values_list("pk", flat=True))
    assert card.files.get().file.read() == PDF


def test_it_lets_go_of_a_kept_upload_when_asked(client, world):
    sign_in(client, world.requester)
    data = {"f-item": "", "f-amount": "10", "f-requester_email": "ana@example.com"}
    response = client.post(url(world.pipe), {**data, "f-quote": [pdf("one.pdf"), pdf("two.pdf", PDF + b"2")]})
    token = one_input(response, "_staging")["value"]
    remove = [i for i in inputs(response, "_remove") if "one.pdf" in i["aria-label"]][0]["value"]
    response = client.post(url(world.pipe), {**data, "_staging": token, "_remove": remove})
    assert response.status_code == 200  # not a submission: no errors shown
    assert "kept: two.pdf" in row_text(response, "quote") and "one.pdf" not in row_text(response, "quote")
    assert "error-summary" not in response.content.decode()
    client.post(url(world.pipe), {**data, "f-item": "Chair", "_staging": token})
    assert list(Card.objects.get(pipe=world.pipe).files.values_list("name", flat=True)) == ["two.pdf"]


def test_it_refuses_an_html_page_renamed_to_pdf(client, world):
    sign_in(client, world.requester)
    page_bytes = b"<!DOCTYPE html><html><script>alert(1)</script></html>"
    response = client.post(
        url(world.pipe),
        {
            **{f"f-{k}": v for k, v in good_start_values().items()},
            "f-quote": [pdf("invoice.pdf", page_bytes)],
        },
    )
    assert response.status_code == 422
    assert "“invoice.pdf” does not look like a PDF file." in row_text(response, "quote")
    assert "kept:" not in row_text(response, "quote")
    assert not Card.objects.exists()


def test_it_refuses_a_file_over_the_fields_size_limit(client, world, everything):
    sign_in(client, world.requester)
    big = SimpleUploadedFile("big.png", PNG + b"\x00" * int(1.2 * 1048576), content_type="image/png")
    response = client.post(url(everything), {**valid_post(world, everything), "f-photo": big})
    assert response.status_code == 422
    assert "“big.png” is 1.2 MB; the limit is 1.0 MB." in row_text(response, "photo")


def test_it_refuses_a_type_the_field_does_not_accept(client, world, everything):
    sign_in(client, world.requester)
    response = client.post(url(everything), {**valid_post(world, everything), "f-photo": pdf("me.pdf")})
    assert response.status_code == 422
    assert "“me.pdf” is not an accepted type. Accepted: png." in row_text(response, "photo")


def test_it_shows_upload_and_other_field_errors_together(client, world):
    sign_in(client, world.requester)
    response = client.post(url(world.pipe), {"f-item": "", "f-amount": "x", "f-quote": [pdf("a.exe")]})
    assert response.status_code == 422
    assert "is not an accepted type" in row_text(response, "quote")
    assert "This field is required." in row_text(response, "item")
    assert "Enter a number" in row_text(response, "amount")
    assert not Card.objects.exists()


def test_it_keeps_only_the_newest_file_of_a_single_file_field(client, world, everything):
    sign_in(client, world.requester)
    bad = valid_post(world, everything, **{"f-code": ""})
    first = SimpleUploadedFile("first.png", PNG, content_type="image/png")
    response = client.post(url(everything), {**bad, "f-photo": first})
    token = one_input(response, "_staging")["value"]
    second = SimpleUploadedFile("second.png", PNG + b"2", content_type="image/png")
    response = client.post(url(everything), {**bad, "_staging": token, "f-photo": second})
    assert "kept: second.png" in row_text(response, "photo") and "first.png" not in row_text(
        response, "photo"
    )


def test_it_ignores_a_staging_token_signed_for_someone_else(client, world):
    sign_in(client, world.requester)
    data = {"f-item": "", "f-amount": "10", "f-requester_email": "ana@example.com"}
    token = one_input(client.post(url(world.pipe), {**data, "f-quote": [pdf("secret.pdf")]}), "_staging")[
        "value"
    ]
    client.logout()
    sign_in(client, world.member)
    response = client.post(url(world.pipe), {**data, "_staging": token})
    assert "secret.pdf" not in response.content.decode()
    response = client.post(url(world.pipe), {**data, "_staging": token + "x"})
    assert "secret.pdf" not in response.content.decode()


# ---------------------------------------------------------------- conditions


def test_it_reads_the_keys_a_condition_depends_on():
    condition = {"all": [{"field": "a", "op": "true"}, {"not": {"any": [{"field": "b"}, {"field": "c"}]}}]}
    assert condition_keys(condition) == {"a", "b", "c"}


def test_it_hides_a_chain_of_conditional_fields_when_the_first_one_goes(world):
    pipe = world.pipe
    Field.objects.create(
        pipe=pipe,
        key="reason_detail",
        label="Detail",
        type=FieldType.SHORT_TEXT,
        position=7,
        condition={"field": "urgency_reason", "op": "not_empty"},
    )
    fields = list(pipe.fields.filter(phase__isnull=True))
    shown = PortalForm(pipe=pipe, fields=fields, data={"f-urgent": "on", "f-urgency_reason": "x"})
    assert shown.by_key["urgency_reason"].visible and shown.by_key["reason_detail"].visible
    hidden = PortalForm(pipe=pipe, fields=fields, data={"f-urgency_reason": "x"})
    assert not hidden.by_key["urgency_reason"].visible and not hidden.by_key["reason_detail"].visible
    assert "urgency_reason" not in hidden.raw_values()
    assert evaluate(fields[-1].condition, {"urgency_reason": "x"})  # its own condition alone would hold
