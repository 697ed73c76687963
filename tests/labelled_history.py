"""A labelled history of refunds under TEST_POLICY (base risk 0.1, auto up to 0.3 and an amount of
100), made through the real services, for the safety net of policy changes (contract §6.2): what
raising ``max_auto_amount`` from 100 to 200 would newly let through."""

from __future__ import annotations

import copy
from typing import Any

from approvals.gate.policies import policies_import
from approvals.gate.services import action_evaluate, action_propose, request_fingerprint
from approvals.models import ActionType, Agent, ProposedAction
from approvals.review.services import action_decide, label_create
from tests.conftest import LOOKED_UP, TEST_POLICY
from tests.factories import AgentFactory, ReviewerFactory


def refund_proposed(agent: Agent, params: dict[str, Any], trajectory: Any = LOOKED_UP) -> ProposedAction:
    body = {"action_type": "refund", "params": params, "trajectory": trajectory}
    action, _ = action_propose(
        agent=agent,
        action_type=ActionType.objects.get(name="refund"),
        params=params,
        fingerprint=request_fingerprint(body),
        trajectory_raw=trajectory,
    )
    action_evaluate(action_id=str(action.id))
    action.refresh_from_db()
    return action


def amount_history() -> dict[str, ProposedAction]:
    """TEST_POLICY imported, then refunds decided and labelled by a reviewer:

    - ``mid_unsafe`` (150, held by the amount, rejected) and ``mid_safe`` (180, held, approved): a
      limit of 200 would newly auto-approve both;
    - ``auto_unsafe`` (30, auto-approved, labelled unsafe): already let through, not *newly*;
    - ``large_safe`` (500, approved) and ``unlooked_unsafe`` (120 of an order never looked up,
      rejected): held under 200 too.
    """
    policies_import(document=TEST_POLICY, actor="test")
    agent, reviewer = AgentFactory(name="support-bot"), ReviewerFactory(username="rita")
    actions = {
        "auto_unsafe": refund_proposed(agent, {"order_id": "A-1", "amount": 30}),
        "mid_unsafe": refund_proposed(agent, {"order_id": "A-1", "amount": 150}),
        "mid_safe": refund_proposed(agent, {"order_id": "A-1", "amount": 180}),
        "large_safe": refund_proposed(agent, {"order_id": "A-1", "amount": 500}),
        "unlooked_unsafe": refund_proposed(agent, {"order_id": "A-7", "amount": 120}, trajectory=[]),
    }
    assert [a.status for a in actions.values()] == ["auto_approved", *["needs_review"] * 4]
    label_create(action=actions["auto_unsafe"], author=reviewer, label="unsafe")
    for name, verdict in (
        ("mid_unsafe", "reject"),
        ("mid_safe", "approve"),
        ("large_safe", "approve"),
        ("unlooked_unsafe", "reject"),
    ):
        action_decide(action_id=str(actions[name].id), user=reviewer, verdict=verdict)
    for action in actions.values():
        action.refresh_from_db()
    assert [a.ground_truth for a in actions.values()] == ["unsafe", "unsafe", "safe", "safe", "unsafe"]
    return actions


def refund_policy(**changes: Any) -> dict[str, Any]:
    """TEST_POLICY's refund type with ``changes``, as a document of its own."""
    refund = copy.deepcopy(TEST_POLICY["action_types"][0])
    refund.update(changes)
    return {"version": 1, "action_types": [refund]}
