"""On the real stack: a `celery worker` process fetches a lookup from an HTTP service of record on
loopback before the rules run, stores what it saw with the action, and holds what it could not check;
the reviewer's page shows it beside the agent's trajectory."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from rest_framework.test import APIClient

from approvals.gate.policies import policies_import
from approvals.models import ProposedAction
from tests.evidence.records import Records
from tests.factories import AgentFactory, ReviewerFactory

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


def policy_with_lookup(base_url: str) -> dict[str, Any]:
    return {
        "version": 1,
        "action_types": [
            {
                "name": "refund",
                "params_schema": {"type": "object", "required": ["order_id", "amount"]},
                "lookups": [{"name": "order", "url": base_url + "/orders/{params.order_id}", "timeout_ms": 2000}],
                "rules": [
                    {"name": "refundable", "require": "lookups.order.refundable == true"},
                    {"name": "within_the_total", "require": "params.amount <= lookups.order.total"},
                ],
            }
        ],
    }


def test_a_worker_evaluates_with_a_lookup_against_a_local_service(celery_worker_process: str, records: Records) -> None:
    policies_import(document=policy_with_lookup(records.url), actor="test")
    agent = APIClient()
    agent.credentials(HTTP_AUTHORIZATION=f"Bearer {AgentFactory().token}")

    def propose(params: dict[str, Any]) -> dict[str, Any]:
        response = agent.post("/api/v1/actions?wait=10", {"action_type": "refund", "params": params}, format="json")
        assert response.status_code == 201, response.content
        return response.json()

    # the agent says nothing about the order; the gate looks it up itself
    approved = propose({"order_id": "A-1", "amount": 20})
    too_much = propose({"order_id": "A-1", "amount": 500})
    unknown = propose({"order_id": "Z-404", "amount": 5})

    assert approved["status"] == "auto_approved"
    assert too_much["status"] == "needs_review"
    assert [f["rule"] for f in too_much["findings"] if f["outcome"] == "fail"] == ["within_the_total"]
    assert unknown["status"] == "needs_review"  # never approved on missing evidence
    lookup_error = next(f for f in unknown["findings"] if f["rule"] == "lookup:order")
    assert (lookup_error["outcome"], lookup_error["error"]) == ("error", "answered HTTP 404")
    assert sorted(records.paths()) == ["/orders/A-1", "/orders/A-1", "/orders/Z-404"]

    stored = ProposedAction.objects.get(pk=approved["id"]).evidence["lookups"]["order"]
    assert stored["status"] == 200
    assert stored["body"] == records.orders["A-1"]

    reviewer = Client()
    reviewer.force_login(ReviewerFactory())
    page = reviewer.get(f"/review/{too_much['id']}").content.decode()
    assert "What the gate saw itself" in page
    assert f"{records.url}/orders/A-1" in page
    assert "Trajectory: what the agent said" in page
