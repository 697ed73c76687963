"""End to end through the broker: a real `celery worker` process evaluates what the API stores."""

from __future__ import annotations

import time
from typing import Any

import pytest
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from approvals.gate.policies import policies_import
from approvals.models import AuditEvent, Decision, ProposedAction
from escalation_app.celery import app as celery_app
from tests.conftest import LOOKED_UP, TEST_POLICY
from tests.factories import AgentFactory, ReviewerFactory

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def clients(celery_worker_process: str) -> tuple[APIClient, APIClient]:
    policies_import(document=TEST_POLICY, actor="test")
    agent_client, reviewer_client = APIClient(), APIClient()
    agent_client.credentials(HTTP_AUTHORIZATION=f"Bearer {AgentFactory().token}")
    reviewer_client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=ReviewerFactory()).key}")
    return agent_client, reviewer_client


def _propose(client: APIClient, params: dict[str, Any], trajectory: Any = LOOKED_UP) -> dict[str, Any]:
    response = client.post(
        "/api/v1/actions?wait=5", {"action_type": "refund", "params": params, "trajectory": trajectory}, format="json"
    )
    assert response.status_code == 201, response.content
    return response.json()


def test_worker_decides_each_outcome_and_reviewer_finishes_it(clients: tuple[APIClient, APIClient]) -> None:
    agent_client, reviewer_client = clients

    # given / when: three proposals go through Redis to the worker, the API waiting for each
    small = _propose(agent_client, {"order_id": "A-1", "amount": 20})
    large = _propose(agent_client, {"order_id": "A-1", "amount": 500})
    invalid = _propose(agent_client, {"order_id": "A-1", "amount": "lots"})

    # then
    assert small["status"] == "auto_approved"
    assert small["decision"]["by"] == "policy"
    assert large["status"] == "needs_review"
    assert [f["rule"] for f in large["findings"] if f["outcome"] == "fail"] == ["amount"]
    assert invalid["status"] == "blocked"
    assert {f["rule"] for f in invalid["findings"] if f["outcome"] == "fail"} == {"params_schema"}

    # a reviewer approves the held one; a second decision is refused
    first = reviewer_client.post(f"/api/v1/actions/{large['id']}/decision", {"verdict": "approve"}, format="json")
    second = reviewer_client.post(f"/api/v1/actions/{large['id']}/decision", {"verdict": "reject"}, format="json")
    assert first.status_code == 200
    assert first.json()["status"] == "approved"
    assert second.status_code == 409

    # every transition is audited, once
    trail = {
        str(action.id): list(action.audit_events.values_list("event", "from_status", "to_status"))
        for action in ProposedAction.objects.all()
    }
    assert trail[small["id"]] == [("proposed", "", "pending"), ("evaluated", "pending", "auto_approved")]
    assert trail[invalid["id"]] == [("proposed", "", "pending"), ("evaluated", "pending", "blocked")]
    assert trail[large["id"]] == [
        ("proposed", "", "pending"),
        ("evaluated", "pending", "needs_review"),
        ("decided", "needs_review", "approved"),
    ]


def _worker_idle(node: str) -> bool:
    inspect = celery_app.control.inspect(destination=[node], timeout=1)
    active, reserved = inspect.active() or {}, inspect.reserved() or {}
    return not any(active.get(node, [])) and not any(reserved.get(node, []))


def test_task_delivered_three_times_decides_once(
    clients: tuple[APIClient, APIClient], celery_worker_process: str
) -> None:
    from approvals.gate.tasks import evaluate_action

    agent_client, _ = clients
    # given: a proposal whose evaluation message is followed by two copies (redeliveries)
    response = agent_client.post(
        "/api/v1/actions",
        {"action_type": "refund", "params": {"order_id": "A-1", "amount": 20}, "trajectory": LOOKED_UP},
        format="json",
    )
    action_id = response.json()["id"]
    evaluate_action.delay(action_id)
    evaluate_action.delay(action_id)

    # when: the worker (two processes) has taken all three
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if ProposedAction.objects.get(pk=action_id).is_final and _worker_idle(celery_worker_process):
            break
        time.sleep(0.1)

    # then: one transition, one decision, one audit event
    assert ProposedAction.objects.get(pk=action_id).status == "auto_approved"
    assert Decision.objects.filter(action_id=action_id).count() == 1
    assert AuditEvent.objects.filter(action_id=action_id, event="evaluated").count() == 1
