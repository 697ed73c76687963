"""The audit log's hash chain: one chain per action plus the gate chain, each link hashing its predecessor.

`link_hash` is the single definition of an event's hash; the writer (`services.audit_record`), the
migration that backfilled existing rows and `manage.py verify_audit` all use it.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

GATE_CHAIN = "gate"  # events without an action (policy versions, agents, imports...)
GENESIS = "0" * 64  # prev_hash of the first link of every chain
FORMAT_VERSION = 1


def chain_of(action_id: UUID | str | None) -> str:
    return str(action_id) if action_id is not None else GATE_CHAIN


def normalised_data(data: dict[str, Any] | None) -> dict[str, Any]:
    """The data as the database will hand it back (JSON round trip: tuples -> lists, int keys -> strings)."""
    result: dict[str, Any] = json.loads(json.dumps(data or {}))
    return result


def _timestamp(value: datetime) -> str:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def canonical(
    *,
    chain: str,
    seq: int,
    action_id: UUID | str | None,
    event: str,
    actor: str,
    from_status: str,
    to_status: str,
    data: dict[str, Any],
    created_at: datetime,
) -> bytes:
    """A canonical serialisation of an event's content: sorted keys, no whitespace, UTF-8, UTC microseconds."""
    content = {
        "v": FORMAT_VERSION,
        "chain": chain,
        "seq": seq,
        "action": str(action_id) if action_id is not None else None,
        "event": event,
        "actor": actor,
        "from_status": from_status,
        "to_status": to_status,
        "data": data,
        "created_at": _timestamp(created_at),
    }
    return json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def link_hash(prev_hash: str, content: bytes) -> str:
    """SHA-256 over the previous link's hash and this event's canonical content."""
    digest = hashlib.sha256(prev_hash.encode("ascii"))
    digest.update(b"\n")
    digest.update(content)
    return digest.hexdigest()


def event_hash(event: Any, prev_hash: str) -> str:
    """The hash an AuditEvent row (model instance, historical or current) should carry."""
    return link_hash(
        prev_hash,
        canonical(
            chain=event.chain,
            seq=event.seq,
            action_id=event.action_id,
            event=event.event,
            actor=event.actor,
            from_status=event.from_status,
            to_status=event.to_status,
            data=event.data,
            created_at=event.created_at,
        ),
    )


def advisory_key(chain: str) -> int:
    """A signed 64-bit key for pg_advisory_xact_lock, stable across processes (unlike hash())."""
    return int.from_bytes(hashlib.sha256(b"audit-chain:" + chain.encode()).digest()[:8], "big", signed=True)
