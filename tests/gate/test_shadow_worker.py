"""Shadow mode through the broker: a real `celery worker` process decides with the live policy,
answers the waiting agent, then records the shadow's decision; a shadow that fails leaves the live
decision and the worker as they were."""

from __future__ import annotations

import copy
import time
from typing import Any

import pytest
from rest_framework.test import APIClient

from approvals.gate.policies import policies_import
from approvals.gate.shadow import shadow_policy_import
from approvals.models import AuditEvent, ShadowPolicy, ShadowResult
from escalation_app.celery import app as celery_app
from tests.conftest import LOOKED_UP, TEST_POLICY
from tests.factories import AgentFactory

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def agent_client(celery_worker_process: str) -> APIClient:
    policies_import(document=TEST_POLICY, actor="test")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {AgentFactory().token}")
    return client


def _propose(client: APIClient, amount: float) -> dict[str, Any]:
    """Propose and wait for the live decision (long: a busy machine can starve a niced worker)."""
    body = {"action_type": "refund", "params": {"order_id": "A-1", "amount": amount}, "trajectory": LOOKED_UP}
    response = client.post("/api/v1/actions?wait=20", body, format="json")
    assert response.status_code == 201, response.content
    return response.json()


def _shadow_result(action_id: str, timeout: float = 20.0) -> ShadowResult:
    """The shadow's decision is recorded after the live one is announced: wait for it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = ShadowResult.objects.filter(action_id=action_id).first()
        if found is not None:
            return found
        time.sleep(0.05)
    raise AssertionError(f"no shadow result for {action_id} within {timeout} s")


def test_the_worker_decides_live_and_records_the_shadow_beside_it(
    agent_client: APIClient, celery_worker_process: str
) -> None:
    refund = copy.deepcopy(TEST_POLICY["action_types"][0])
    shadow_policy_import(document={"version": 1, "action_types": [{**refund, "max_auto_amount": 200}]}, actor="test")

    held = _propose(agent_client, 150)
    through = _propose(agent_client, 20)

    assert (held["status"], through["status"]) == ("needs_review", "auto_approved")
    assert (_shadow_result(held["id"]).status, _shadow_result(held["id"]).live_status) == (
        "auto_approved",
        "needs_review",
    )
    assert _shadow_result(through["id"]).status == "auto_approved"
    assert list(AuditEvent.objects.filter(action_id=held["id"]).values_list("event", flat=True)) == [
        "proposed",
        "evaluated",
    ]


def test_a_failing_shadow_leaves_the_live_decision_and_the_worker_alone(
    agent_client: APIClient, celery_worker_process: str
) -> None:
    # a stored shadow whose document no longer parses: the worker raises when it compiles it
    ShadowPolicy.objects.create(
        version=1, document={"version": 1, "action_types": [{"name": "refund", "mode": "sometimes"}]}, active=True
    )

    first = _propose(agent_client, 20)
    second = _propose(agent_client, 150)

    assert (first["status"], second["status"]) == ("auto_approved", "needs_review")
    for action in (first, second):
        result = _shadow_result(action["id"])
        assert (result.status, result.live_status) == ("error", action["status"])
        assert result.error.startswith("PolicyError")
    assert celery_app.control.ping(destination=[celery_worker_process], timeout=2)
