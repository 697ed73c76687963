"""An outcome's ``params_hash`` (contract §6.3): compared with the approved hash; a mismatch is
stored, shown in the representation's ``outcome`` and audited."""

from __future__ import annotations

from typing import Any

import pytest

from approvals.gate.params import params_hash
from approvals.models import AuditEvent, ProposedAction
from tests.conftest import LOOKED_UP

pytestmark = pytest.mark.django_db

AUTO = {"action_type": "refund", "params": {"order_id": "A-1", "amount": 20}, "trajectory": LOOKED_UP}
HELD = {"action_type": "refund", "params": {"order_id": "A-9", "amount": 80}}


def outcome(client: Any, action: dict[str, Any], body: dict[str, Any]) -> Any:
    return client.post(f"/api/v1/actions/{action['id']}/outcome", body, format="json")


@pytest.fixture
def edited(policy_v1: int, propose: Any, reviewer_client: Any) -> dict[str, Any]:
    action = propose(HELD).action
    response = reviewer_client.post(
        f"/api/v1/actions/{action['id']}/decision",
        {"verdict": "approve", "params": {"order_id": "A-9", "amount": 50}, "reason": "capped"},
        format="json",
    )
    assert response.status_code == 200
    return response.json()


def test_the_executed_params_hash_matching_the_edit_is_no_mismatch(edited: dict[str, Any], agent_client: Any) -> None:
    sent = params_hash({"order_id": "A-9", "amount": 50})

    response = outcome(agent_client, edited, {"executed": True, "params_hash": sent})

    assert response.status_code == 200
    assert response.json()["outcome"]["params_hash"] == sent
    assert response.json()["outcome"]["params_mismatch"] is False
    event = AuditEvent.objects.get(action_id=edited["id"], event="outcome_reported")
    assert event.data["params_mismatch"] is False


def test_the_proposed_params_after_an_edit_are_a_mismatch_stored_shown_and_audited(
    edited: dict[str, Any], agent_client: Any
) -> None:
    proposed = params_hash(HELD["params"])

    response = outcome(agent_client, edited, {"executed": True, "result": {"ok": 1}, "params_hash": proposed})

    assert response.status_code == 200
    assert response.json()["outcome"]["params_mismatch"] is True
    stored = ProposedAction.objects.get(pk=edited["id"])
    assert (stored.params_mismatch, stored.outcome_params_hash) == (True, proposed)
    event = AuditEvent.objects.get(action_id=edited["id"], event="outcome_reported")
    assert event.data["params_mismatch"] is True
    assert event.data["params_hash"] == proposed
    assert event.data["approved_params_hash"] == edited["approved_params_hash"]


def test_an_auto_approved_action_is_compared_with_its_proposed_params(
    policy_v1: int, propose: Any, agent_client: Any
) -> None:
    action = propose(AUTO).action

    matching = outcome(agent_client, action, {"executed": True, "params_hash": params_hash(AUTO["params"])})

    assert matching.json()["outcome"]["params_mismatch"] is False


@pytest.mark.parametrize("bad", ["abc", "G" * 64, 42, "A" * 64])
def test_a_params_hash_that_is_not_sha256_hex_is_refused(
    policy_v1: int, propose: Any, agent_client: Any, bad: Any
) -> None:
    action = propose(AUTO).action

    response = outcome(agent_client, action, {"executed": True, "params_hash": bad})

    assert response.status_code == 400
    assert "params_hash" in response.json()
    assert ProposedAction.objects.get(pk=action["id"]).outcome_at is None


def test_without_a_hash_nothing_is_compared(edited: dict[str, Any], agent_client: Any) -> None:
    body = outcome(agent_client, edited, {"executed": True}).json()

    assert (body["outcome"]["params_hash"], body["outcome"]["params_mismatch"]) == (None, None)
    assert "params_mismatch" not in AuditEvent.objects.get(action_id=edited["id"], event="outcome_reported").data
