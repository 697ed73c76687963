"""A gate whose refunds are reviewed by the ``refunds`` group (``escalations`` joins once the SLA
passes), beside ``escalate_ticket``, a type without a review group: shared by the routing tests."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from django.contrib.auth.models import Group, User

from approvals.gate.policies import policies_import
from approvals.gate.services import action_evaluate, action_propose, request_fingerprint
from approvals.models import ActionType, Agent, ProposedAction, Status
from tests.conftest import LOOKED_UP, TEST_POLICY
from tests.factories import AgentFactory, ReviewerFactory, UserFactory

REVIEW_GROUP, ESCALATION_GROUP = "refunds", "escalations"


def routed_policy(**refund: Any) -> dict[str, Any]:
    """TEST_POLICY with the refund type's review groups (or ``refund``'s fields instead)."""
    document = copy.deepcopy(TEST_POLICY)
    document["action_types"][0].update(refund or {"review_group": REVIEW_GROUP, "escalation_group": ESCALATION_GROUP})
    return document


@dataclass
class Routed:
    member: User  # a reviewer in ``refunds``
    outsider: User  # a reviewer in neither group
    escalator: User  # a reviewer in ``escalations``
    superuser: User
    agent: Agent


def routed_gate() -> Routed:
    Group.objects.get_or_create(name=REVIEW_GROUP)
    Group.objects.get_or_create(name=ESCALATION_GROUP)
    policies_import(document=routed_policy(), actor="test")
    member, escalator = ReviewerFactory(), ReviewerFactory()
    member.groups.add(Group.objects.get(name=REVIEW_GROUP))
    escalator.groups.add(Group.objects.get(name=ESCALATION_GROUP))
    superuser = UserFactory(username="root", is_superuser=True, is_staff=True)
    return Routed(member, ReviewerFactory(), escalator, superuser, AgentFactory())


def held(agent: Agent, type_name: str = "refund", order: str = "A-9") -> ProposedAction:
    """An action held for review: a refund over the auto-approval amount, or a ``mode: review`` type."""
    params = {"order_id": order, "amount": 500}
    body = {"action_type": type_name, "params": params, "trajectory": LOOKED_UP}
    action, _ = action_propose(
        agent=agent,
        action_type=ActionType.objects.get(name=type_name),
        params=params,
        fingerprint=request_fingerprint(body),
        trajectory_raw=LOOKED_UP,
    )
    action_evaluate(action_id=str(action.id))
    action.refresh_from_db()
    assert action.status == Status.NEEDS_REVIEW
    return action
