"""The one writer of audit events, and the names it records actors by."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone

from approvals.lifecycle import audit_chain, statements
from approvals.models import Agent, AuditEvent, ProposedAction


def audit_record(
    *,
    action: ProposedAction | None,
    event: str,
    actor: str,
    from_status: str = "",
    to_status: str = "",
    data: dict[str, Any] | None = None,
    new_chain: bool = False,
    row_locked: bool = False,
) -> AuditEvent:
    """Append an event to its hash chain (``audit_link``, then its INSERT); call it inside the
    transaction that makes the change."""
    with transaction.atomic(savepoint=False):
        record = audit_link(
            action=action,
            event=event,
            actor=actor,
            from_status=from_status,
            to_status=to_status,
            data=data,
            new_chain=new_chain,
            row_locked=row_locked,
        )
        statements.insert(record)
    return record


def audit_link(
    *,
    action: ProposedAction | None,
    event: str,
    actor: str,
    from_status: str = "",
    to_status: str = "",
    data: dict[str, Any] | None = None,
    new_chain: bool = False,
    row_locked: bool = False,
) -> AuditEvent:
    """The next link of the event's hash chain, hashed and ready to INSERT in the same transaction
    (a transition inserts it with its other rows in one statement).

    The chain is the action's, or the gate chain. Its writers are serialised until the caller's
    transaction ends, by the action's row lock (``row_locked``: the caller holds it already, as a
    transition does) or, for the gate chain, an advisory lock; chains of different actions never
    wait on each other.

    ``new_chain``: the caller created ``action`` in this very transaction, so its chain is empty and
    nobody else can write to it yet: the first link needs neither the lock nor a look at the chain
    (the unique (chain, seq) constraint still guards it).
    """
    chain = audit_chain.chain_of(action.pk if action is not None else None)
    last = None
    if not new_chain:
        last = statements.lock_chain_and_read_last_link(
            chain, action_id=action.pk if action is not None else None, row_locked=row_locked
        )
    seq, prev_hash = (last[0] + 1, last[1]) if last else (1, audit_chain.GENESIS)
    record = AuditEvent(
        action=action,
        event=event,
        actor=actor,
        from_status=from_status,
        to_status=to_status,
        data=audit_chain.normalised_data(data),
        created_at=timezone.now(),
        chain=chain,
        seq=seq,
        prev_hash=prev_hash,
    )
    record.hash = audit_chain.event_hash(record, prev_hash)
    return record


def actor_of_user(user: User) -> str:
    return f"user:{user.get_username()}"


def actor_of_agent(agent: Agent) -> str:
    return f"agent:{agent.name}"
