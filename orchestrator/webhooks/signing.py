"""HMAC-SHA256 signatures with a timestamp, the same both ways.

The signed text is `<timestamp>.<body>` (the Unix time in seconds, a dot, the raw body bytes); the
header `Trilho-Webhook-Signature` carries `v1=<hex digest>` (several, comma-separated, while a secret
is being changed). A timestamp older or newer than TOLERANCE_SECONDS is refused, so a captured request
cannot be replayed later.
"""

from __future__ import annotations

import hashlib
import hmac
import time

from django.utils.translation import gettext as _

SIGNATURE_HEADER = "Trilho-Webhook-Signature"
TIMESTAMP_HEADER = "Trilho-Webhook-Timestamp"
EVENT_ID_HEADER = "Trilho-Webhook-Id"
EVENT_HEADER = "Trilho-Webhook-Event"
TOLERANCE_SECONDS = 300


def signature(*, secret: str, timestamp: int | str, body: bytes) -> str:
    signed = str(timestamp).encode() + b"." + body
    return "v1=" + hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


def signed_headers(*, secret: str, body: bytes, now: float | None = None) -> dict[str, str]:
    timestamp = int(now if now is not None else time.time())
    return {
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: signature(secret=secret, timestamp=timestamp, body=body),
    }


def signature_problem(
    *, secret: str, timestamp: str | None, given: str | None, body: bytes, now: float | None = None
) -> str | None:
    """Why a signed request does not verify, or None when it does."""
    if not timestamp or not given:
        return _("Send the %(timestamp)s and %(signature)s headers.") % {
            "timestamp": TIMESTAMP_HEADER,
            "signature": SIGNATURE_HEADER,
        }
    try:
        moment = int(timestamp)
    except ValueError:
        return _("%(header)s is not a Unix time in seconds.") % {"header": TIMESTAMP_HEADER}
    current = time.time() if now is None else now
    if abs(current - moment) > TOLERANCE_SECONDS:
        return _("%(header)s is more than %(n)d seconds away from the server's clock.") % {
            "header": TIMESTAMP_HEADER,
            "n": TOLERANCE_SECONDS,
        }
    expected = signature(secret=secret, timestamp=moment, body=body)
    if not any(hmac.compare_digest(expected, part.strip()) for part in given.split(",")):
        return _("%(header)s does not match the body.") % {"header": SIGNATURE_HEADER}
    return None
