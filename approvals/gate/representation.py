"""The one representation of an action (contract §2) and of a remembered approval: what the API
answers, webhooks send and live pages show. Services and the API both use it; it reads only what it
is given (and the action's labels, unless known to be none)."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from approvals.gate import selectors
from approvals.gate.params import approved_params_hash_of
from approvals.models import Approval, ProposedAction, RememberedApproval


def action_read_represented(action_id: str | UUID) -> dict[str, Any]:
    """The action ``action_id`` as it stands now (inside the caller's transaction), represented."""
    return action_representation(selectors.actions_shown_to(None).get(pk=action_id))


def action_representation(action: ProposedAction, *, new: bool = False) -> dict[str, Any]:
    """The action as the API, webhooks and the live pages show it (contract §2).

    ``new``: it was created just now, so it has no decision and no labels (read nothing for them).
    Labels are read unless the action was annotated ``has_labels`` False (``actions_shown_to``).
    """
    decision = None if new else getattr(action, "decision", None)
    labels = [] if new or getattr(action, "has_labels", True) is False else action.labels.all()
    return {
        "id": str(action.id),
        "url": f"/api/v1/actions/{action.id}",
        "review_url": f"/review/{action.id}",
        "action_type": action.action_type.name,
        "agent": action.agent.name,
        "status": action.status,
        "params": action.params,
        # A reviewer's edit (contract §6.3): the agent acts with these when present.
        "approved_params": action.approved_params,
        "approved_params_hash": approved_params_hash_of(action),
        "context": action.context,
        "confidence": action.confidence,
        "rationale": action.rationale,
        "idempotency_key": action.idempotency_key,
        "risk_score": action.risk_score,
        "findings": action.findings,
        "decision": None
        if decision is None
        else {
            "verdict": decision.verdict,
            "by": decision.by,
            "reason": decision.reason,
            "at": decision.created_at.isoformat().replace("+00:00", "Z"),
        },
        # Ground truth from people, newest first: with the decision's reason, what an agent can
        # tell its model about why a call was refused or judged afterwards.
        "labels": [
            {
                "label": label.label,
                "tags": label.tags,
                "note": label.note,
                "by": label.author.get_username() if label.author else None,
                "at": _iso(label.created_at),
            }
            for label in labels
        ],
        # The two-person rule: every approval so far, and how many it needs.
        "approvals": [] if new or not action.approvals_count else approvals_of(action),
        "approvals_required": action.approvals_required,
        "policy_version": action.policy_version,
        "remembered_approval": action.remembered_approval_id,
        "outcome": None
        if action.outcome_at is None
        else {
            "executed": action.outcome_executed,
            "result": action.outcome_result,
            "error": action.outcome_error,
            "at": _iso(action.outcome_at),
            "params_hash": action.outcome_params_hash or None,
            "params_mismatch": action.params_mismatch,
        },
        "audit_flagged": action.audit_flagged,
        "escalated": action.escalated,
        "sla_deadline": _iso(action.sla_deadline),
        "expires_at": _iso(action.expires_at),
        "created_at": _iso(action.created_at),
        "evaluated_at": _iso(action.evaluated_at),
        "decided_at": _iso(action.decided_at),
    }


def approvals_of(action: ProposedAction) -> list[dict[str, Any]]:
    """The action's approvals, oldest first (read only for an action that has some)."""
    rows = Approval.objects.filter(action=action).order_by("at", "id").values_list("reviewer__username", "at")
    return [{"by": username, "at": _iso(at)} for username, at in rows]


def _iso(value: Any) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value is not None else None


def remembered_approval_representation(
    remembered: RememberedApproval, *, applied_to: int | None = None
) -> dict[str, Any]:
    """A remembered approval as the API shows it; ``applied_to``: how many actions it approved
    (counted here unless the caller annotated it)."""
    if applied_to is None:
        applied_to = getattr(remembered, "applied_count", None)
    if applied_to is None:
        applied_to = remembered.applied_to.count()
    return {
        "id": remembered.pk,
        "source_action": str(remembered.source_action_id),
        "agent": remembered.agent.name,
        "action_type": remembered.action_type.name,
        "session_id": remembered.session_id,
        "failed": list(remembered.failed),
        "reviewer": remembered.reviewer.get_username(),
        "created_at": _iso(remembered.created_at),
        "expires_at": _iso(remembered.expires_at),
        "revoked_at": _iso(remembered.revoked_at),
        "revoked_by": remembered.revoked_by.get_username() if remembered.revoked_by else None,
        "lapsed_reason": remembered.lapsed_reason,
        "applied_to": applied_to,
    }
