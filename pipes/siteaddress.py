"""The address people reach Trilho at, for the links Trilho writes (tracking links, emails).

SITE_URL when it is set. Otherwise the address the request being served came to (a dev server on
another port, a machine's LAN address), and for work done outside a request (a worker's email) the
last address a request came to, kept in the cache; only with none of these the default address.
`make run` sets SITE_URL from its ADDR, so its worker writes the same address as the pages.
"""

from __future__ import annotations

from contextvars import ContextVar

from django.conf import settings
from django.core.cache import cache
from django.core.exceptions import DisallowedHost

DEFAULT_SITE_URL = "http://127.0.0.1:8000"
CACHE_KEY = "trilho:site-url"

_request_address: ContextVar[str] = ContextVar("trilho_request_address", default="")
_remembered = ""  # what this process last put in the cache (a cache write only when it changes)


def site_url() -> str:
    """The site's base address, without a trailing slash."""
    configured = (getattr(settings, "SITE_URL", "") or "").rstrip("/")
    if configured:
        return configured
    return _request_address.get() or cache.get(CACHE_KEY) or DEFAULT_SITE_URL


def absolute(path: str) -> str:
    return site_url() + path


class SiteAddressMiddleware:
    """Without SITE_URL, remember the address each request came to (its host is checked against
    ALLOWED_HOSTS first, so a forged Host header never reaches a link)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        global _remembered
        if getattr(settings, "SITE_URL", ""):
            return self.get_response(request)
        try:
            address = f"{request.scheme}://{request.get_host()}"
        except DisallowedHost:
            return self.get_response(request)  # CommonMiddleware answers it with a 400
        token = _request_address.set(address)
        try:
            if address != _remembered:
                cache.set(CACHE_KEY, address, None)
                _remembered = address
            return self.get_response(request)
        finally:
            _request_address.reset(token)
