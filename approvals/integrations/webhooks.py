"""Signed webhook deliveries (contract §4), with the SSRF guard checked on the resolved address.

A delivery connects to the very address it checked (the URL's host is resolved once, every
address is checked, and the request goes to the first of them with the original Host header and
TLS server name), so that a DNS answer that changes between check and connect cannot redirect it.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import socket
import time
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import httpx
from django.conf import settings

SIGNATURE_HEADER = "X-Gate-Signature"
EVENT_HEADER = "X-Gate-Event"
TIMEOUT_SECONDS = 5.0


class WebhookRefused(Exception):
    """The target may not be called (a private address, a bad URL); retrying will not help."""


@dataclass(frozen=True)
class Response:
    status_code: int


def sign(secret: str, body: bytes, timestamp: int | None = None) -> str:
    """The X-Gate-Signature value: ``t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">``."""
    t = int(time.time()) if timestamp is None else timestamp
    digest = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={digest}"


def verify(secret: str, body: bytes, header: str, *, tolerance_seconds: int = 300, now: float | None = None) -> bool:
    """Check a signature header as a receiver would (the client package carries the same code)."""
    try:
        parts = dict(item.split("=", 1) for item in header.split(","))
        t = int(parts["t"])
        given = parts["v1"]
    except (ValueError, KeyError):
        return False
    if abs((time.time() if now is None else now) - t) > tolerance_seconds:
        return False
    expected = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, given)


def _allowed_hosts() -> set[str]:
    return {h.strip().lower() for h in getattr(settings, "GATE_WEBHOOK_ALLOWED_HOSTS", []) if h.strip()}


def address_is_public(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not (ip.is_multicast or ip.is_reserved or ip.is_link_local or ip.is_loopback)


def literal_target_refusal(url: str) -> str | None:
    """Why a callback URL is refused on its face (an IP literal or ``localhost`` that may not be
    called), without resolving anything; None when only delivery can tell."""
    host = (urlsplit(url).hostname or "").lower()
    if settings.GATE_WEBHOOK_ALLOW_PRIVATE or host in _allowed_hosts():
        return None
    try:
        private = not address_is_public(host)
    except ValueError:  # a name, not an address
        private = host == "localhost" or host.endswith(".localhost")
    if private:
        return (
            f"{host} is a private, loopback or reserved address; webhooks to it are refused unless "
            "GATE_WEBHOOK_ALLOW_PRIVATE=1 or the host is in GATE_WEBHOOK_ALLOWED_HOSTS"
        )
    return None


def resolve_target(url: str) -> tuple[str, list[str], int]:
    """(host, the addresses to connect to, port) for a callback URL, or WebhookRefused.

    Every address the host resolves to must be public, unless GATE_WEBHOOK_ALLOW_PRIVATE is set
    or the host is in GATE_WEBHOOK_ALLOWED_HOSTS. Nothing is sent to any address here.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise WebhookRefused(f"not an http(s) URL: {url!r}")
    host = parts.hostname
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise WebhookRefused(f"bad port in {url!r}") from exc
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise WebhookRefused(f"cannot resolve {host!r}: {exc}") from exc
    addresses = [str(info[4][0]) for info in infos]
    if not addresses:
        raise WebhookRefused(f"{host!r} resolves to no address")
    if not (settings.GATE_WEBHOOK_ALLOW_PRIVATE or host.lower() in _allowed_hosts()):
        private = [a for a in addresses if not address_is_public(a)]
        if private:
            raise WebhookRefused(
                f"{host!r} resolves to a private, loopback or reserved address ({', '.join(sorted(set(private)))}); "
                "set GATE_WEBHOOK_ALLOW_PRIVATE=1 or list the host in GATE_WEBHOOK_ALLOWED_HOSTS to allow it"
            )
    return host, addresses, port


def post(url: str, body: bytes, headers: dict[str, str]) -> Response:
    """POST ``body`` to ``url`` through the address checked by resolve_target; no redirects."""
    host, addresses, port = resolve_target(url)
    parts = urlsplit(url)
    default_port = 443 if parts.scheme == "https" else 80
    host_header = host if port == default_port else f"{host}:{port}"
    last_error: Exception | None = None
    with httpx.Client(timeout=TIMEOUT_SECONDS, follow_redirects=False, trust_env=False) as client:
        for address in dict.fromkeys(addresses):  # each checked address once, in resolver order
            netloc_address = f"[{address}]" if ":" in address else address
            pinned = urlunsplit((parts.scheme, f"{netloc_address}:{port}", parts.path or "/", parts.query, ""))
            try:
                response = client.post(
                    pinned,
                    content=body,
                    headers={**headers, "Host": host_header, "Content-Type": "application/json"},
                    extensions={"sni_hostname": host} if parts.scheme == "https" else {},
                )
            except httpx.ConnectError as exc:
                last_error = exc
                continue
            return Response(status_code=response.status_code)
    assert last_error is not None
    raise last_error
