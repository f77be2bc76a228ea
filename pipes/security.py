"""Security headers and sign-in throttling.

The Content Security Policy allows only the app's own scripts: no inline scripts or
event handlers anywhere (pages opt into behaviour through data- attributes and static JS),
and HTMX is configured not to eval or inject styles (see templates/base.html).
"""

from __future__ import annotations

import hashlib

from django.conf import settings
from django.core.cache import cache

DEFAULT_CSP = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "style-src-attr 'unsafe-inline'",  # label colours and progress widths set per element
        "img-src 'self' data:",
        "font-src 'self'",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)


class ContentSecurityPolicyMiddleware:
    """Sends the policy on every response that does not set its own."""

    def __init__(self, get_response):
        self.get_response = get_response
        self.policy = getattr(settings, "TRILHO_CSP", DEFAULT_CSP)

    def __call__(self, request):
        response = self.get_response(request)
        if self.policy:
            response.headers.setdefault("Content-Security-Policy", self.policy)
        response.headers.setdefault("Permissions-Policy", "camera=(), microphone=(), geolocation=()")
        return response


def client_address(request) -> str:
    """The client's address.

    Behind a reverse proxy REMOTE_ADDR is the proxy's own: name the header the proxy sets (and
    overwrites) in settings.TRILHO_CLIENT_IP_HEADER, e.g. "HTTP_X_REAL_IP". A header the client
    could set itself is never trusted unless configured."""
    header = getattr(settings, "TRILHO_CLIENT_IP_HEADER", "")
    address = request.META.get(header, "").split(",")[0].strip() if header else ""
    return address or request.META.get("REMOTE_ADDR", "") or "unknown"


class Throttle:
    """At most `limit` hits per `window` seconds per key, counted in Django's cache."""

    def __init__(self, scope: str, *, limit: int, window: int):
        self.scope, self.limit, self.window = scope, limit, window

    def _key(self, key: str) -> str:
        return f"throttle:{self.scope}:{hashlib.sha256(key.encode()).hexdigest()[:32]}"

    def blocked(self, key: str) -> bool:
        return (cache.get(self._key(key)) or 0) >= self.limit

    def hit(self, key: str) -> int:
        cache_key = self._key(key)
        if cache.add(cache_key, 1, self.window):
            return 1
        try:
            return cache.incr(cache_key)
        except ValueError:  # expired between add and incr
            cache.set(cache_key, 1, self.window)
            return 1

    def reset(self, key: str) -> None:
        cache.delete(self._key(key))
