"""The JSON paths of inbound mappings: `$.order.total`, `$.items[0].sku`, `$["odd key"]` (a subset of
JSONPath: member names and list indexes, one value per path, no wildcards or filters)."""

from __future__ import annotations

import re
from typing import Any

from django.utils.translation import gettext as _

MISSING = object()

_STEP = re.compile(r"""\.([A-Za-z_][\w\-]*)|\[(\d+)\]|\[(?:"([^"\\]*)"|'([^'\\]*)')\]""")


class PathError(ValueError):
    pass


def parse_path(path: str) -> list[str | int]:
    """The steps of `path` (names and indexes); raises PathError when it is not one."""
    if not isinstance(path, str) or not path.startswith("$"):
        raise PathError(_("A path starts with $, e.g. $.order.id."))
    steps: list[str | int] = []
    pos = 1
    while pos < len(path):
        match = _STEP.match(path, pos)
        if match is None:
            raise PathError(
                _('%(path)s is not a path this mapping reads (use $.name, $.list[0], $["a key"]).')
                % {"path": path}
            )
        name, index, quoted, single = match.groups()
        steps.append(int(index) if index is not None else (name or quoted or single or ""))
        pos = match.end()
    if not steps:
        raise PathError(_("Name a value inside the body, e.g. $.order.id."))
    return steps


def path_problem(path: str) -> str | None:
    try:
        parse_path(path)
    except PathError as exc:
        return str(exc)
    return None


def path_read(data: Any, path: str) -> Any:
    """The value at `path` in `data`, or MISSING."""
    value = data
    for step in parse_path(path):
        in_list = isinstance(step, int) and isinstance(value, list) and step < len(value)
        in_object = isinstance(step, str) and isinstance(value, dict) and step in value
        if not (in_list or in_object):
            return MISSING
        value = value[step]
    return value


def mapping_problems(mapping: Any, *, pipe) -> list[str]:
    """What is wrong with a mapping {path: field key} for `pipe` (empty when nothing)."""
    if not isinstance(mapping, dict):
        return [_('The mapping is a JSON object: {"$.path": "field_key"}.')]
    keys = set(pipe.fields.values_list("key", flat=True))
    problems = []
    for path, key in mapping.items():
        problem = path_problem(path)
        if problem:
            problems.append(problem)
        elif not isinstance(key, str) or key not in keys:
            problems.append(
                _("%(path)s is mapped to “%(key)s”, which is not a field of this pipe.")
                % {"path": path, "key": key}
            )
    return problems
