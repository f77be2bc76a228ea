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


def _meta_name(header: str) -> str:
    """The request.META key of a header named either way: "X-Real-IP" or "HTTP_X_REAL_IP"."""
    name = header.strip().upper().replace("-", "_")
    return name if name.startswith("HTTP_") else f"HTTP_{name}"


def client_address(request) -> str:
    """The client's address.

    Behind a reverse proxy REMOTE_ADDR is the proxy's own: settings.TRILHO_CLIENT_IP_HEADER names
    the header the proxy fills in ("X-Real-IP", "X-Forwarded-For"). Only entries our own proxies
    added are believed: with TRILHO_TRUSTED_PROXY_COUNT proxies appending to the header, the client
    is that many entries from the right; anything to its left the client could have written itself."""
    header = getattr(settings, "TRILHO_CLIENT_IP_HEADER", "")
    entries = [e.strip() for e in request.META.get(_meta_name(header), "").split(",")] if header else []
    entries = [e for e in entries if e]
    if entries:
        proxies = max(1, getattr(settings, "TRILHO_TRUSTED_PROXY_COUNT", 1))
        return entries[-min(proxies, len(entries))]
    return request.META.get("REMOTE_ADDR", "") or "unknown"


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
