"""A process-wide cache of each pipe's design: its phases (with their allowed next phases) and fields.

A card move, a board render or a field update needs the pipe's phases and fields; they change
rarely (a design change), cards change all the time. The database keeps a stamp per pipe
(`DesignStamp`) that triggers change on every write to a phase, a field or a transition, however
it is made; a reader gets the stamp in a query it makes anyway (the card or pipe it loads, the
row it locks) and asks this cache for the design at that stamp. A stamp never seen loads the design
(three queries) and keeps it; an old stamp is simply never asked for again.

The cache holds rows (tuples of column values), never model instances: every call builds fresh
instances, so nothing one request sets on a phase or a field leaks into another's.
"""

from __future__ import annotations

import copy
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any

from django.db import models
from django.db.models import OuterRef, Subquery
from django.db.models.base import ModelState

from .models import DesignStamp, Field, Phase, Pipe

# One entry per pipe design in use; the oldest is dropped past this (a few KB each).
MAX_ENTRIES = 512
STAMP_ATTR = "_design_stamp"

_lock = threading.Lock()
_entries: OrderedDict[tuple[int, int, str], Any] = OrderedDict()


def stamp_subquery(pipe_ref: str = "pipe_id") -> Subquery:
    """The design stamp of the pipe `pipe_ref` names, for `.annotate(...)` on the query that loads it."""
    return Subquery(DesignStamp.objects.filter(pipe_id=OuterRef(pipe_ref)).values("version")[:1])


def remember_stamp(pipe: Pipe, stamp: int | None) -> Pipe:
    """Note on `pipe` the stamp read with it (annotated on the query that loaded it for this request).

    Only getters that load a pipe for one request call this: a pipe object kept longer would keep a
    stamp the design has moved on from. Services read the stamp in their own transaction instead."""
    if stamp is not None:
        setattr(pipe, STAMP_ATTR, stamp)
    return pipe


def stamp_of(pipe: Pipe, stamp: int | None = None) -> int:
    """`stamp` if given, else the one the pipe's getter read with it, else one small query."""
    if stamp is None:
        stamp = getattr(pipe, STAMP_ATTR, None)
    if stamp is None:
        stamp = DesignStamp.objects.filter(pipe_id=pipe.pk).values_list("version", flat=True).first() or 0
    return stamp


def cached(pipe: Pipe, name: str, load: Callable[[Pipe], Any], stamp: int | None = None) -> Any:
    """`load(pipe)`'s answer at the pipe's stamp, loaded once per stamp and process.

    Other apps keep what they derive from the design here too (the rail: which phases have steps;
    the stamp changes with a step, by the trigger the rail's migration adds). `load` must return
    plain data (no model instances) that callers never change."""
    key = (pipe.pk, stamp_of(pipe, stamp), name)
    with _lock:
        if key in _entries:
            _entries.move_to_end(key)
            return _entries[key]
    value = load(pipe)
    with _lock:
        _entries[key] = value
        while len(_entries) > MAX_ENTRIES:
            _entries.popitem(last=False)
    return value


def clear() -> None:
    with _lock:
        _entries.clear()


# ---------------------------------------------------------------- the design of a pipe


@cache
def _columns(model: type[models.Model]) -> tuple[str, ...]:
    return tuple(f.attname for f in model._meta.concrete_fields)


@cache
def _json_columns(model: type[models.Model]) -> frozenset[int]:
    return frozenset(i for i, f in enumerate(model._meta.concrete_fields) if isinstance(f, models.JSONField))


@dataclass(frozen=True)
class _Rows:
    phases: tuple[tuple, ...]
    allowed_next: dict[int, tuple[int, ...]]
    fields: tuple[tuple, ...]


def _load(pipe: Pipe) -> _Rows:
    phases = tuple(
        Phase.objects.filter(pipe_id=pipe.pk).order_by("position", "id").values_list(*_columns(Phase))
    )
    allowed: dict[int, list[int]] = {}
    transitions = (
        Phase.allowed_next.through.objects.filter(from_phase__pipe_id=pipe.pk)
        .order_by("to_phase__position", "to_phase_id")
        .values_list("from_phase_id", "to_phase_id")
    )
    for source, target in transitions:
        allowed.setdefault(source, []).append(target)
    # The order the board has always shown fields in (the models' default order without the pipe's).
    fields = tuple(
        Field.objects.filter(pipe_id=pipe.pk)
        .order_by("phase__position", "position", "id")
        .values_list(*_columns(Field))
    )
    return _Rows(phases=phases, allowed_next={k: tuple(v) for k, v in allowed.items()}, fields=fields)


def _build(model: type[models.Model], row: tuple, db: str) -> models.Model:
    """What `model.from_db` builds from `row`, without running `__init__` field by field (no signal
    listens to these models' init): a fresh instance whose JSON values are copies of the cached ones."""
    json_columns = _json_columns(model)
    instance = model.__new__(model)
    state = ModelState()
    state.adding, state.db = False, db
    values = instance.__dict__
    values["_state"] = state
    for i, (name, value) in enumerate(zip(_columns(model), row, strict=True)):
        values[name] = copy.deepcopy(value) if i in json_columns and value is not None else value
    return instance


@dataclass
class Design:
    """Fresh instances of a pipe's phases (each with `allowed_next` prefetched) and fields (each with
    its `phase` and `pipe` set), built from the cached rows."""

    phases: list[Phase]
    fields: list[Field]
    stamp: int = 0  # the design stamp they were built at

    @property
    def phases_by_id(self) -> dict[int, Phase]:
        return {p.pk: p for p in self.phases}

    def allowed_next(self, phase: Phase) -> list[Phase]:
        return list(phase.allowed_next.all())


class _Prefetched(dict):
    """An instance's `_prefetched_objects_cache` whose querysets are made on first use: a relation's
    queryset costs more to make than the rows it answers, and most reads of a design use few of them.
    Removing a name (Django does when the relation is written) drops what would have made it."""

    def __init__(self) -> None:
        super().__init__()
        self.makers: dict[str, Callable[[], Any]] = {}

    def __missing__(self, name: str):
        make = self.makers.pop(name)  # KeyError when nothing would make it: the manager then queries
        value = self[name] = make()
        return value

    def __contains__(self, name: object) -> bool:
        return super().__contains__(name) or name in self.makers

    def __delitem__(self, name: str) -> None:
        existed = self.makers.pop(name, None) is not None
        if super().__contains__(name) or not existed:
            super().__delitem__(name)

    def pop(self, name: str, *default):
        self.makers.pop(name, None)
        return super().pop(name, *default)


def _prefetched(instance: models.Model, name: str, objects: list) -> None:
    """Set what prefetch_related would have: `instance.<name>.all()` answers `objects` with no query."""
    cache_ = instance.__dict__.get("_prefetched_objects_cache")
    if not isinstance(cache_, _Prefetched):
        cache_ = _Prefetched()
        cache_.update(instance.__dict__.get("_prefetched_objects_cache") or {})
        instance._prefetched_objects_cache = cache_

    def make():
        queryset = getattr(instance, name).get_queryset()  # the relation's own queryset (its filters)
        queryset._result_cache = list(objects)
        queryset._prefetch_done = True
        return queryset

    cache_.pop(name, None)
    cache_.makers[name] = make


def design_of(pipe: Pipe, stamp: int | None = None, *, prefetch: bool = False) -> Design:
    """The pipe's phases and fields at `stamp` (see stamp_of). With `prefetch`, `pipe.fields.all()`
    answers from them too, with no query (for code that reads the fields from the pipe).

    The instances are built for `pipe` (this object) and shared by every call on it at the same
    stamp; another pipe object, or another stamp, gets instances of its own."""
    stamp = stamp_of(pipe, stamp)
    built = getattr(pipe, "_design_built", None)
    if built is not None and built[0] == stamp:  # built for this pipe object at this stamp already
        if prefetch:
            _prefetched(pipe, "fields", built[1].fields)
        return built[1]
    rows = cached(pipe, "design", _load, stamp)
    db = pipe._state.db or "default"
    phases = [_build(Phase, row, db) for row in rows.phases]
    by_id = {p.pk: p for p in phases}
    for phase in phases:
        phase.pipe = pipe
    for phase in phases:
        targets = [by_id[i] for i in rows.allowed_next.get(phase.pk, ()) if i in by_id]
        _prefetched(phase, "allowed_next", targets)
    fields = []
    for row in rows.fields:
        f = _build(Field, row, db)
        f.pipe = pipe
        f.phase = by_id.get(f.phase_id) if f.phase_id else None
        fields.append(f)
    if prefetch:
        _prefetched(pipe, "fields", fields)
    design = Design(phases=phases, fields=fields, stamp=stamp)
    # One request (the view, then the write path) reads the design of the same pipe object more than
    # once: the instances built for it are its own, so they are kept on it for the same stamp.
    pipe._design_built = (stamp, design)
    return design
