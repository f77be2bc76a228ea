"""Outbound HTTP for automations, guarded against server-side request forgery.

A request may go only to a host the organization allowed (agents.models.AllowedHost). The
host name is resolved once, every address is checked (loopback, private, link-local,
multicast and reserved addresses are refused unless settings.TRILHO_HTTP_ALLOWED_PRIVATE),
and the connection is made to the checked address, so a second DNS answer cannot redirect
it. Redirects are not followed and response bodies are capped.
"""

from __future__ import annotations

import ipaddress
import json
import socket
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
from django.conf import settings

from .models import AllowedHost

MAX_RESPONSE_BYTES = 1024 * 1024
MAX_TIMEOUT_SECONDS = 60.0


class HttpRefused(Exception):
    """The request was not sent: the URL or host is not allowed."""


class HttpFailed(Exception):
    """The request was sent and failed; `transient` when retrying may succeed (timeouts, 5xx)."""

    def __init__(self, message: str, *, transient: bool, status: int | None = None):
        super().__init__(message)
        self.transient = transient
        self.status = status


@dataclass(frozen=True)
class HttpResponse:
    status: int
    text: str
    json: Any
    elapsed_ms: int


def host_allowed(*, organization_id: int, hostname: str) -> bool:
    return any(h.matches(hostname) for h in AllowedHost.objects.filter(organization_id=organization_id))


def _check_address(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> None:
    if getattr(settings, "TRILHO_HTTP_ALLOWED_PRIVATE", False):
        return
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    if (
        ip.is_loopback
        or ip.is_private
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
        or not ip.is_global
    ):
        raise HttpRefused(f"address {ip} is not a public address")


def resolve_checked(hostname: str, port: int) -> str:
    """One checked IP address of `hostname` (every address it resolves to must pass)."""
    try:
        literal = ipaddress.ip_address(hostname.strip("[]"))
    except ValueError:
        literal = None
    if literal is not None:
        _check_address(literal)
        return str(literal)
    try:
        infos = socket.getaddrinfo(hostname, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise HttpFailed(f"cannot resolve {hostname}: {exc}", transient=True) from None
    addresses = [ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos]
    if not addresses:
        raise HttpFailed(f"cannot resolve {hostname}", transient=True)
    for ip in addresses:
        _check_address(ip)
    return str(addresses[0])


def http_send(
    *,
    organization_id: int,
    method: str,
    url: str,
    headers: dict[str, str],
    body: Any = None,
    timeout: float = 10.0,
    content: bytes | None = None,
) -> HttpResponse:
    """Send one request to an allowed host; raises HttpRefused before sending, HttpFailed after.

    `body` is sent as JSON; `content`, instead, as these exact bytes (a signed body)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise HttpRefused("only http and https URLs with a host name are allowed")
    if parts.username or parts.password:
        raise HttpRefused("credentials in URLs are not allowed; use a secret in a header")
    hostname = parts.hostname
    if not host_allowed(organization_id=organization_id, hostname=hostname):
        raise HttpRefused(f"host {hostname} is not in the organization's allowed hosts")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    address = resolve_checked(hostname, port)
    shown = f"[{address}]" if ":" in address else address
    netloc = f"{shown}:{parts.port}" if parts.port else shown
    pinned = urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, ""))
    send_headers = {k: v for k, v in headers.items() if k.lower() != "host"}
    send_headers["Host"] = parts.netloc.rpartition("@")[2]
    if content is not None:
        pass
    elif body is not None:
        content = json.dumps(body, ensure_ascii=False, default=str).encode()
        send_headers.setdefault("Content-Type", "application/json")
    extensions = {"sni_hostname": hostname} if parts.scheme == "https" else {}
    seconds = min(float(timeout or 10), MAX_TIMEOUT_SECONDS)
    started = time.monotonic()
    try:
        with httpx.Client(timeout=seconds, follow_redirects=False, trust_env=False) as client:
            request = client.build_request(
                method.upper(), pinned, headers=send_headers, content=content, extensions=extensions
            )
            response = client.send(request, stream=True)
            try:
                data = b""
                for chunk in response.iter_bytes():
                    data += chunk
                    if len(data) > MAX_RESPONSE_BYTES:
                        raise HttpFailed(
                            "response larger than 1 MB", transient=False, status=response.status_code
                        )
            finally:
                response.close()
    except httpx.TimeoutException:
        raise HttpFailed(f"no answer within {seconds:g} s", transient=True) from None
    except httpx.TransportError as exc:
        raise HttpFailed(f"connection failed: {exc.__class__.__name__}", transient=True) from None
    elapsed = int((time.monotonic() - started) * 1000)
    text = data.decode(response.encoding or "utf-8", errors="replace")
    if response.status_code >= 500 or response.status_code in (408, 429):
        raise HttpFailed(f"HTTP {response.status_code}", transient=True, status=response.status_code)
    if response.status_code >= 300:
        raise HttpFailed(
            f"HTTP {response.status_code}: {text[:200]}", transient=False, status=response.status_code
        )
    try:
        parsed = json.loads(text) if text.strip() else None
    except ValueError:
        parsed = None
    return HttpResponse(status=response.status_code, text=text, json=parsed, elapsed_ms=elapsed)
