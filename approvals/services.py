"""Every state change of the gate. One transaction each, guarded against races, one audit event
per change, and side effects (tasks, pushes) queued on commit.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import math
import secrets
import time
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.db import DatabaseError, IntegrityError, connection, transaction
from django.db.models import F, QuerySet
from django.utils import timezone

from approvals import audit_chain, events, metrics, policy, selectors, statements
from approvals import logging as gate_logging
from approvals.models import (
    ActionType,
    Agent,
    AuditEvent,
    Decision,
    Label,
    LabelValue,
    PolicyVersion,
    ProposedAction,
    RememberedApproval,
    Rule,
    Status,
    Verdict,
    WebhookDelivery,
)

logger = logging.getLogger(__name__)


class ServiceError(Exception):
    """A request the gate refuses; ``code`` tells the API which status to answer."""

    code = "invalid"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ActionConflict(ServiceError):
    code = "conflict"


class IdempotencyConflict(ServiceError):
    code = "conflict"


class NotPermitted(ServiceError):
    """The caller may not do this (a disabled agent or type, a type the agent may not propose)."""

    code = "forbidden"


# --- audit --------------------------------------------------------------------------------------


def audit_record(
    *,
    action: ProposedAction | None,
    event: str,
    actor: str,
    from_status: str = "",
    to_status: str = "",
    data: dict[str, Any] | None = None,
    new_chain: bool = False,
) -> AuditEvent:
    """The one writer of audit events; call it inside the transaction that makes the change.

    Appends a link to the event's hash chain (the action's, or the gate chain): the chain's writers are
    serialised by a transaction-scoped advisory lock (PostgreSQL; SQLite transactions are serial), held
    until the caller's transaction ends, so chains of different actions never wait on each other.

    ``new_chain``: the caller created ``action`` in this very transaction, so its chain is empty and
    nobody else can write to it yet: the first link needs neither the lock nor a look at the chain
    (the unique (chain, seq) constraint still guards it).
    """
    chain = audit_chain.chain_of(action.pk if action is not None else None)
    with transaction.atomic(savepoint=False):
        last = None if new_chain else statements.lock_chain_and_read_last_link(chain)
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
        statements.insert(record)
    return record


def actor_of_user(user: User) -> str:
    return f"user:{user.get_username()}"


def actor_of_agent(agent: Agent) -> str:
    return f"agent:{agent.name}"


def _push_on_commit(action: ProposedAction, event: str, **extra: Any) -> None:
    action_id, status = str(action.id), action.status
    transaction.on_commit(
        lambda: events.action_changed(action_id=action_id, status=status, event=event, extra=extra or None)
    )


def _webhook_on_commit(action: ProposedAction, event: str) -> None:
    """Record a signed delivery of the action as it stands now, sent once the change commits."""
    if not action.callback_url:
        return
    from approvals.api.serializers import action_representation

    body = json.dumps(action_representation(action), separators=(",", ":"), sort_keys=True)
    delivery = WebhookDelivery.objects.create(action=action, event=event, url=action.callback_url, body=body)
    _enqueue_webhook_on_commit(delivery.pk)


def _enqueue_webhook_on_commit(delivery_id: int) -> None:
    from approvals.tasks import deliver_webhook

    def enqueue() -> None:
        try:
            deliver_webhook.delay(delivery_id)
        except Exception:
            logger.warning("could not queue webhook delivery %s", delivery_id, exc_info=True)

    transaction.on_commit(enqueue)


# --- agents -------------------------------------------------------------------------------------


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


# --- proposing ----------------------------------------------------------------------------------


def params_hash(params: Any) -> str:
    """Identical params, identical hash: repeated proposals are counted by it."""
    return hashlib.sha256(json.dumps(params, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def request_fingerprint(body: dict[str, Any]) -> str:
    """The body as parsed JSON, idempotency key left out, in a canonical form."""
    canonical = {k: v for k, v in body.items() if k != "idempotency_key"}
    return hashlib.sha256(json.dumps(canonical, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def action_propose(
    *,
    agent: Agent,
    action_type: ActionType,
    params: Any,
    fingerprint: str,
    trajectory_raw: Any = None,
    trajectory: list[dict[str, Any]] | None = None,
    context: dict[str, Any] | None = None,
    confidence: float | None = None,
    rationale: str = "",
    idempotency_key: str | None = None,
    callback_url: str = "",
) -> tuple[ProposedAction, bool]:
    """Store a proposal as ``pending`` and queue its evaluation; returns (action, created).

    A replay of the same key and body returns the stored action; the same key with another body
    raises IdempotencyConflict. The unique constraint decides between concurrent identical calls.
    """
    if trajectory is None:
        trajectory = policy.normalize_trajectory(trajectory_raw)
    try:
        with transaction.atomic():
            action = ProposedAction(
                agent=agent,
                action_type=action_type,
                params=params,
                params_hash=params_hash(params),
                trajectory_raw=trajectory_raw,
                trajectory=trajectory,
                context=context or {},
                confidence=confidence,
                rationale=rationale,
                idempotency_key=idempotency_key,
                request_fingerprint=fingerprint,
                callback_url=callback_url,
            )
            statements.insert(action)
            audit_record(
                action=action, event="proposed", actor=actor_of_agent(agent), to_status=Status.PENDING, new_chain=True
            )
            _enqueue_evaluation_on_commit(str(action.id))
            gate_logging.bind_action(action)
    except IntegrityError:
        if idempotency_key is None:
            raise
        existing = ProposedAction.objects.select_related("action_type", "agent").get(
            agent=agent, idempotency_key=idempotency_key
        )
        if existing.request_fingerprint != fingerprint:
            raise IdempotencyConflict("this idempotency key was already used with a different request body") from None
        gate_logging.bind_action(existing)
        return existing, False
    return action, True


def action_propose_validated(
    *, agent: Agent, values: dict[str, Any], body: dict[str, Any]
) -> tuple[ProposedAction, bool]:
    """Propose from a validated proposal (the API's ProposeSerializer), checking that the agent may.

    ``body`` is the proposal as sent, for the idempotency fingerprint. Raises NotPermitted.
    """
    action_type = values["action_type"]
    if not agent.enabled:
        raise NotPermitted(f"Agent {agent.name} is disabled.")
    if not action_type.enabled:
        raise NotPermitted(f"Action type {action_type.name} is disabled.")
    if not agent_may_propose(agent, action_type):
        raise NotPermitted(f"Agent {agent.name} may not propose {action_type.name} actions.")
    trajectory = values.get("trajectory") or {"raw": None, "steps": []}
    return action_propose(
        agent=agent,
        action_type=action_type,
        params=values["params"],
        fingerprint=request_fingerprint(body),
        trajectory_raw=trajectory["raw"],
        trajectory=trajectory["steps"],
        context=values.get("context"),
        confidence=values.get("confidence"),
        rationale=values.get("rationale", ""),
        idempotency_key=values.get("idempotency_key"),
        callback_url=values.get("callback_url", ""),
    )


def _enqueue_evaluation_on_commit(action_id: str) -> None:
    from approvals.tasks import evaluate_action

    def enqueue() -> None:
        try:
            evaluate_action.delay(action_id)
        except Exception:
            # The action is stored; the sweeper queues it again once the broker is back.
            logger.warning("could not queue evaluation of action %s", action_id, exc_info=True)

    transaction.on_commit(enqueue)


def action_requeue_stale(*, older_than: timedelta) -> dict[str, int]:
    """Queue again every action pending for longer than ``older_than`` (or hold it, when its
    evaluation has failed too often): no action stays pending."""
    cutoff = timezone.now() - older_than
    requeued = held = 0
    stale = ProposedAction.objects.filter(status=Status.PENDING, created_at__lt=cutoff).values_list(
        "id", "evaluation_attempts"
    )
    for action_id, attempts in stale[:1000]:
        if attempts >= settings.GATE_MAX_EVALUATION_ATTEMPTS:
            if action_hold_for_review(action_id=str(action_id), error=f"evaluation failed {attempts} times"):
                held += 1
        else:
            _enqueue_evaluation_on_commit(str(action_id))
            requeued += 1
    return {"requeued": requeued, "held": held}


# --- evaluating ---------------------------------------------------------------------------------


def _policy_reason(decision: policy.Decision) -> str:
    failed = [f for f in decision.findings if f["outcome"] != "pass"]
    if decision.remembered_approval is not None:
        return f"remembered approval {decision.remembered_approval} of a reviewer covers every check it failed"
    if decision.status == policy.AUTO_APPROVED:
        return "all checks passed"
    return "; ".join(f"{f['rule']}: {f.get('message') or f.get('error', '')}" for f in failed) or decision.status


def _apply_decision(action: ProposedAction, decision: policy.Decision, *, actor: str = "policy") -> bool:
    """Move a pending action to the decision's status; False when it is no longer pending."""
    now = timezone.now()
    spec_sla = action.action_type.review_sla_minutes
    spec_expiry = action.action_type.expire_after_minutes
    final = decision.status in (policy.AUTO_APPROVED, policy.BLOCKED)
    fields: dict[str, Any] = {
        "status": decision.status,
        "risk_score": decision.risk_score,
        "findings": decision.findings,
        "policy_version": decision.policy_version,
        "audit_flagged": decision.audit_flagged,
        "reached_thresholds": decision.reached_thresholds,
        "remembered_approval_id": decision.remembered_approval,
        "amount": _finite_amount(action),
        "evaluated_at": now,
        "decided_at": now if final else None,
    }
    if decision.status == policy.NEEDS_REVIEW:
        fields["sla_deadline"] = now + timedelta(minutes=spec_sla) if spec_sla else None
        fields["expires_at"] = now + timedelta(minutes=spec_expiry) if spec_expiry else None
    with transaction.atomic():
        if not statements.update(ProposedAction, fields, {"id": action.pk, "status": Status.PENDING}):
            return False
        for name, value in fields.items():
            setattr(action, name, value)
        if final:
            verdict = Verdict.APPROVE if decision.status == policy.AUTO_APPROVED else Verdict.REJECT
            statements.insert(Decision(action=action, verdict=verdict, by_policy=True, reason=_policy_reason(decision)))
        audit_record(
            action=action,
            event="evaluated",
            actor=actor,
            from_status=Status.PENDING,
            to_status=decision.status,
            data={
                "risk_score": decision.risk_score,
                "policy_version": decision.policy_version,
                "audit_flagged": decision.audit_flagged,
                **(
                    {"remembered_approval": decision.remembered_approval}
                    if decision.remembered_approval is not None
                    else {}
                ),
            },
        )
        _push_on_commit(action, "evaluated")
        _webhook_on_commit(action, "action.evaluated")
    return True


def _finite_amount(action: ProposedAction) -> float | None:
    path = action.action_type.amount_path
    value = policy.amount_at(action.params, path) if path else None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def _load_for_evaluation(action_id: str) -> tuple[ProposedAction, dict[str, str] | None] | None:
    """The pending action ``action_id`` with its agent and type, its evaluation attempt counted (and
    committed: a worker killed mid-way counts too), and the refused identical proposal the built-in
    check needs; None when it is not pending.

    On PostgreSQL one statement (the evaluation's hot path: it replaced three); the embedded SQLite
    mode reads and counts with the ORM.
    """
    if connection.vendor != "postgresql":
        action = (
            ProposedAction.objects.select_related("agent", "action_type")
            .filter(pk=action_id, status=Status.PENDING)
            .first()
        )
        if action is None:
            return None
        ProposedAction.objects.filter(pk=action.pk).update(evaluation_attempts=F("evaluation_attempts") + 1)
        action.evaluation_attempts += 1
        refused = selectors.refused_identical_proposal(action) if action.action_type.builtin_checks else None
        return action, refused
    loaded = statements.count_attempt_and_load(action_id, repeat_window=selectors.REPEAT_WINDOW)
    if loaded is None:
        return None
    action, agent_name, type_version, refused_repeat = loaded
    action.agent = Agent.from_db(connection.alias, ["id", "name"], [action.agent_id, agent_name])
    action.action_type = selectors.action_type_at_version(action.action_type_id, type_version)
    refused = None
    if refused_repeat and action.action_type.builtin_checks:
        refused_id, refused_status = refused_repeat.split(" ", 1)
        refused = {"id": refused_id, "status": refused_status}
    return action, refused


def action_evaluate(*, action_id: str) -> ProposedAction | None:
    """Evaluate a pending action under its type's current policy. Running it twice decides once.

    Database errors propagate, so that the task is retried; any other fault holds the action.
    """
    started = time.perf_counter()
    loaded = _load_for_evaluation(action_id)
    if loaded is None:  # decided already (a repeated delivery), cancelled, or unknown
        return ProposedAction.objects.select_related("agent", "action_type").filter(pk=action_id).first()
    action, refused = loaded
    gate_logging.bind_action(action)
    attempts = action.evaluation_attempts
    if attempts > settings.GATE_MAX_EVALUATION_ATTEMPTS:
        action_hold_for_review(action_id=action_id, error=f"evaluation did not finish in {attempts - 1} attempts")
        action.refresh_from_db()
        return action
    try:
        compiled = selectors.compiled_policy_for(action.action_type)
        decision = policy.policy_evaluate(
            compiled,
            policy.Proposal(
                sample_key=str(action.id),
                action_type=action.action_type.name,
                params=action.params,
                confidence=action.confidence,
                context=action.context,
                agent={"name": action.agent.name},
                trajectory=action.trajectory,
                now=timezone.now(),
                refused_repeat_of=refused,
                remembered=selectors.remembered_approvals_for(action),
            ),
            budget_seconds=settings.GATE_EVALUATION_BUDGET_MS / 1000,
        )
    except DatabaseError:
        raise
    except Exception as exc:
        logger.exception("evaluation of action %s failed", action_id)
        decision = policy.evaluation_error_decision(exc, policy_version=action.action_type.policy_version)
    if _apply_decision(action, decision):
        duration = time.perf_counter() - started
        logger.info(
            "evaluated: %s",
            decision.status,
            extra={
                "status": decision.status,
                "risk_score": decision.risk_score,
                "duration_ms": round(duration * 1000, 2),
            },
        )
        metrics.record_evaluation(action=action, duration=duration)
    return action


def action_hold_for_review(*, action_id: str, error: str) -> bool:
    """Hold a pending action for a person after its evaluation kept failing."""
    action = ProposedAction.objects.select_related("action_type").filter(pk=action_id).first()
    if action is None or action.status != Status.PENDING:
        return False
    decision = policy.evaluation_error_decision(error, policy_version=action.action_type.policy_version)
    return _apply_decision(action, decision, actor="system")


# --- reviewers ----------------------------------------------------------------------------------


REMEMBER_MAX_MINUTES = 24 * 60


def _locking_actions() -> QuerySet[ProposedAction]:
    """Actions row-locked until the transaction ends, with what their representation needs.

    Only the action's own row is locked: locking the joined agent and type rows too would queue (and
    could deadlock) every concurrent proposal of that agent, whose insert key-share-locks them.
    """
    return ProposedAction.objects.select_for_update(of=("self",)).select_related("action_type", "agent")


def action_decide(
    *, action_id: str, user: User, verdict: str, reason: str = "", remember_minutes: int | None = None
) -> ProposedAction:
    """A reviewer's verdict on a held action. Of two concurrent decisions exactly one wins.

    ``remember_minutes`` (approve only): also approve, for that long, later proposals of the same
    agent, type and ``context.session_id`` that fail only checks this one failed.
    """
    if verdict not in Verdict.values:
        raise ServiceError("verdict must be 'approve' or 'reject'")
    if remember_minutes is not None:
        if verdict != Verdict.APPROVE:
            raise ServiceError("only an approval can be remembered for similar actions")
        if isinstance(remember_minutes, bool) or not 1 <= remember_minutes <= REMEMBER_MAX_MINUTES:
            raise ServiceError(f"remember_minutes must be between 1 and {REMEMBER_MAX_MINUTES}")
    with transaction.atomic():
        action = _locking_actions().get(pk=action_id)
        gate_logging.bind_action(action)
        if action.status != Status.NEEDS_REVIEW:
            raise ActionConflict(f"action is {action.status}, not needs_review: it cannot be decided")
        previous = action.status
        session_id = action.context.get("session_id") if isinstance(action.context, dict) else None
        if remember_minutes is not None and not (isinstance(session_id, str) and session_id):
            raise ServiceError("this action has no context.session_id: there is no session to remember it for")
        action.status = Status.APPROVED if verdict == Verdict.APPROVE else Status.REJECTED
        action.decided_at = timezone.now()
        action.claimed_by, action.claimed_until = None, None
        fields = ["status", "decided_at", "claimed_by", "claimed_until"]
        if not action.labels.exists():  # an explicit label outranks the verdict
            action.ground_truth = LabelValue.SAFE if verdict == Verdict.APPROVE else LabelValue.UNSAFE
            fields.append("ground_truth")
        action.save(update_fields=fields)
        Decision.objects.create(action=action, verdict=verdict, reviewer=user, reason=reason)
        data: dict[str, Any] = {"verdict": verdict, "reason": reason}
        if remember_minutes is not None:
            remembered = RememberedApproval.objects.create(
                source_action=action,
                agent=action.agent,
                action_type=action.action_type,
                session_id=str(session_id),
                failed=policy.failed_checks(action.findings),
                reviewer=user,
                expires_at=action.decided_at + timedelta(minutes=remember_minutes),
            )
            data["remembered_approval"] = remembered.pk
            data["remembered_until"] = remembered.expires_at.isoformat()
        audit_record(
            action=action,
            event="decided",
            actor=actor_of_user(user),
            from_status=previous,
            to_status=action.status,
            data=data,
        )
        _push_on_commit(action, "decided")
        _webhook_on_commit(action, "action.decided")
        transaction.on_commit(lambda: metrics.record_review(action=action, verdict=verdict))
    logger.info("decided: %s by %s", action.status, user.get_username(), extra={"status": action.status})
    return action


def _locked_action(action_id: str) -> ProposedAction | None:
    """The action, row-locked until the transaction ends, with what its representation needs."""
    return _locking_actions().filter(pk=action_id).first()


def action_escalate(*, action_id: str, now: datetime | None = None) -> bool:
    """A held action past its review SLA: flagged and put first in the queue, once."""
    now = now or timezone.now()
    with transaction.atomic():
        action = _locked_action(action_id)
        if (
            action is None
            or action.status != Status.NEEDS_REVIEW
            or action.escalated
            or action.sla_deadline is None
            or action.sla_deadline > now
        ):
            return False
        gate_logging.bind_action(action)
        action.escalated = True
        action.save(update_fields=["escalated"])
        logger.info("escalated: past its review SLA")
        audit_record(
            action=action,
            event="escalated",
            actor="system",
            from_status=action.status,
            to_status=action.status,
            data={"sla_deadline": action.sla_deadline.isoformat()},
        )
        _push_on_commit(action, "escalated")
        _webhook_on_commit(action, "action.escalated")
    return True


def action_expire(*, action_id: str, now: datetime | None = None) -> bool:
    """A held action nobody decided in time becomes ``expired`` (never a rejection), once."""
    now = now or timezone.now()
    with transaction.atomic():
        action = _locked_action(action_id)
        if (
            action is None
            or action.status != Status.NEEDS_REVIEW
            or action.expires_at is None
            or action.expires_at > now
        ):
            return False
        gate_logging.bind_action(action)
        action.status = Status.EXPIRED
        action.claimed_by, action.claimed_until = None, None
        action.save(update_fields=["status", "claimed_by", "claimed_until"])
        logger.info("expired: nobody decided it in time")
        audit_record(
            action=action,
            event="expired",
            actor="system",
            from_status=Status.NEEDS_REVIEW,
            to_status=Status.EXPIRED,
            data={"expires_at": action.expires_at.isoformat()},
        )
        _push_on_commit(action, "expired")
        _webhook_on_commit(action, "action.expired")
    return True


def actions_enforce_deadlines(*, now: datetime | None = None, batch: int = 500) -> dict[str, int]:
    """Beat: expire what is past expires_at, escalate what is past its SLA. Safe to run twice."""
    now = now or timezone.now()
    held = ProposedAction.objects.filter(status=Status.NEEDS_REVIEW)
    expired = sum(
        action_expire(action_id=str(pk), now=now)
        for pk in held.filter(expires_at__lte=now).order_by("expires_at").values_list("pk", flat=True)[:batch]
    )
    escalated = sum(
        action_escalate(action_id=str(pk), now=now)
        for pk in held.filter(escalated=False, sla_deadline__lte=now)
        .order_by("sla_deadline")
        .values_list("pk", flat=True)[:batch]
    )
    return {"expired": expired, "escalated": escalated}


CLAIM_DURATION = timedelta(minutes=5)


def action_claim(*, action_id: str, user: User) -> ProposedAction:
    """Mark a held action as open by ``user`` for a few minutes, so that other reviewers see it.

    Advisory only: a live claim of someone else is left alone (the caller shows who holds it), and
    no decision is ever refused because of a claim. A new holder is audited; a renewal is not.
    """
    now = timezone.now()
    with transaction.atomic():
        action = ProposedAction.objects.select_for_update(of=("self",)).select_related("claimed_by").get(pk=action_id)
        if action.status != Status.NEEDS_REVIEW:
            return action
        holder = selectors.claim_holder(action, now=now)
        if holder not in (None, user.pk):
            return action
        new_holder = holder != user.pk
        action.claimed_by, action.claimed_until = user, now + CLAIM_DURATION
        action.save(update_fields=["claimed_by", "claimed_until"])
        if new_holder:
            audit_record(
                action=action,
                event="claimed",
                actor=actor_of_user(user),
                from_status=action.status,
                to_status=action.status,
                data={"until": action.claimed_until.isoformat()},
            )
            _push_on_commit(action, "claimed", claimed_by=user.get_username())
    return action


def action_cancel(*, action_id: str, agent: Agent) -> ProposedAction:
    """The agent withdraws its own pending or held action."""
    with transaction.atomic():
        action = _locking_actions().get(pk=action_id, agent=agent)
        if action.status not in (Status.PENDING, Status.NEEDS_REVIEW):
            raise ActionConflict(f"action is {action.status}: only pending or needs_review actions can be cancelled")
        previous = action.status
        action.status = Status.CANCELLED
        action.save(update_fields=["status"])
        audit_record(
            action=action,
            event="cancelled",
            actor=actor_of_agent(agent),
            from_status=previous,
            to_status=Status.CANCELLED,
        )
        _push_on_commit(action, "cancelled")
    return action


def label_create(
    *, action: ProposedAction, author: User, label: str, tags: list[str] | None = None, note: str = ""
) -> Label:
    """Record ground truth for any action; the newest label of an action wins, history stays."""
    with transaction.atomic():
        created = Label.objects.create(action=action, label=label, tags=tags or [], note=note, author=author)
        ProposedAction.objects.filter(pk=action.pk).update(ground_truth=label)
        action.ground_truth = label
        audit_record(
            action=action,
            event="labelled",
            actor=actor_of_user(author),
            from_status=action.status,
            to_status=action.status,
            data={"label": label, "tags": tags or [], "note": note},
        )
        _push_on_commit(action, "labelled")
    return created


def remembered_approval_revoke(*, remembered: RememberedApproval, user: User) -> RememberedApproval:
    """Stop a remembered approval from approving anything more; what it approved stays approved."""
    with transaction.atomic():
        remembered = RememberedApproval.objects.select_for_update().get(pk=remembered.pk)
        if remembered.revoked_at is not None:
            return remembered
        remembered.revoked_at, remembered.revoked_by = timezone.now(), user
        remembered.save(update_fields=["revoked_at", "revoked_by"])
        audit_record(
            action=remembered.source_action,
            event="remembered_approval_revoked",
            actor=actor_of_user(user),
            data={"remembered_approval": remembered.pk, "applied_to": remembered.applied_to.count()},
        )
    return remembered


def action_report_outcome(
    *, action_id: str, agent: Agent, executed: bool, result: Any = None, error: str = ""
) -> ProposedAction:
    """Contract §2: the owning agent says, once, what happened when it acted on an approval."""
    with transaction.atomic():
        action = _locking_actions().get(pk=action_id, agent=agent)
        if action.status not in (Status.APPROVED, Status.AUTO_APPROVED):
            raise ActionConflict(f"action is {action.status}: outcomes are reported for approved actions only")
        if action.outcome_at is not None:
            raise ActionConflict("the outcome of this action was already reported")
        action.outcome_executed, action.outcome_result, action.outcome_error = executed, result, error
        action.outcome_at = timezone.now()
        action.save(update_fields=["outcome_executed", "outcome_result", "outcome_error", "outcome_at"])
        audit_record(
            action=action,
            event="outcome_reported",
            actor=actor_of_agent(agent),
            from_status=action.status,
            to_status=action.status,
            data={"executed": executed, "error": error},
        )
        _push_on_commit(action, "outcome_reported")
    return action


# --- policies -----------------------------------------------------------------------------------


def _next_policy_version() -> int:
    latest = PolicyVersion.objects.select_for_update().order_by("-number").first()
    return (latest.number if latest else 0) + 1


def _write_action_type(spec: policy.ActionTypeSpec, version: int) -> ActionType:
    fields = {
        name: getattr(spec, name)
        for name in policy.ActionTypeSpec.__dataclass_fields__
        if name not in ("name", "rules")
    }
    action_type, _ = ActionType.objects.update_or_create(name=spec.name, defaults={**fields, "policy_version": version})
    action_type.rules.all().delete()
    Rule.objects.bulk_create(
        Rule(
            action_type=action_type,
            position=index,
            name=rule.name,
            require=rule.require,
            on_fail=rule.on_fail,
            risk=rule.risk,
            message=rule.message,
        )
        for index, rule in enumerate(spec.rules)
    )
    return action_type


def policy_version_record(*, version: int, source: str, actor: str, changed: list[str]) -> PolicyVersion:
    """Snapshot the whole policy as version ``version``; call inside the changing transaction."""
    record = PolicyVersion.objects.create(
        number=version, source=source, created_by=actor, document=selectors.policy_document_current()
    )
    audit_record(
        action=None,
        event="policy_changed",
        actor=actor,
        data={"policy_version": version, "source": source, "action_types": changed},
    )
    return record


def policies_import(*, document: Any, actor: str, source: str = "import") -> int:
    """Create or replace the action types a policy document names, all or nothing.

    Raises PolicyError (listing every problem) and changes nothing when any part is invalid.
    Returns the new gate-wide policy version.
    """
    specs = policy.parse_document(document)
    with transaction.atomic():
        version = _next_policy_version()
        for spec in specs:
            _write_action_type(spec, version)
        policy_version_record(version=version, source=source, actor=actor, changed=[s.name for s in specs])
    return version


def action_type_policy_changed(*, action_type: ActionType, actor: str, source: str = "admin") -> int:
    """After an edit of a type in the admin: validate it as a whole and record a new version."""
    spec = selectors.action_type_spec(action_type)
    policy.parse_action_type(spec.to_document(), action_type.name)
    with transaction.atomic():
        version = _next_policy_version()
        ActionType.objects.filter(pk=action_type.pk).update(policy_version=version)
        action_type.policy_version = version
        policy_version_record(version=version, source=source, actor=actor, changed=[action_type.name])
    return version


def action_type_apply_thresholds(
    *, action_type: ActionType, auto_approve_max_risk: float, max_auto_amount: float | None, actor: str
) -> int:
    """Set a type's thresholds (a sweep's recommendation, say) as a new policy version, audited."""
    with transaction.atomic():
        locked = ActionType.objects.select_for_update().get(pk=action_type.pk)
        before = {"auto_approve_max_risk": locked.auto_approve_max_risk, "max_auto_amount": locked.max_auto_amount}
        locked.auto_approve_max_risk = auto_approve_max_risk
        if locked.amount_path:
            locked.max_auto_amount = max_auto_amount
        spec = selectors.action_type_spec(locked)
        policy.parse_action_type(spec.to_document(), locked.name)  # PolicyError: nothing saved
        locked.save(update_fields=["auto_approve_max_risk", "max_auto_amount"])
        version = _next_policy_version()
        ActionType.objects.filter(pk=locked.pk).update(policy_version=version)
        action_type.refresh_from_db()
        policy_version_record(version=version, source="recommendation", actor=actor, changed=[locked.name])
        audit_record(
            action=None,
            event="thresholds_applied",
            actor=actor,
            data={
                "action_type": locked.name,
                "policy_version": version,
                "before": before,
                "after": {"auto_approve_max_risk": auto_approve_max_risk, "max_auto_amount": locked.max_auto_amount},
            },
        )
    return version


# --- webhooks -----------------------------------------------------------------------------------


def webhook_deliver(*, delivery_id: int) -> str:
    """Send one delivery; returns its state. Never holds a transaction while the network is used."""
    from approvals import webhooks

    delivery = WebhookDelivery.objects.select_related("action__agent").filter(pk=delivery_id).first()
    if delivery is None or delivery.state != WebhookDelivery.State.PENDING:
        return delivery.state if delivery else "missing"
    gate_logging.bind_action(delivery.action)
    body = delivery.body.encode()
    headers = {
        webhooks.EVENT_HEADER: delivery.event,
        webhooks.SIGNATURE_HEADER: webhooks.sign(delivery.action.agent.webhook_secret, body),
        "X-Gate-Delivery": str(delivery.pk),
        "User-Agent": "autonomy-gate-webhooks/1",
    }
    status_code: int | None = None
    error = ""
    refused = False
    try:
        status_code = webhooks.post(delivery.url, body, headers).status_code
        if not 200 <= status_code < 300:
            error = f"HTTP {status_code}"
    except webhooks.WebhookRefused as exc:
        refused, error = True, str(exc)
    except Exception as exc:  # network errors: retried
        error = f"{type(exc).__name__}: {exc}"
    attempts = delivery.attempts + 1
    if not error:
        state = WebhookDelivery.State.DELIVERED
    elif refused or attempts >= settings.GATE_WEBHOOK_MAX_ATTEMPTS:
        state = WebhookDelivery.State.FAILED
    else:
        state = WebhookDelivery.State.PENDING
    WebhookDelivery.objects.filter(pk=delivery.pk, state=WebhookDelivery.State.PENDING).update(
        attempts=attempts,
        state=state,
        last_status_code=status_code,
        last_error=error[:2000],
        delivered_at=timezone.now() if state == WebhookDelivery.State.DELIVERED else None,
    )
    if state == WebhookDelivery.State.FAILED:
        logger.warning("webhook delivery %s to %s failed: %s", delivery.pk, delivery.url, error)
    return state


def webhook_redeliver(*, delivery: WebhookDelivery, actor: str) -> WebhookDelivery:
    """An operator sends a delivery again (the admin's redelivery button): a new delivery row."""
    with transaction.atomic():
        again = WebhookDelivery.objects.create(
            action=delivery.action, event=delivery.event, url=delivery.url, body=delivery.body
        )
        audit_record(
            action=delivery.action,
            event="webhook_redelivered",
            actor=actor,
            data={"delivery": delivery.pk, "new_delivery": again.pk, "event": delivery.event},
        )
        _enqueue_webhook_on_commit(again.pk)
    return again
