"""Agents: who may propose what, and their bearer tokens (issued, rotated, revoked, checked). Every
change is audited on the gate chain."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterable
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from approvals.errors import ServiceError
from approvals.lifecycle.audit import audit_record
from approvals.models import ActionType, Agent


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def agent_create(*, name: str, action_types: list[str] | None = None, actor: str = "system") -> tuple[Agent, str]:
    """Create an agent; returns it with its bearer token, which is never stored and shown only now."""
    token = "gat_" + secrets.token_urlsafe(32)
    with transaction.atomic():
        types = list(ActionType.objects.filter(name__in=action_types)) if action_types is not None else []
        missing = sorted(set(action_types or []) - {t.name for t in types})
        if missing:
            raise ServiceError(f"unknown action types: {', '.join(missing)}")
        agent = Agent.objects.create(
            name=name,
            token_hash=token_hash(token),
            token_prefix=token[:10],
            webhook_secret="whsec_" + secrets.token_urlsafe(32),
            all_action_types=action_types is None,
        )
        agent.action_types.set(types)
        audit_record(
            action=None, event="agent_created", actor=actor, data={"agent": name, "action_types": action_types}
        )
    return agent, token


def agent_rotate_token(*, agent: Agent, actor: str, grace_minutes: int | None = None) -> str:
    """Issue a new token for an agent, valid at once; returns it (shown only now, never stored).

    The token it replaces keeps working for ``grace_minutes`` (default
    ``GATE_TOKEN_ROTATION_GRACE_MINUTES``; 0: it stops at once), so that a running agent switches to
    the new one without downtime. At most two tokens work at any time: a token still in the grace
    of an earlier rotation stops now. A revoked agent gets only the new token.
    """
    if grace_minutes is None:
        grace_minutes = int(settings.GATE_TOKEN_ROTATION_GRACE_MINUTES)
    if grace_minutes < 0:
        raise ServiceError("grace_minutes must be 0 or more")
    token = "gat_" + secrets.token_urlsafe(32)
    now = timezone.now()
    with transaction.atomic():
        locked = Agent.objects.select_for_update().get(pk=agent.pk)
        keep_previous = grace_minutes > 0 and locked.token_hash is not None
        locked.previous_token_hash = locked.token_hash if keep_previous else None
        locked.previous_token_expires_at = now + timedelta(minutes=grace_minutes) if keep_previous else None
        locked.token_hash = token_hash(token)
        locked.token_prefix = token[:10]
        locked.token_rotated_at = now
        locked.token_revoked_at = None
        locked.save(update_fields=[*_AGENT_TOKEN_FIELDS])
        audit_record(
            action=None,
            event="agent_token_rotated",
            actor=actor,
            data={
                "agent": locked.name,
                "token_prefix": locked.token_prefix,
                "grace_minutes": grace_minutes,
                "previous_valid_until": (
                    locked.previous_token_expires_at.isoformat() if locked.previous_token_expires_at else None
                ),
            },
        )
    _copy_token_fields(locked, agent)
    return token


def agent_revoke_tokens(*, agent: Agent, actor: str) -> None:
    """Every token of the agent stops working at once, one in a rotation's grace included; a new
    one comes only from ``agent_rotate_token``."""
    with transaction.atomic():
        locked = Agent.objects.select_for_update().get(pk=agent.pk)
        locked.token_hash = None
        locked.token_prefix = ""
        locked.previous_token_hash = None
        locked.previous_token_expires_at = None
        locked.token_revoked_at = timezone.now()
        locked.save(update_fields=[*_AGENT_TOKEN_FIELDS])
        audit_record(action=None, event="agent_tokens_revoked", actor=actor, data={"agent": locked.name})
    _copy_token_fields(locked, agent)


_AGENT_TOKEN_FIELDS = (
    "token_hash",
    "token_prefix",
    "previous_token_hash",
    "previous_token_expires_at",
    "token_rotated_at",
    "token_revoked_at",
)


def _copy_token_fields(source: Agent, target: Agent) -> None:
    for name in _AGENT_TOKEN_FIELDS:
        setattr(target, name, getattr(source, name))


def agent_authenticate(token: str) -> Agent | None:
    """The agent whose current token, or previous one still in its grace period, is ``token``.

    Constant time where it matters: the database is searched by the token's SHA-256 digest, a
    non-secret index. A timing difference in that search could tell at most how much of a digest
    a guess shares with a stored one, which says nothing about any token (SHA-256 is preimage
    resistant), and the raw token never reaches the database. The row found is then confirmed with
    ``hmac.compare_digest``.
    """
    if not token or len(token) > 256:
        return None
    digest = token_hash(token)
    now = timezone.now()
    # Each column has its own unique index: the current token first, and only when that misses a
    # token still in the grace period of a rotation.
    agent = Agent.objects.filter(token_hash=digest).first() or (
        Agent.objects.filter(previous_token_hash=digest, previous_token_expires_at__gt=now).first()
    )
    if agent is None:
        return None
    current = hmac.compare_digest(agent.token_hash or "", digest)
    previous = hmac.compare_digest(agent.previous_token_hash or "", digest) and (
        agent.previous_token_expires_at is not None and agent.previous_token_expires_at > now
    )
    return agent if current or previous else None


def agent_may_propose(agent: Agent, action_type: ActionType) -> bool:
    return agent.all_action_types or agent.action_types.filter(pk=action_type.pk).exists()


# What the admin may change on an agent (its tokens change only through the functions above).
AGENT_SETTINGS = ("name", "enabled", "all_action_types", "rate_limit_per_minute")


def agent_update(
    *, agent: Agent, actor: str, changes: dict[str, Any], action_types: Iterable[ActionType] | None = None
) -> Agent:
    """Change an agent's settings (the admin's form), audited with what changed from what."""
    unknown = set(changes) - set(AGENT_SETTINGS)
    if unknown:
        raise ServiceError(f"not an agent setting: {', '.join(sorted(unknown))}")
    with transaction.atomic():
        locked = Agent.objects.select_for_update().get(pk=agent.pk)
        before: dict[str, Any] = {name: getattr(locked, name) for name in changes}
        after: dict[str, Any] = dict(changes)
        for name, value in changes.items():
            setattr(locked, name, value)
        locked.save(update_fields=list(changes))
        if action_types is not None:
            types = list(action_types)
            before["action_types"] = sorted(locked.action_types.values_list("name", flat=True))
            after["action_types"] = sorted(t.name for t in types)
            locked.action_types.set(types)
        changed = {
            name: {"before": before[name], "after": after[name]} for name in after if before[name] != after[name]
        }
        if changed:
            audit_record(
                action=None, event="agent_changed", actor=actor, data={"agent": locked.name, "changed": changed}
            )
    for name in changes:
        setattr(agent, name, getattr(locked, name))
    return agent
