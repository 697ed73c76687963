"""POST /api/v1/actions/{id}/outcome (contract §2): the owning agent reports, once, what happened."""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework.test import APIClient

from approvals.models import AuditEvent, ProposedAction, Status
from approvals.review.services import action_decide
from tests.conftest import LOOKED_UP
from tests.factories import AgentFactory

pytestmark = pytest.mark.django_db

AUTO = {"action_type": "refund", "params": {"order_id": "A-1", "amount": 20}, "trajectory": LOOKED_UP}
HELD = {"action_type": "refund", "params": {"order_id": "A-9", "amount": 20}, "trajectory": LOOKED_UP}


def outcome(client: APIClient, action: dict[str, Any], body: Any) -> Any:
    return client.post(f"{action['url']}/outcome", body, format="json")


def test_the_owner_reports_once_for_an_auto_approved_action(policy_v1: int, propose: Any, agent_client: Any) -> None:
    action = propose(AUTO).action
    assert action["status"] == "auto_approved"
    assert action["outcome"] is None

    response = outcome(agent_client, action, {"executed": True, "result": {"refund_id": "R-7"}})
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["outcome"]["executed"] is True
    assert body["outcome"]["result"] == {"refund_id": "R-7"}
    assert body["outcome"]["error"] == ""
    assert body["outcome"]["at"]
    event = AuditEvent.objects.get(action_id=action["id"], event="outcome_reported")
    assert event.actor == "agent:support-bot"
    assert event.data == {"executed": True, "error": ""}

    again = outcome(agent_client, action, {"executed": False, "error": "second thoughts"})
    assert again.status_code == 409
    stored = ProposedAction.objects.get(pk=action["id"])
    assert stored.outcome_executed is True
    assert AuditEvent.objects.filter(action_id=action["id"], event="outcome_reported").count() == 1


def test_a_failed_execution_is_reported_with_its_error(policy_v1: int, propose: Any, agent_client: Any) -> None:
    action = propose(AUTO).action
    response = outcome(agent_client, action, {"executed": False, "error": "payment gateway timeout"})
    assert response.status_code == 200
    assert response.json()["outcome"] == {
        "executed": False,
        "result": None,
        "error": "payment gateway timeout",
        "at": response.json()["outcome"]["at"],
        "params_hash": None,  # no hash reported: nothing to compare (contract §6.3)
        "params_mismatch": None,
    }


def test_an_approved_action_takes_an_outcome(policy_v1: int, propose: Any, agent_client: Any, reviewer: Any) -> None:
    action = propose(HELD).action
    assert action["status"] == "needs_review"
    action_decide(action_id=action["id"], user=reviewer, verdict="approve")
    assert outcome(agent_client, action, {"executed": True}).status_code == 200


@pytest.mark.parametrize("verdict", [None, "reject"])
def test_only_approved_actions_take_an_outcome(
    policy_v1: int, propose: Any, agent_client: Any, reviewer: Any, verdict: str | None
) -> None:
    action = propose(HELD).action
    if verdict:
        action_decide(action_id=action["id"], user=reviewer, verdict=verdict)
    response = outcome(agent_client, action, {"executed": True})
    assert response.status_code == 409
    assert "approved actions only" in response.json()["detail"]
    assert ProposedAction.objects.get(pk=action["id"]).outcome_at is None


def test_a_blocked_action_takes_no_outcome(policy_v1: int, propose: Any, agent_client: Any) -> None:
    action = propose({"action_type": "delete_account", "params": {}}).action
    assert action["status"] == Status.BLOCKED
    assert outcome(agent_client, action, {"executed": True}).status_code == 409


@pytest.mark.parametrize(
    "body",
    [{}, {"executed": "yes"}, {"executed": None}, {"executed": True, "error": 5}, [], "executed"],
)
def test_a_malformed_outcome_is_refused_and_changes_nothing(
    policy_v1: int, propose: Any, agent_client: Any, body: Any
) -> None:
    action = propose(AUTO).action
    response = outcome(agent_client, action, body)
    assert response.status_code == 400
    assert isinstance(response.json(), dict)
    assert ProposedAction.objects.get(pk=action["id"]).outcome_at is None


def test_another_agent_cannot_report_and_reviewers_are_not_agents(
    policy_v1: int, propose: Any, reviewer_client: Any
) -> None:
    action = propose(AUTO).action
    stranger = APIClient()
    stranger.credentials(HTTP_AUTHORIZATION=f"Bearer {AgentFactory(name='other-bot').token}")
    assert outcome(stranger, action, {"executed": True}).status_code == 404
    assert outcome(reviewer_client, action, {"executed": True}).status_code == 403
    assert outcome(APIClient(), action, {"executed": True}).status_code == 401
    assert ProposedAction.objects.get(pk=action["id"]).outcome_at is None
