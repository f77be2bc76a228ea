"""Process definitions: checking, import, export, the YAML dump and extensions."""

from __future__ import annotations

import copy

import pytest
from django.conf import settings

from pipes.choices import FieldType
from pipes.design import (
    CONFIG_KEYS,
    FIELD_KEYS,
    PHASE_KEYS,
    PIPE_KEYS,
    VALIDATION_KEYS,
    DefinitionError,
    definition_check,
    definition_dump,
    definition_load,
    pipe_export,
    pipe_import,
    process_template_load,
    process_templates,
    register_extension,
    unregister_extension,
)
from pipes.models import Field, Organization, Phase, Pipe

TEMPLATES = ["accounts_payable", "credit_analysis", "employee_onboarding", "supplier_onboarding"]


def base() -> dict:
    """A small valid definition the error tests break one thing at a time."""
    return {
        "name": "Purchase requests",
        "slug": "purchases",
        "code": "PR",
        "title_field": "item",
        "key_fields": ["amount"],
        "labels": [{"name": "Priority", "color": "#c4302b"}],
        "start_form": [
            {"key": "item", "label": "Item", "type": "short_text", "required": True},
            {"key": "amount", "label": "Amount", "type": "currency"},
            {"key": "category", "label": "Category", "type": "select", "options": ["Hardware", "Software"]},
            {"key": "urgent", "label": "Urgent", "type": "checkbox"},
        ],
        "phases": [
            {
                "key": "triage",
                "name": "Triage",
                "allowed_next": ["approval", "rejected"],
                "fields": [{"key": "notes", "label": "Notes", "type": "long_text"}],
            },
            {
                "key": "approval",
                "name": "Approval",
                "fields": [
                    {"key": "decision", "label": "Decision", "type": "select", "options": ["Yes", "No"]}
                ],
            },
            {
                "key": "done",
                "name": "Done",
                "final": True,
                "fields": [{"key": "receipt", "label": "Receipt", "type": "attachment"}],
            },
            {"key": "rejected", "name": "Rejected", "final": True},
        ],
    }


def without_hints(messages: list[str]) -> list[str]:
    """The messages, also without a "did you mean" hint (hints depend on the extensions registered)."""
    return [m.split(" (did you mean")[0] if ": unknown key" in m else m for m in messages] + messages


def errors_of(definition) -> list[str]:
    with pytest.raises(DefinitionError) as info:
        definition_check(definition)
    return info.value.messages


@pytest.fixture
def orgs(db):
    return (
        Organization.objects.create(name="Acme", slug="acme"),
        Organization.objects.create(name="Globex", slug="globex", currency="USD"),
    )


# ---------------------------------------------------------------- round trips


def test_it_ships_the_four_templates():
    assert sorted(process_templates()) == TEMPLATES


@pytest.mark.parametrize("name", TEMPLATES)
def test_it_round_trips_every_template_exactly(orgs, name):
    first_org, second_org = orgs
    template = process_template_load(name)
    pipe = pipe_import(organization=first_org, definition=template)
    assert pipe_export(pipe) == template  # the file is already in its canonical form
    text = definition_dump(pipe_export(pipe))

    copy_ = pipe_import(organization=second_org, definition=definition_load(text))

    assert copy_.organization == second_org and copy_.pk != pipe.pk
    assert definition_dump(pipe_export(copy_)) == text


@pytest.mark.parametrize("name", TEMPLATES)
def test_it_keeps_every_template_realistic(orgs, name):
    d = process_template_load(name)
    phases = d["phases"]
    assert 4 <= len(phases) <= 6
    assert any(p.get("final") for p in phases) and not phases[0].get("final")
    assert all(p.get("requester_status") for p in phases)
    assert all(p.get("sla_hours") for p in phases if not p.get("final"))
    assert all(p.get("allowed_next") for p in phases if not p.get("final"))
    assert d["portal_group"] and d["title_field"] and d["key_fields"]
    start_types = {f["type"] for f in d["start_form"]}
    assert len(start_types) >= 6
    assert any(f.get("pii") for f in d["start_form"])
    assert any(f.get("condition") for f in d["start_form"])
    assert any(f.get("required") for p in phases for f in p.get("fields", []))


def test_it_round_trips_a_pipe_built_in_code(world):
    other = Organization.objects.create(name="Initech", slug="initech")
    text = definition_dump(pipe_export(world.pipe))

    copy_ = pipe_import(organization=other, definition=definition_load(text))

    assert definition_dump(pipe_export(copy_)) == text


def test_it_imports_every_setting(orgs):
    pipe = pipe_import(organization=orgs[0], definition=process_template_load("accounts_payable"))

    assert (pipe.name, pipe.slug, pipe.code, pipe.portal_group) == (
        "Invoice approval",
        "accounts-payable",
        "AP",
        "Finance",
    )
    assert pipe.title_field == "supplier_name" and pipe.key_fields == [
        "invoice_number",
        "amount",
        "cost_center",
    ]
    assert pipe.expiration_days == 90 and pipe.public_form is False
    phases = list(pipe.phases.order_by("position"))
    assert [p.key for p in phases] == ["received", "approval", "scheduled", "paid", "rejected"]
    assert [p.position for p in phases] == [1, 2, 3, 4, 5]
    approval = phases[1]
    assert (approval.sla_hours, approval.wip_limit, approval.requester_status) == (
        48,
        40,
        "Awaiting approval",
    )
    assert sorted(p.key for p in approval.allowed_next.all()) == ["received", "rejected", "scheduled"]
    assert [p.is_final for p in phases] == [False, False, False, True, True]
    justification = Field.objects.get(pipe=pipe, key="justification")
    assert justification.phase is None and justification.required
    assert justification.condition == {"field": "amount", "op": "gt", "value": 10000}
    assert justification.validation == {"min_length": 20}
    invoice_file = Field.objects.get(pipe=pipe, key="invoice_file")
    assert invoice_file.type == FieldType.ATTACHMENT and invoice_file.config == {
        "allowed_types": ["pdf", "xml", "png", "jpg"]
    }
    pix = Field.objects.get(pipe=pipe, key="pix_key")
    assert pix.phase.key == "scheduled" and pix.visible_to_requester is False
    assert list(pipe.labels.values_list("name", "color")) == [
        ("Disputed", "#c4302b"),
        ("Early payment discount", "#16a34a"),
        ("Recurring", "#7c3aed"),
    ]


def test_it_refuses_a_slug_taken_in_the_organization(orgs):
    definition = definition_check(base())
    pipe_import(organization=orgs[0], definition=definition)

    with pytest.raises(DefinitionError) as info:
        pipe_import(organization=orgs[0], definition=definition)

    assert info.value.messages == [
        "slug: Acme already has a pipe with the slug 'purchases'; change the slug in the file "
        "or remove that pipe first"
    ]
    assert Pipe.objects.filter(slug="purchases").count() == 1
    pipe_import(organization=orgs[1], definition=definition)  # another organization may use it
    assert Pipe.objects.filter(slug="purchases").count() == 2


def test_it_leaves_defaults_out_of_the_dump():
    d = base()
    d["description"] = ""
    d["phases"][0]["final"] = False
    d["phases"][0]["wip_blocks"] = False
    d["start_form"][0]["visible_to_requester"] = True
    d["start_form"][0]["options"] = []
    d["labels"][0]["color"] = "#64748b"

    text = definition_dump(d)

    for absent in (
        "description",
        "final: false",
        "wip_blocks",
        "visible_to_requester",
        "options: []",
        "color",
    ):
        assert absent not in text
    assert definition_load(text)["start_form"][0] == {
        "key": "item",
        "label": "Item",
        "type": "short_text",
        "required": True,
    }


def test_it_dumps_keys_in_the_documented_order():
    d = base()
    shuffled = {key: d[key] for key in reversed(list(d))}
    shuffled["start_form"][1] = {
        "validation": {"max": 10, "min": 1},
        "type": "currency",
        "key": "amount",
        "label": "A",
    }

    text = definition_dump(shuffled)

    assert text.startswith("name: Purchase requests\nslug: purchases\ncode: PR\n")
    assert "  - key: amount\n    label: A\n    type: currency\n    validation: {min: 1, max: 10}\n" in text
    assert text.index("labels:") < text.index("start_form:") < text.index("phases:")


def test_it_keeps_multi_line_text_readable():
    d = base()
    d["description"] = "First line.\nSecond line."
    text = definition_dump(d)
    assert "description: |-\n  First line.\n  Second line.\n" in text
    assert definition_load(text)["description"] == "First line.\nSecond line."


def test_it_turns_yaml_dates_into_iso_text():
    d = base()
    d["start_form"].append(
        {"key": "when", "label": "When", "type": "date", "validation": {"min": "2026-01-01"}}
    )
    text = definition_dump(d).replace("min: '2026-01-01'", "min: 2026-01-01")
    assert "min: 2026-01-01" in text
    assert definition_load(text)["start_form"][-1]["validation"] == {"min": "2026-01-01"}


# ---------------------------------------------------------------- errors, one kind at a time


def _set(path: list, value):
    def apply(d):
        target = d
        for step in path[:-1]:
            target = target[step]
        target[path[-1]] = value

    return apply


def _delete(path: list):
    def apply(d):
        target = d
        for step in path[:-1]:
            target = target[step]
        del target[path[-1]]

    return apply


def _append(path: list, value):
    def apply(d):
        target = d
        for step in path:
            target = target[step]
        target.append(value)

    return apply


def _both(*changes):
    def apply(d):
        for change in changes:
            change(d)

    return apply


CASES = [
    # unknown types and keys
    (
        _set(["phases", 2, "fields", 0, "type"], "numbr"),
        "phases[2].fields[0].type: unknown type 'numbr'",
    ),
    (_set(["colour"], "red"), "colour: unknown key"),
    (_set(["phases", 1, "stepz"], []), "phases[1].stepz: unknown key"),
    (_set(["labels", 0, "colour"], "#fff"), "labels[0].colour: unknown key"),
    (_set(["start_form", 0, "requird"], True), "start_form[0].requird: unknown key"),
    # required keys and types of values
    (_delete(["name"]), "name: required"),
    (_set(["name"], "  "), "name: must not be empty"),
    (
        _set(["slug"], "purchase requests"),
        "slug: 'purchase requests' may use only letters, digits, underscores and hyphens",
    ),
    (_set(["code"], "PURCHASES"), "code: 'PURCHASES' must be 1 to 8 letters or digits, like AP"),
    (_set(["expiration_days"], 0), "expiration_days: must be a whole number of at least 1, got 0"),
    (_set(["public_form"], "yes please"), "public_form: must be true or false, got text"),
    (
        _set(["phases", 0, "sla_hours"], "two days"),
        "phases[0].sla_hours: must be a whole number of at least 1, got 'two days'",
    ),
    (
        _set(["phases", 0, "wip_limit"], 2.5),
        "phases[0].wip_limit: must be a whole number of at least 1, got 2.5",
    ),
    (_set(["start_form", 0, "required"], "yes"), "start_form[0].required: must be true or false, got text"),
    (_set(["start_form", 0, "label"], 42), "start_form[0].label: must be text, got a number"),
    (_delete(["start_form", 1, "type"]), "start_form[1].type: required"),
    (_set(["phases", 0, "name"], "x" * 121), "phases[0].name: must be at most 120 characters (has 121)"),
    (_set(["start_form"], {"item": "text"}), "start_form: must be a list of fields, got a mapping"),
    (_set(["phases", 1], "approval"), "phases[1]: must be a mapping of keys to values, got text"),
    (
        _set(["labels", 0, "color"], "red"),
        "labels[0].color: 'red' is not a color like \"#2563eb\" (quote it: # starts a YAML comment)",
    ),
    (_append(["labels"], {"name": "Priority"}), "labels[1].name: repeats label 'Priority'"),
    # duplicates
    (
        _set(["phases", 1, "fields", 0, "key"], "amount"),
        "phases[1].fields[0].key: repeats field key 'amount' (first at start_form[1])",
    ),
    (_set(["phases", 3, "key"], "done"), "phases[3].key: repeats phase key 'done' (first at phases[2])"),
    (
        _set(["start_form", 2, "options"], ["Hardware", "Hardware"]),
        "start_form[2].options[1]: repeats option 'Hardware'",
    ),
    # phases
    (_set(["phases", 2, "final"], False), None),  # still one final phase: fine
    (
        lambda d: [p.pop("final", None) for p in d["phases"]],
        "phases: at least one phase must be final (where finished cards rest)",
    ),
    (_set(["phases"], []), "phases: required: at least one phase"),
    (
        _set(["phases", 0, "final"], True),
        "phases[0].final: the first phase cannot be final: every card starts there",
    ),
    (
        _set(["phases", 0, "allowed_next"], ["approval", "aproval"]),
        "phases[0].allowed_next[1]: unknown phase 'aproval'",
    ),
    (
        _set(["phases", 0, "allowed_next"], ["triage"]),
        "phases[0].allowed_next[0]: a phase cannot list itself",
    ),
    (_set(["phases", 0, "wip_blocks"], True), "phases[0].wip_blocks: needs a wip_limit"),
    # options
    (_delete(["start_form", 2, "options"]), "start_form[2].options: required for select fields"),
    (
        _append(["start_form"], {"key": "todo", "label": "To do", "type": "checklist", "options": []}),
        "start_form[4].options: required for checklist fields",
    ),
    (
        _set(["start_form", 0, "options"], ["a"]),
        "start_form[0].options: only select, multi_select and checklist fields have options, not short_text",
    ),
    (
        _set(["start_form", 2, "options"], ["Hardware", True]),
        "start_form[2].options[1]: must be non-empty text, got true/false (quote values like yes, no, on, off)",
    ),
    # references of the pipe
    (_set(["title_field"], "titel"), "title_field: unknown start-form field 'titel'"),
    (_set(["title_field"], "notes"), "title_field: unknown start-form field 'notes'"),
    (_set(["key_fields"], ["amount", "nope"]), "key_fields[1]: unknown field 'nope'"),
    (
        _set(["key_fields"], ["item", "amount", "category", "urgent"]),
        "key_fields: at most three fields (has 4)",
    ),
    # validation rules
    (
        _set(["start_form", 0, "validation"], {"regex": "(unclosed"}),
        "start_form[0].validation.regex: does not compile (missing ), unterminated subpattern at position 0)",
    ),
    (
        _set(["start_form", 0, "validation"], {"min": 1}),
        "start_form[0].validation.min: not used by short_text fields",
    ),
    (
        _set(["start_form", 1, "validation"], {"min": "zero"}),
        "start_form[1].validation.min: must be a number, got text",
    ),
    (
        _set(["start_form", 1, "validation"], {"min": 10, "max": 1}),
        "start_form[1].validation: min (10) is greater than max (1)",
    ),
    (
        _set(["start_form", 0, "validation"], {"regex_message": "Use CC-123."}),
        "start_form[0].validation.regex_message: only with a regex",
    ),
    (
        _set(["start_form", 0, "validation"], {"max_length": 300}),
        "start_form[0].validation.max_length: must be a whole number from 0 to 255, got 300",
    ),
    (
        _set(["start_form", 0, "validation"], {"maxlength": 3}),
        "start_form[0].validation.maxlength: unknown key (did you mean 'max_length'?)",
    ),
    (
        _append(
            ["start_form"], {"key": "when", "label": "When", "type": "date", "validation": {"min": "soon"}}
        ),
        "start_form[4].validation.min: must be a date like 2026-01-31, got 'soon'",
    ),
    # settings of a type
    (
        _set(["start_form", 1, "config"], {"currency": "reais"}),
        "start_form[1].config.currency: must be a three-letter currency code like BRL, got 'reais'",
    ),
    (
        _set(["start_form", 0, "config"], {"multiple": True}),
        "start_form[0].config.multiple: short_text fields take no settings",
    ),
    (
        _set(["phases", 2, "fields", 0, "config"], {"allowed_types": ["pdf", "exe"]}),
        "phases[2].fields[0].config.allowed_types: unknown file type 'exe' (known: csv, docx, gif, jpeg, jpg, odt, pdf, png, txt, webp, xlsx, xml, zip)",
    ),
    (
        _set(["phases", 2, "fields", 0, "config"], {"multipel": True}),
        "phases[2].fields[0].config.multipel: unknown key (did you mean 'multiple'?)",
    ),
    # conditions
    (
        _set(["start_form", 1, "condition"], {"field": "urgnt", "op": "true"}),
        "start_form[1].condition.field: unknown field 'urgnt'",
    ),
    (
        _set(["start_form", 1, "condition"], {"field": "urgent", "op": "bigger"}),
        "start_form[1].condition.op: unknown operator 'bigger'",
    ),
    (
        _set(
            ["start_form", 1, "condition"],
            {"all": [{"field": "urgent", "op": "true"}, {"field": "notes", "op": "empty"}]},
        ),
        "start_form[1].condition.all[1].field: 'notes' is filled in a later phase (phases[0].fields[0]); "
        "use fields asked earlier or in the same phase",
    ),
    (
        _set(["start_form", 1, "condition"], {"field": "category", "op": "eq", "value": "Hardwar"}),
        "start_form[1].condition.value: 'Hardwar' is not an option of 'category'",
    ),
    (
        _set(["start_form", 1, "condition"], {"field": "category", "op": "in"}),
        "start_form[1].condition: operator 'in' needs a value",
    ),
    (
        _set(["start_form", 1, "condition"], {"field": "amount", "op": "gt", "value": 10}),
        "start_form[1].condition.field: a field cannot depend on itself",
    ),
    (
        _set(["start_form", 1, "condition"], ["urgent"]),
        "start_form[1].condition: must be an object",
    ),
    # fields in the wrong place
    (
        _set(["start_form", 0, "requester_editable"], True),
        "start_form[0].requester_editable: only phase fields can be requester_editable "
        "(the requester fills the whole start form)",
    ),
    (
        _both(
            _append(["start_form"], {"key": "due", "label": "Due", "type": "due_date"}),
            _append(["phases", 1, "fields"], {"key": "pay_by", "label": "Pay by", "type": "due_date"}),
        ),
        "phases[1].fields[1].type: a pipe has at most one due_date field (the first is start_form[4])",
    ),
]


@pytest.mark.parametrize(("change", "message"), CASES)
def test_it_names_each_problem_with_its_path(change, message):
    d = base()
    change(d)
    if message is None:
        definition_check(d)
        return
    assert message in without_hints(errors_of(d))


def test_it_suggests_the_key_that_was_meant():
    d = base()
    d["labels"][0]["colour"] = "#fff"
    d["start_form"][0]["requird"] = True
    messages = errors_of(d)
    assert "labels[0].colour: unknown key (did you mean 'color'?)" in messages
    assert "start_form[0].requird: unknown key (did you mean 'required'?)" in messages


def test_it_reports_every_problem_at_once():
    d = base()
    d["phases"][2]["fields"][0]["type"] = "numbr"
    d["title_field"] = "titel"
    d["phases"][0]["allowed_next"] = ["aproval"]

    messages = errors_of(d)

    assert messages == [
        "phases[0].allowed_next[0]: unknown phase 'aproval'",
        "phases[2].fields[0].type: unknown type 'numbr'",
        "title_field: unknown start-form field 'titel'",
    ]


def test_it_refuses_what_is_not_a_mapping():
    assert errors_of(["a", "list"]) == ["definition: must be a mapping of keys to values, got a list"]


def test_it_names_the_line_of_broken_yaml():
    with pytest.raises(DefinitionError) as info:
        definition_load("name: Purchases\nphases: [\n  - key: a\n")
    assert len(info.value.messages) == 1 and info.value.messages[0].startswith("line 3, column 3: ")


def test_it_refuses_a_key_given_twice():
    with pytest.raises(DefinitionError) as info:
        definition_load("name: Purchases\nslug: purchases\ncode: PR\nname: Compras\nphases: []\n")
    assert info.value.messages == ["line 4, column 1: the key 'name' is given twice"]


def test_it_imports_nothing_from_a_broken_definition(orgs):
    d = base()
    d["phases"][0]["allowed_next"] = ["nowhere"]
    with pytest.raises(DefinitionError):
        pipe_import(organization=orgs[0], definition=d)
    assert not Pipe.objects.exists()


# ---------------------------------------------------------------- extensions


class _Recorder:
    """A pretend rail: keeps what it loads in memory and reports each call."""

    def __init__(self):
        self.calls: list[tuple] = []
        self.pipe_values: dict[int, dict] = {}
        self.phase_values: dict[int, list] = {}

    def validate_pipe(self, value, path, definition):
        self.calls.append(("validate", path, definition["slug"]))
        if not isinstance(value, dict):
            return [f"{path}: must be a mapping"]
        return [
            f"{path}.{k}: unknown phase '{k}'"
            for k in value
            if k not in [p["key"] for p in definition["phases"]]
        ]

    def validate_phase(self, value, path, definition):
        self.calls.append(("validate", path, definition["slug"]))
        return [] if isinstance(value, list) else [f"{path}: must be a list of steps"]

    def load_pipe(self, pipe, value):
        # Runs after the whole process model exists, inside the import's transaction.
        self.calls.append(("load", "pipe", pipe.phases.count(), pipe.fields.count(), pipe.labels.count()))
        self.pipe_values[pipe.pk] = value

    def load_phase(self, phase, value):
        self.calls.append(("load", phase.key))
        self.phase_values[phase.pk] = value

    def dump_pipe(self, pipe):
        return self.pipe_values.get(pipe.pk)

    def dump_phase(self, phase):
        return self.phase_values.get(phase.pk)


@pytest.fixture
def recorder():
    rec = _Recorder()
    register_extension(
        level="pipe", key="budgets", validate=rec.validate_pipe, load=rec.load_pipe, dump=rec.dump_pipe
    )
    register_extension(
        level="phase", key="checks", validate=rec.validate_phase, load=rec.load_phase, dump=rec.dump_phase
    )
    yield rec
    unregister_extension("pipe", "budgets")
    unregister_extension("phase", "checks")


def with_extensions(d: dict) -> dict:
    d = copy.deepcopy(d)
    d["budgets"] = {"approval": {"limit": 10000}}
    d["phases"][0]["checks"] = [{"name": "duplicate invoice", "mechanism": "automation"}]
    d["phases"][1]["checks"] = [{"name": "four eyes", "mechanism": "human"}]
    return d


def test_it_refuses_extension_keys_nobody_registered():
    assert "budgets: unknown key" in without_hints(errors_of(with_extensions(base())))


def test_it_lets_an_extension_validate_its_key(recorder):
    d = with_extensions(base())
    d["budgets"] = {"payment": {"limit": 1}}
    d["phases"][1]["checks"] = "four eyes"

    messages = errors_of(d)

    assert messages == [
        "budgets.payment: unknown phase 'payment'",
        "phases[1].checks: must be a list of steps",
    ]
    assert ("validate", "budgets", "purchases") in recorder.calls
    assert ("validate", "phases[0].checks", "purchases") in recorder.calls


def test_it_loads_pipe_extensions_first_then_phase_extensions(recorder, orgs):
    pipe = pipe_import(organization=orgs[0], definition=with_extensions(base()))

    loads = [c for c in recorder.calls if c[0] == "load"]
    assert loads == [("load", "pipe", 4, 7, 1), ("load", "triage"), ("load", "approval")]
    assert recorder.pipe_values[pipe.pk] == {"approval": {"limit": 10000}}


def test_it_dumps_extensions_and_round_trips_them(recorder, orgs):
    pipe = pipe_import(organization=orgs[0], definition=with_extensions(base()))
    text = definition_dump(pipe_export(pipe))

    assert "budgets:\n  approval:\n    limit: 10000\n" in text
    assert "    checks:\n      - name: duplicate invoice\n        mechanism: automation\n" in text
    assert "checks" not in definition_load(text)["phases"][2]  # dump returned None: left out
    copy_ = pipe_import(organization=orgs[1], definition=definition_load(text))
    assert definition_dump(pipe_export(copy_)) == text


def test_it_rolls_back_the_import_when_an_extension_fails(orgs):
    def explode(obj, value):
        raise RuntimeError("rail unavailable")

    register_extension(
        level="phase", key="checks", validate=lambda v, p, d: [], load=explode, dump=lambda o: None
    )
    try:
        d = base()
        d["phases"][0]["checks"] = []
        with pytest.raises(RuntimeError):
            pipe_import(organization=orgs[0], definition=d)
    finally:
        unregister_extension("phase", "checks")
    assert not Pipe.objects.exists() and not Phase.objects.exists() and not Field.objects.exists()


def test_it_refuses_an_extension_that_redefines_a_core_key():
    with pytest.raises(ValueError, match="core key"):
        register_extension(level="phase", key="fields", validate=None, load=None, dump=None)
    with pytest.raises(ValueError, match="level"):
        register_extension(level="field", key="x", validate=None, load=None, dump=None)


def test_it_forgets_an_unregistered_extension(recorder):
    unregister_extension("phase", "checks")
    d = base()
    d["phases"][0]["checks"] = []
    assert "phases[0].checks: unknown key" in without_hints(errors_of(d))


# ---------------------------------------------------------------- the documentation


def test_it_imports_the_example_of_the_documentation(orgs):
    doc = (settings.BASE_DIR / "docs" / "process-format.md").read_text(encoding="utf-8")
    section = doc.split("## A complete example", 1)[1]
    example = section.split("```yaml\n", 1)[1].split("```", 1)[0]

    d = definition_load(example)
    pipe = pipe_import(organization=orgs[0], definition=d)

    assert definition_load(definition_dump(d)) == d
    assert pipe_export(pipe) == d
    assert [p.key for p in pipe.phases.all()] == ["triage", "approval", "done", "rejected"]


def test_it_documents_every_key_and_type():
    doc = (settings.BASE_DIR / "docs" / "process-format.md").read_text(encoding="utf-8")
    for key in (*PIPE_KEYS, *PHASE_KEYS, *FIELD_KEYS, *VALIDATION_KEYS):
        assert f"`{key}`" in doc, key
    for field_type in FieldType.values:
        assert f"| `{field_type}` |" in doc, field_type
    for name, settings_ in CONFIG_KEYS.items():
        for key in settings_:
            assert f"`{key}`" in doc, (name, key)
