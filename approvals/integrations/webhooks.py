"""Signed webhook deliveries (contract §4), with the SSRF guard checked on the resolved address.

A delivery connects to the very address it checked (the URL's host is resolved once, every
address is checked, and the request goes to the first of them with the original Host header and
TLS server name), so that a DNS answer that changes between check and connect cannot redirect it.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from dataclasses import dataclass

import httpx
from django.conf import settings

from approvals.integrations import addresses
from approvals.integrations.addresses import address_is_public

__all__ = ["WebhookRefused", "address_is_public", "literal_target_refusal", "post", "resolve_target", "sign", "verify"]

SIGNATURE_HEADER = "X-Gate-Signature"
EVENT_HEADER = "X-Gate-Event"
TIMEOUT_SECONDS = 5.0
MAX_ANSWER_BYTES = 64 * 1024  # of an answer kept (Slack API answers are small)


class WebhookRefused(Exception):
    """The target may not be called (a private address, a bad URL); retrying will not help."""


@dataclass(frozen=True)
class Response:
    status_code: int
    content: bytes = b""
    retry_after: str = ""  # the Retry-After header of a 429 or 503, as sent


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


def literal_target_refusal(url: str) -> str | None:
    """Why a callback URL is refused on its face (an IP literal or ``localhost`` that may not be
    called), without resolving anything; None when only delivery can tell."""
    return addresses.literal_refusal(
        url, allow_private=settings.GATE_WEBHOOK_ALLOW_PRIVATE, allowed_hosts=_allowed_hosts(), what="webhooks"
    )


def resolve_target(url: str) -> tuple[str, list[str], int]:
    """(host, the addresses to connect to, port) for a callback URL, or WebhookRefused (the
    address guard: approvals.integrations.addresses, with the GATE_WEBHOOK_* settings)."""
    try:
        return addresses.resolve(
            url, allow_private=settings.GATE_WEBHOOK_ALLOW_PRIVATE, allowed_hosts=_allowed_hosts(), what="webhooks"
        )
    except addresses.AddressRefused as exc:
        raise WebhookRefused(str(exc)) from exc


def post(url: str, body: bytes, headers: dict[str, str]) -> Response:
    """POST ``body`` to ``url`` through the address checked by resolve_target; no redirects. JSON
    unless ``headers`` name another Content-Type (Slack's API and incoming webhooks use it too:
    approvals.notifications.slack)."""
    host, resolved, port = resolve_target(url)
    last_error: Exception | None = None
    with httpx.Client(timeout=TIMEOUT_SECONDS, follow_redirects=False, trust_env=False) as client:
        for address in dict.fromkeys(resolved):  # each checked address once, in resolver order
            pinned, host_headers, extensions = addresses.pinned(url, host, address, port)
            try:
                response = client.post(
                    pinned,
                    content=body,
                    headers={"Content-Type": "application/json", **headers, **host_headers},
                    extensions=extensions,
                )
            except httpx.ConnectError as exc:
                last_error = exc
                continue
            return Response(
                status_code=response.status_code,
                content=response.content[:MAX_ANSWER_BYTES],
                retry_after=response.headers.get("Retry-After", ""),
            )
    assert last_error is not None
    raise last_error
