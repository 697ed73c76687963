"""Checking that a webhook came from the gate (contract §4): HMAC-SHA256 over ``<t>.<raw body>``."""

from __future__ import annotations

import hashlib
import hmac
import time


def verify_signature(
    secret: str, body: bytes, header: str, *, tolerance_seconds: float = 300, now: float | None = None
) -> bool:
    """True when ``header`` (``X-Gate-Signature: t=<unix seconds>,v1=<hex>``) signs ``body`` with
    ``secret`` (the agent's webhook secret) and is no older than ``tolerance_seconds``."""
    try:
        parts = dict(item.split("=", 1) for item in header.split(","))
        timestamp = int(parts["t"])
        given = parts["v1"]
    except (KeyError, ValueError):
        return False
    if abs((time.time() if now is None else now) - timestamp) > tolerance_seconds:
        return False
    expected = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, given)
