"""Idempotency-Key on POST: a repeat of a request returns the first answer and changes nothing.

The key is claimed by inserting an IdempotencyRecord (unique per caller and key) in the same
transaction as the write itself, so:

- a repeat after the first answer finds the record and gets the stored status and body back
  (with `Idempotent-Replayed: true`);
- a repeat *while* the first is running waits on the unique index until the first commits, then
  finds its record: two simultaneous posts of one key create one card;
- a repeat with a different body (another fingerprint) is refused with 422;
- a refused first attempt (a 4xx) or a crash stores nothing: the key stays free, so the client
  may fix the request and send it again under the same key.

Records are kept for settings-free 24 hours (IDEMPOTENCY_TTL); `idempotency_records_purge` clears older ones.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import json
from collections.abc import Callable

from django.db import connection, transaction
from django.db.models import Q
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils import timezone
from django.utils.translation import gettext as _

from orchestrator.models import IdempotencyRecord
from pipes.governance import erasure_patterns
from pipes.models import Field, Pipe
from pipes.services import ERASED, scrub_personal_data

from .errors import error_body, response_for

HEADER = "Idempotency-Key"
MAX_KEY_LENGTH = 255
IDEMPOTENCY_TTL = dt.timedelta(hours=24)


def _fingerprint(request: HttpRequest) -> str:
    """What makes two requests "the same": method, path and body (form fields and file contents too)."""
    digest = hashlib.sha256(f"{request.method} {request.path}\n".encode())
    if request.content_type == "multipart/form-data":
        for key in sorted(request.POST):
            digest.update(json.dumps([key, request.POST.getlist(key)]).encode())
        for key in sorted(request.FILES):
            for upload in request.FILES.getlist(key):
                content = hashlib.sha256()
                for chunk in upload.chunks():
                    content.update(chunk)
                upload.seek(0)
                digest.update(json.dumps([key, upload.name, upload.size, content.hexdigest()]).encode())
    else:
        try:
            body = json.dumps(json.loads(request.body or b"null"), sort_keys=True)
        except ValueError:
            body = request.body.decode("utf-8", "replace")
        digest.update(body.encode())
    return digest.hexdigest()


def _replay(record: IdempotencyRecord, fingerprint: str) -> HttpResponse:
    if record.fingerprint != fingerprint:
        body = error_body(
            [(HEADER, _("This Idempotency-Key was already used for a different request; use a new key."))],
            code="idempotency_mismatch",
        )
        return JsonResponse(body, status=422)
    response = JsonResponse(record.body, status=record.status_code, safe=False)
    response["Idempotent-Replayed"] = "true"
    return response


def run_once(request: HttpRequest, call: Callable[[], HttpResponse]) -> HttpResponse:
    """Answer `request` with `call()`, once per Idempotency-Key of its caller (see the module docstring)."""
    key = request.headers.get(HEADER, "")
    if not key:
        return call()
    if len(key) > MAX_KEY_LENGTH or not key.isprintable() or not key.strip():
        body = error_body(
            [(HEADER, _("Use a key of 1 to 255 printable characters, e.g. a UUID."))], code="invalid"
        )
        return JsonResponse(body, status=400)
    actor_key = request.auth.key
    fingerprint = _fingerprint(request)
    with transaction.atomic():
        record_id = _claim(actor_key=actor_key, key=key, fingerprint=fingerprint)
        if record_id is None:
            # Someone (this caller, in another request) holds the key: its answer is committed now.
            record = IdempotencyRecord.objects.get(actor_key=actor_key, key=key)
            return _replay(record, fingerprint)
        response = call()
        if response.status_code >= 300:
            transaction.set_rollback(True)  # a refusal is not remembered: the key stays free
            return response
        body = json.loads(response.content) if response.content else None
        IdempotencyRecord.objects.filter(pk=record_id).update(status_code=response.status_code, body=body)
    return response


def _claim(*, actor_key: str, key: str, fingerprint: str) -> int | None:
    """Insert the key's record; its id, or None when the key is taken.

    INSERT … ON CONFLICT DO NOTHING RETURNING (PostgreSQL, and SQLite since 3.35): a key held by a request still
    running makes this one wait until that one commits (or rolls back, freeing the key), and a taken
    key leaves the transaction usable, with no savepoint around the insert."""
    q = connection.ops.quote_name
    columns = ", ".join(q(c) for c in ("actor_key", "key", "fingerprint", "status_code", "created_at"))
    conflict = f"{q('actor_key')}, {q('key')}"
    sql = (
        f"INSERT INTO {q(IdempotencyRecord._meta.db_table)} ({columns}) VALUES (%s, %s, %s, 0, %s) "  # noqa: S608
        f"ON CONFLICT ({conflict}) DO NOTHING RETURNING {q('id')}"
    )
    created_at = connection.ops.adapt_datetimefield_value(timezone.now())
    with connection.cursor() as cursor:
        cursor.execute(sql, [actor_key, key, fingerprint, created_at])
        row = cursor.fetchone()
    return row[0] if row else None


def idempotent(view: Callable) -> Callable:
    """Decorate a POST endpoint that returns a JsonResponse: repeats by key get the first answer.

    Errors the endpoint raises are turned into their JSON answer here (response_for), inside the key's
    transaction, so a refused write leaves the key unclaimed."""

    @functools.wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs):
        def call() -> HttpResponse:
            try:
                return view(request, *args, **kwargs)
            except Exception as exc:
                response = response_for(exc)
                if response is None:
                    raise
                return response

        return run_once(request, call)

    return wrapper


def idempotency_records_purge(*, now: dt.datetime | None = None) -> int:
    """Delete records older than IDEMPOTENCY_TTL; returns how many."""
    cutoff = (now or timezone.now()) - IDEMPOTENCY_TTL
    deleted, _by_model = IdempotencyRecord.objects.filter(created_at__lt=cutoff).delete()
    return deleted


def _blank_card(body: dict, pii: dict[int, set[str]], titles: dict[int, str]) -> dict:
    """A stored card answer with its personal-data values (and a personal title) erased."""
    keys = pii.get(body.get("pipe_id"), set())
    values = body.get("values")
    if isinstance(values, dict) and keys:
        body = dict(
            body, values={k: (ERASED if k in keys and v is not None else v) for k, v in values.items()}
        )
    if titles.get(body.get("pipe_id")) in keys and body.get("title"):
        body = dict(body, title=ERASED)
    return body


def idempotency_records_erase(*, card_ids: list[int], identifiers: list[str]) -> int:
    """Erase a person from the answers kept for Idempotency-Key repeats (IDEMPOTENCY_TTL): the answers
    about the cards their erasure touched -- a card (its personal-data values and a personal title
    become "[erased]"), a comment, a review decision -- and every list of attached files; in all of
    them, every occurrence of the erased values is replaced by the marker. A repeat of the request
    then replays the redacted answer. Runs inside the erasure's transaction; returns rows changed."""
    if not card_ids:
        return 0
    patterns = erasure_patterns(identifiers)
    about_cards = (
        Q(body__id__in=card_ids, body__reference__isnull=False)
        | Q(body__card_id__in=card_ids)
        | Q(body__task__card_id__in=card_ids)
        | Q(body__0__uploaded_at__isnull=False)  # files: a list naming no card, so scrubbed all
    )
    records = list(IdempotencyRecord.objects.filter(about_cards).only("pk", "body"))
    pipe_ids = {r.body.get("pipe_id") for r in records if isinstance(r.body, dict)} - {None}
    pii: dict[int, set[str]] = {}
    for pipe_id, key in Field.objects.filter(pipe_id__in=pipe_ids, pii=True).values_list("pipe_id", "key"):
        pii.setdefault(pipe_id, set()).add(key)
    titles = dict(Pipe.objects.filter(pk__in=pipe_ids).values_list("pk", "title_field"))
    changed = 0
    for record in records:
        body = record.body
        if isinstance(body, dict) and body.get("id") in card_ids and "values" in body:
            body = _blank_card(body, pii, titles)
        body = scrub_personal_data(body, patterns)
        if body != record.body:
            IdempotencyRecord.objects.filter(pk=record.pk).update(body=body)
            changed += 1
    return changed
