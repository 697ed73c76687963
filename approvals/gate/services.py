"""Proposing and evaluating: an agent's proposal stored as ``pending``, and the worker's evaluation
under its type's policy, applied as a transition. Also what the agent does afterwards: withdraw a
proposal, report what happened when it acted."""

from __future__ import annotations

import logging
import math
import time
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import DatabaseError, IntegrityError, transaction
from django.utils import timezone

from approvals import policy
from approvals.errors import IdempotencyConflict, NotPermitted
from approvals.evidence.services import evidence_gather
from approvals.gate import agents, selectors
from approvals.gate.params import approved_params_hash_of, params_hash
from approvals.gate.shadow import shadow_evaluate
from approvals.lifecycle import statements
from approvals.lifecycle.audit import actor_of_agent, audit_record
from approvals.lifecycle.transitions import Applied, Cause, TransitionRefused, transition_apply
from approvals.models import ActionType, Agent, Decision, ProposedAction, RememberedApproval, Status, Verdict
from approvals.notifications.selectors import notifications_wanted
from approvals.ops import logging as gate_logging
from approvals.ops import tracing

logger = logging.getLogger(__name__)


def request_fingerprint(body: dict[str, Any]) -> str:
    """The body as parsed JSON, idempotency key left out, in a canonical form."""
    canonical = {k: v for k, v in body.items() if k != "idempotency_key"}
    return params_hash(canonical)


# --- proposing ----------------------------------------------------------------------------------


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
    Creating an action is not a transition (it has no status before): its evaluation is queued on
    commit, and the pending sweep queues it again should that be lost.
    """
    if trajectory is None:
        trajectory = policy.normalize_trajectory(trajectory_raw)
    try:
        with transaction.atomic(durable=True):
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
            action.save(force_insert=True)
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


def proposal_permitted_check(agent: Agent, action_type: ActionType) -> None:
    """Raise NotPermitted unless ``agent`` may propose actions of ``action_type`` now: both enabled,
    and the type among the agent's (every door that proposes: the API, the MCP gateway)."""
    if not agent.enabled:
        raise NotPermitted(f"Agent {agent.name} is disabled.")
    if not action_type.enabled:
        raise NotPermitted(f"Action type {action_type.name} is disabled.")
    if not agents.agent_may_propose(agent, action_type):
        raise NotPermitted(f"Agent {agent.name} may not propose {action_type.name} actions.")


def action_propose_validated(
    *, agent: Agent, values: dict[str, Any], body: dict[str, Any]
) -> tuple[ProposedAction, bool]:
    """Propose from a validated proposal (the API's ProposeSerializer), checking that the agent may.

    ``body`` is the proposal as sent, for the idempotency fingerprint. Raises NotPermitted.
    """
    action_type = values["action_type"]
    proposal_permitted_check(agent, action_type)
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
    from approvals.gate.tasks import evaluate_action

    def enqueue() -> None:
        try:
            if tracing.ENABLED:  # the evaluation's span continues the proposal's trace
                evaluate_action.apply_async((action_id,), headers=tracing.carrier())
            else:
                evaluate_action.delay(action_id)
        except Exception:
            # The action is stored; the sweeper queues it again once the broker is back.
            logger.warning("could not queue evaluation of action %s", action_id, exc_info=True)

    transaction.on_commit(enqueue)


def action_requeue_stale(*, older_than: timedelta) -> dict[str, int]:
    """Queue again every action pending for longer than ``older_than`` (or hold it, when its
    evaluation has failed too often): no action stays pending."""
    requeued = held = 0
    for action_id, attempts in selectors.actions_stale_pending(created_before=timezone.now() - older_than):
        if attempts >= settings.GATE_MAX_EVALUATION_ATTEMPTS:
            if action_hold_for_review(action_id=action_id, error=f"evaluation failed {attempts} times"):
                held += 1
        else:
            _enqueue_evaluation_on_commit(action_id)
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


def _finite_amount(action: ProposedAction) -> float | None:
    path = action.action_type.amount_path
    value = policy.amount_at(action.params, path) if path else None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def _apply_decision(
    action: ProposedAction,
    decision: policy.Decision,
    *,
    cause: Cause,
    started: float | None = None,
    evidence: dict[str, Any] | None = None,
) -> bool:
    """Move a pending action to the decision's status; False when it is no longer pending."""
    now = timezone.now()
    spec = action.action_type
    final = decision.status in (policy.AUTO_APPROVED, policy.BLOCKED)
    changes: dict[str, Any] = {
        "risk_score": decision.risk_score,
        "findings": decision.findings,
        "policy_version": decision.policy_version,
        "audit_flagged": decision.audit_flagged,
        "reached_thresholds": decision.reached_thresholds,
        "remembered_approval": decision.remembered_approval,
        "amount": _finite_amount(action),
        "evaluated_at": now,
        "decided_at": now if final else None,
    }
    if evidence is not None:
        changes["evidence"] = evidence
    if decision.status == policy.NEEDS_REVIEW:
        changes["sla_deadline"] = now + timedelta(minutes=spec.review_sla_minutes) if spec.review_sla_minutes else None
        changes["expires_at"] = (
            now + timedelta(minutes=spec.expire_after_minutes) if spec.expire_after_minutes else None
        )
        # Fixed when held: a policy change during the review never lets fewer people approve it.
        changes["approvals_required"] = spec.approvals_required
    name = "hold" if cause == Cause.SYSTEM else "approve_remembered" if decision.remembered_approval else "evaluate"

    def record_decision(applied: Applied) -> None:
        if final:
            verdict = Verdict.APPROVE if decision.status == policy.AUTO_APPROVED else Verdict.REJECT
            applied.rows.append(
                Decision(action=action, verdict=verdict, by_policy=True, reason=_policy_reason(decision))
            )

    audit_data: dict[str, Any] = {
        "risk_score": decision.risk_score,
        "policy_version": decision.policy_version,
        "audit_flagged": decision.audit_flagged,
    }
    if decision.remembered_approval is not None:
        audit_data["remembered_approval"] = decision.remembered_approval
    measured = {
        "kind": "evaluation",
        "action_type": spec.name,
        "duration": time.perf_counter() - started if started is not None else None,
        "wait": (now - action.created_at).total_seconds() if action.created_at else None,
        "rule_errors": [str(f.get("rule", "")) for f in decision.findings if f.get("outcome") == "error"],
    }
    announced: dict[str, Any] = {"metrics": measured}
    if decision.status == policy.NEEDS_REVIEW and notifications_wanted(spec):
        # Read from the type already loaded: a type with nobody to tell costs the hot path nothing.
        announced["notify"] = True
    try:
        transition_apply(
            name,
            action_id=str(action.pk),
            cause=cause,
            actor="policy" if cause == Cause.POLICY else "system",
            to=decision.status,
            changes=changes,
            audit_data=audit_data,
            effects=record_decision,
            announce=announced,
        )
    except TransitionRefused:
        return False
    for field_name, value in changes.items():
        setattr(action, field_name if field_name != "remembered_approval" else "remembered_approval_id", value)
    action.status = decision.status
    return True


def action_evaluate(*, action_id: str) -> ProposedAction | None:
    """Evaluate a pending action under its type's current policy. Running it twice decides once.

    Database errors propagate, so that the task is retried; any other fault holds the action.
    """
    started = time.perf_counter()
    now = timezone.now()
    loaded = selectors.action_for_evaluation(action_id, now=now)
    if loaded is None:  # decided already (a repeated delivery), cancelled, or unknown
        return selectors.actions_visible_to(None).filter(pk=action_id).first()
    action, agent_name, refused = loaded.action, loaded.agent_name, loaded.refused_repeat_of
    gate_logging.bind(action_id=action.pk, agent=agent_name)
    attempts = action.evaluation_attempts
    if attempts > settings.GATE_MAX_EVALUATION_ATTEMPTS:
        error = f"evaluation did not finish in {attempts - 1} attempts"
        decision = policy.evaluation_error_decision(error, policy_version=action.action_type.policy_version)
        _apply_decision(action, decision, cause=Cause.SYSTEM)
        return action
    if not action.action_type.builtin_checks:
        refused = None
    evidence: dict[str, Any] = {}
    gathered: policy.Proposal | None = None  # the proposal with its evidence, for the shadow too
    try:
        compiled = selectors.compiled_policy_for(action.action_type)
        proposal = selectors.proposal_of(
            action,
            agent_name=agent_name,
            now=now,
            refused_repeat_of=refused,
            # Not even read for a type no remembered approval may cover (the engine refuses them too).
            remembered=selectors.remembered_approvals_for(action)
            if policy.remembers_approvals(mode=compiled.spec.mode, approvals_required=compiled.spec.approvals_required)
            else (),
        )
        gathered, evidence = evidence_gather(
            compiled, proposal, action, now=now, executed_by_params=loaded.executed_repeat_of
        )
        decision = policy.policy_evaluate(compiled, gathered, budget_seconds=settings.GATE_EVALUATION_BUDGET_MS / 1000)
    except DatabaseError:
        raise
    except Exception as exc:
        logger.exception("evaluation of action %s failed", action_id)
        decision = policy.evaluation_error_decision(exc, policy_version=action.action_type.policy_version)
    if _apply_decision(action, decision, cause=Cause.POLICY, started=started, evidence=evidence):
        if tracing.ENABLED:
            tracing.record_evaluation(
                action_type=action.action_type.name,
                action_id=str(action.pk),
                agent=agent_name,
                decision=decision.status,
                policy_version=decision.policy_version,
                risk_score=decision.risk_score,
                started_ns=tracing.now_ns() - int((time.perf_counter() - started) * 1e9),
            )
        logger.info(
            "evaluated: %s",
            decision.status,
            extra={
                "status": decision.status,
                "risk_score": decision.risk_score,
                "duration_ms": round((time.perf_counter() - started) * 1000, 2),
            },
        )
        # After the live decision committed and was announced: the shadow never delays or moves it.
        # A live evaluation that failed before its evidence was gathered leaves nothing to compare.
        if loaded.shadow_policy_id is not None and loaded.shadow_policy_version is not None and gathered is not None:
            shadow_evaluate(
                shadow_policy_id=loaded.shadow_policy_id,
                shadow_policy_version=loaded.shadow_policy_version,
                action=action,
                proposal=gathered,
                live_status=decision.status,
            )
    return action


def action_hold_for_review(*, action_id: str, error: str) -> bool:
    """Hold a pending action for a person after its evaluation kept failing."""
    action = ProposedAction.objects.select_related("action_type").filter(pk=action_id, status=Status.PENDING).first()
    if action is None:
        return False
    decision = policy.evaluation_error_decision(error, policy_version=action.action_type.policy_version)
    return _apply_decision(action, decision, cause=Cause.SYSTEM)


# --- after proposing: the agent's own changes ---------------------------------------------------


def action_cancel(*, action_id: str, agent: Agent) -> ProposedAction:
    """The agent withdraws its own pending or held action (another's does not exist for it)."""
    if not selectors.action_is_owned_by(agent, action_id):
        raise ProposedAction.DoesNotExist(f"agent {agent.name} has no action {action_id}")
    transition_apply(
        "cancel",
        action_id=action_id,
        cause=Cause.AGENT,
        actor=actor_of_agent(agent),
        changes={"claimed_by": None, "claimed_until": None},
        guard=[statements.equals(ProposedAction, "agent", agent.pk)],
    )
    return selectors.action_owned_by(agent, action_id)


def _remembered_lapse(action_id: str) -> dict[str, Any] | None:
    """Contract §6.1: a remembered approval lapses once an action it covered, or the one it came
    from, is reported as not executed: "yes, and the same again" must not keep approving calls the
    world refuses. Inside the outcome's transition (its audit link lists them)."""
    lapsed = selectors.remembered_approvals_to_lapse(action_id)
    if not lapsed:
        return None
    RememberedApproval.objects.filter(pk__in=lapsed, revoked_at__isnull=True).update(
        revoked_at=timezone.now(), lapsed_reason=f"action {action_id} was reported as not executed"
    )
    return {"lapsed_remembered_approvals": lapsed}


def action_report_outcome(
    *,
    action_id: str,
    agent: Agent,
    executed: bool,
    result: Any = None,
    error: str = "",
    params_hash: str | None = None,
) -> ProposedAction:
    """Contract §2: the owning agent says, once, what happened when it acted on an approval.

    ``params_hash`` (contract §6.3): the hash of the params it executed; one that differs from the
    approved hash is stored with ``params_mismatch`` and audited. Approved is final, so the approved
    hash read here is the one the guarded UPDATE finds.
    """
    try:
        action = selectors.action_owned_by(agent, action_id)
    except ProposedAction.DoesNotExist:
        raise ProposedAction.DoesNotExist(f"agent {agent.name} has no action {action_id}") from None
    approved_hash = approved_params_hash_of(action)
    mismatch = None if params_hash is None else params_hash != approved_hash
    audit_data: dict[str, Any] = {"executed": executed, "error": error}
    if params_hash is not None:
        audit_data.update(params_hash=params_hash, approved_params_hash=approved_hash, params_mismatch=mismatch)
    transition_apply(
        "report_outcome",
        action_id=action_id,
        cause=Cause.AGENT,
        actor=actor_of_agent(agent),
        changes={
            "outcome_executed": executed,
            "outcome_result": result,
            "outcome_error": error,
            "outcome_at": timezone.now(),
            "outcome_params_hash": params_hash or "",
            "params_mismatch": mismatch,
        },
        guard=[statements.equals(ProposedAction, "agent", agent.pk), statements.is_null(ProposedAction, "outcome_at")],
        refusal=lambda status: "the outcome of this action was already reported",
        audit_data=audit_data,
        effects=None if executed else lambda applied: _remembered_lapse(applied.action_id),
    )
    if mismatch:
        logger.warning(
            "outcome reported for params other than the approved ones",
            extra={"action_id": action_id, "params_hash": params_hash, "approved_params_hash": approved_hash},
        )
    return selectors.action_owned_by(agent, action_id)
