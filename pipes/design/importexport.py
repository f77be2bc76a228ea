"""Process definitions as files: a whole pipe as YAML, checked, imported and exported.

A definition is a mapping (documented in docs/process-format.md) with the pipe's settings,
its labels, its start form and its phases in order, each phase with its fields. It holds no
people and no roles, so a definition moves freely between organizations.

- `definition_load(text)` parses YAML and checks it; `definition_check(dict)` checks a mapping.
  Both raise DefinitionError listing every problem as "<path>: <reason>", e.g.
  "phases[2].fields[0].type: unknown type 'numbr'".
- `pipe_import(organization=..., definition=...)` creates the pipe in one transaction.
- `pipe_export(pipe)` gives the definition of a pipe and `definition_dump(dict)` writes it
  as YAML with a stable key order and defaults left out, so export → import → export is exact.

Other apps add keys to the format with `register_extension` (the rail adds "agents" on the
pipe and "steps" on each phase) without this module knowing them.

The vocabulary is in format.py and the checker in checker.py; the bundled templates are templates/*.yaml.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from django.db import IntegrityError, transaction
from django.utils.translation import gettext as _

from ..models import Field, Label, Organization, Phase, Pipe
from .checker import definition_check
from .format import (
    DEFAULT_LABEL_COLOR,
    FIELD_DEFAULTS,
    FIELD_KEYS,
    LABEL_DEFAULTS,
    LABEL_KEYS,
    PHASE_DEFAULTS,
    PHASE_KEYS,
    PIPE_DEFAULTS,
    PIPE_KEYS,
    VALIDATION_KEYS,
    DefinitionError,
    extensions,
)

TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"


class _Loader(yaml.SafeLoader):
    """Safe YAML that refuses a key given twice in one mapping (YAML would keep the last silently)."""

    def construct_mapping(self, node, deep=False):
        seen: set = set()
        for key_node, _value in node.value:
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, str | int | float | bool) and key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, _("the key '%(key)s' is given twice") % {"key": key}, key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def definition_load(text: str) -> dict:
    """Parse and check a YAML definition; raises DefinitionError."""
    try:
        data = yaml.load(text, Loader=_Loader)  # a SafeLoader: no Python objects
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        if mark is not None:
            raise DefinitionError(
                _("line %(line)d, column %(column)d: %(problem)s")
                % {"line": mark.line + 1, "column": mark.column + 1, "problem": problem}
            ) from None
        raise DefinitionError(_("not valid YAML: %(problem)s") % {"problem": problem}) from None
    return definition_check(data)


# ---------------------------------------------------------------- import


def pipe_import(*, organization: Organization, definition: dict) -> Pipe:
    """Create the pipe a definition describes in `organization`, in one transaction.

    Refuses (DefinitionError) when the definition has problems or the organization already
    has a pipe with that slug."""
    d = definition_check(definition)
    slug = d["slug"]
    with transaction.atomic():
        if Pipe.objects.filter(organization=organization, slug=slug).exists():
            raise DefinitionError(_slug_taken(organization, slug))
        try:
            with transaction.atomic():
                pipe = Pipe.objects.create(
                    organization=organization,
                    name=d["name"],
                    slug=slug,
                    code=d["code"],
                    description=d.get("description") or "",
                    portal_group=d.get("portal_group") or "",
                    title_field=d.get("title_field") or "",
                    key_fields=list(d.get("key_fields") or []),
                    expiration_days=d.get("expiration_days"),
                    public_form=bool(d.get("public_form", False)),
                )
        except IntegrityError:  # created by someone else a moment ago
            raise DefinitionError(_slug_taken(organization, slug)) from None
        phases: dict[str, Phase] = {}
        for position, p in enumerate(d["phases"], start=1):
            phases[p["key"]] = Phase.objects.create(
                pipe=pipe,
                key=p["key"],
                name=p["name"],
                position=position,
                description=p.get("description") or "",
                is_final=bool(p.get("final", False)),
                sla_hours=p.get("sla_hours"),
                wip_limit=p.get("wip_limit"),
                wip_blocks=bool(p.get("wip_blocks", False)),
                requester_status=p.get("requester_status") or "",
            )
        for p in d["phases"]:
            if p.get("allowed_next"):
                phases[p["key"]].allowed_next.set([phases[k] for k in p["allowed_next"]])
        for position, f in enumerate(d.get("start_form") or [], start=1):
            _field_create(pipe, None, position, f)
        for p in d["phases"]:
            for position, f in enumerate(p.get("fields") or [], start=1):
                _field_create(pipe, phases[p["key"]], position, f)
        for label in d.get("labels") or []:
            Label.objects.create(
                pipe=pipe, name=label["name"], color=label.get("color") or DEFAULT_LABEL_COLOR
            )
        for ext in extensions("pipe"):
            if d.get(ext.key) is not None:
                ext.load(pipe, d[ext.key])
        for ext in extensions("phase"):
            for p in d["phases"]:
                if p.get(ext.key) is not None:
                    ext.load(phases[p["key"]], p[ext.key])
    return pipe


def _slug_taken(organization: Organization, slug: str) -> str:
    return _(
        "slug: %(org)s already has a pipe with the slug '%(slug)s'; change the slug in the file "
        "or remove that pipe first"
    ) % {"org": organization.name, "slug": slug}


def _field_create(pipe: Pipe, phase: Phase | None, position: int, f: dict) -> Field:
    return Field.objects.create(
        pipe=pipe,
        phase=phase,
        key=f["key"],
        label=f["label"],
        type=f["type"],
        help_text=f.get("help_text") or "",
        required=bool(f.get("required", False)),
        position=position,
        options=list(f.get("options") or []),
        validation=dict(f.get("validation") or {}),
        config=dict(f.get("config") or {}),
        condition=f.get("condition"),
        pii=bool(f.get("pii", False)),
        visible_to_requester=bool(f.get("visible_to_requester", True)),
        requester_editable=bool(f.get("requester_editable", False)),
    )


# ---------------------------------------------------------------- export and dump


def pipe_export(pipe: Pipe) -> dict:
    """The definition of `pipe`: keys in the documented order, defaults left out."""
    phases = list(pipe.phases.order_by("position", "id").prefetch_related("allowed_next"))
    order = {phase.pk: i for i, phase in enumerate(phases)}
    fields = list(pipe.fields.order_by("position", "id"))

    def field_dict(f: Field) -> dict:
        return {
            "key": f.key,
            "label": f.label,
            "type": f.type,
            "help_text": f.help_text,
            "required": f.required,
            "options": list(f.options or []),
            "validation": dict(f.validation or {}),
            "config": dict(f.config or {}),
            "condition": f.condition or None,
            "pii": f.pii,
            "visible_to_requester": f.visible_to_requester,
            "requester_editable": f.requester_editable,
        }

    phase_dicts = []
    for phase in phases:
        entry = {
            "key": phase.key,
            "name": phase.name,
            "description": phase.description,
            "final": phase.is_final,
            "sla_hours": phase.sla_hours,
            "wip_limit": phase.wip_limit,
            "wip_blocks": phase.wip_blocks,
            "requester_status": phase.requester_status,
            "allowed_next": [
                p.key for p in sorted(phase.allowed_next.all(), key=lambda p: order.get(p.pk, len(order)))
            ],
            "fields": [field_dict(f) for f in fields if f.phase_id == phase.pk],
        }
        for ext in extensions("phase"):
            value = ext.dump(phase)
            if value is not None:
                entry[ext.key] = value
        phase_dicts.append(entry)

    definition = {
        "name": pipe.name,
        "slug": pipe.slug,
        "code": pipe.code,
        "description": pipe.description,
        "portal_group": pipe.portal_group,
        "title_field": pipe.title_field,
        "key_fields": list(pipe.key_fields or []),
        "expiration_days": pipe.expiration_days,
        "public_form": pipe.public_form,
        "labels": [
            {"name": label.name, "color": label.color} for label in pipe.labels.order_by("name", "id")
        ],
        "start_form": [field_dict(f) for f in fields if f.phase_id is None],
        "phases": phase_dicts,
    }
    for ext in extensions("pipe"):
        value = ext.dump(pipe)
        if value is not None:
            definition[ext.key] = value
    return _canonical(definition)


def _is_default(value: Any, default: Any) -> bool:
    if default is None:
        return value is None
    return type(value) is type(default) and value == default


def _ordered(data: Mapping, keys: tuple[str, ...], defaults: Mapping[str, Any], extra: list[str]) -> dict:
    """`data` with its keys in the documented order (then extensions, then anything else), defaults dropped."""
    out: dict[str, Any] = {}
    for key in [*keys, *extra]:
        if key in data and not (key in defaults and _is_default(data[key], defaults[key])):
            out[key] = data[key]
    for key in data:
        if key not in out and key not in keys and key not in extra:
            out[key] = data[key]
    return out


def _canonical_condition(condition: Any) -> Any:
    if not isinstance(condition, Mapping):
        return condition
    for group in ("all", "any"):
        if group in condition and isinstance(condition[group], list):
            return {group: [_canonical_condition(c) for c in condition[group]]}
    if "not" in condition:
        return {"not": _canonical_condition(condition["not"])}
    return _ordered(condition, ("field", "op", "value"), {}, [])


def _canonical_field(f: Any) -> Any:
    if not isinstance(f, Mapping):
        return f
    f = dict(f)
    if isinstance(f.get("validation"), Mapping):
        f["validation"] = _ordered(f["validation"], VALIDATION_KEYS, {}, [])
    if isinstance(f.get("config"), Mapping):
        f["config"] = {k: f["config"][k] for k in sorted(f["config"], key=str)}
    if f.get("condition") is not None:
        f["condition"] = _canonical_condition(f["condition"])
    return _ordered(f, FIELD_KEYS, FIELD_DEFAULTS, [])


def _canonical(definition: Any) -> Any:
    """The definition in dump form: documented key order, defaults left out (JSON key order is not kept
    by every database, so nested mappings are ordered here too)."""
    if not isinstance(definition, Mapping):
        return definition
    d = dict(definition)
    if isinstance(d.get("labels"), list):
        d["labels"] = [
            _ordered(label, LABEL_KEYS, LABEL_DEFAULTS, []) if isinstance(label, Mapping) else label
            for label in d["labels"]
        ]
    if isinstance(d.get("start_form"), list):
        d["start_form"] = [_canonical_field(f) for f in d["start_form"]]
    if isinstance(d.get("phases"), list):
        phase_ext = [e.key for e in extensions("phase")]
        phases = []
        for p in d["phases"]:
            if isinstance(p, Mapping):
                p = dict(p)
                if isinstance(p.get("fields"), list):
                    p["fields"] = [_canonical_field(f) for f in p["fields"]]
                p = _ordered(p, PHASE_KEYS, PHASE_DEFAULTS, phase_ext)
            phases.append(p)
        d["phases"] = phases
    return _ordered(d, PIPE_KEYS, PIPE_DEFAULTS, [e.key for e in extensions("pipe")])


class _Dumper(yaml.SafeDumper):
    """Indented lists, short scalar lists inline, multi-line text as literal blocks, no aliases."""

    def increase_indent(self, flow: bool = False, indentless: bool = False):
        return super().increase_indent(flow, False)

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _represent_str(dumper: yaml.SafeDumper, value: str):
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


def _represent_list(dumper: yaml.SafeDumper, value: list):
    scalars = all(
        isinstance(v, str | int | float | bool) and not (isinstance(v, str) and "\n" in v) for v in value
    )
    flow = bool(value) and scalars and sum(len(str(v)) + 2 for v in value) <= 70
    return dumper.represent_sequence("tag:yaml.org,2002:seq", value, flow_style=flow)


class _Compact(dict):
    """A small mapping (validation, config, condition) written inline when it fits on a line."""


def _represent_compact(dumper: yaml.SafeDumper, value: _Compact):
    def flat(v: Any) -> bool:
        if isinstance(v, list):
            return all(isinstance(i, str | int | float | bool) for i in v)
        if isinstance(v, dict):
            return all(flat(i) for i in v.values())
        return v is None or isinstance(v, str | int | float | bool) and "\n" not in str(v)

    inline = flat(value) and len(str(value)) <= 80
    return dumper.represent_mapping("tag:yaml.org,2002:map", value.items(), flow_style=inline)


_Dumper.add_representer(str, _represent_str)
_Dumper.add_representer(list, _represent_list)
_Dumper.add_representer(_Compact, _represent_compact)


def _compacted(definition: Any) -> Any:
    """Wraps the small mappings of every field so the dump writes them inline."""

    def field(f: Any) -> Any:
        if not isinstance(f, dict):
            return f
        return {
            k: _Compact(v) if k in ("validation", "config", "condition") and isinstance(v, dict) else v
            for k, v in f.items()
        }

    if not isinstance(definition, dict):
        return definition
    d = dict(definition)
    if isinstance(d.get("start_form"), list):
        d["start_form"] = [field(f) for f in d["start_form"]]
    if isinstance(d.get("phases"), list):
        d["phases"] = [
            {**p, "fields": [field(f) for f in p["fields"]]}
            if isinstance(p, dict) and isinstance(p.get("fields"), list)
            else p
            for p in d["phases"]
        ]
    return d


def definition_dump(definition: dict) -> str:
    """YAML text of a definition, with a stable key order and defaults left out."""
    return yaml.dump(
        _compacted(_canonical(definition)),
        Dumper=_Dumper,
        sort_keys=False,
        allow_unicode=True,
        default_flow_style=False,
        width=100,
    )


# ---------------------------------------------------------------- templates


def process_templates() -> dict[str, Path]:
    """The bundled process templates (pipes/design/templates/*.yaml) by file stem."""
    return {path.stem: path for path in sorted(TEMPLATES_DIR.glob("*.yaml"))}


def process_template_load(name: str) -> dict:
    """The checked definition of a bundled template, e.g. "accounts_payable"."""
    templates = process_templates()
    if name not in templates:
        raise DefinitionError(
            _("unknown template '%(name)s' (known: %(known)s)")
            % {"name": name, "known": ", ".join(templates)}
        )
    return definition_load(templates[name].read_text(encoding="utf-8"))
