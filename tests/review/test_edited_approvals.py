"""Edit, then approve (contract §6.3): a reviewer's params, checked against the type's schema,
become the action's ``approved_params`` with their hash; the reason goes back to the agent; the
audit log shows the edit. Through the reviewer API against the real database."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest
from django.test import Client

from approvals.gate.params import params_hash
from approvals.models import Approval, AuditEvent, OutboxEvent, ProposedAction, Status
from tests.factories import ReviewerFactory

pytestmark = pytest.mark.django_db

HELD = {"action_type": "refund", "params": {"order_id": "A-9", "amount": 80}}  # A-9 never looked up: held


def canonical_hash(params: Any) -> str:
    """The contract's words, written out: SHA-256 hex of the JSON with sorted keys and no spaces."""
    return hashlib.sha256(json.dumps(params, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


@pytest.fixture
def held(policy_v1: int, propose: Any) -> dict[str, Any]:
    action = propose(HELD).action
    assert action["status"] == "needs_review"
    return action


def decide(client: Any, action: dict[str, Any], body: dict[str, Any]) -> Any:
    return client.post(f"/api/v1/actions/{action['id']}/decision", body, format="json")


def test_an_edited_approval_gives_the_agent_the_approved_params_their_hash_and_the_reason(
    held: dict[str, Any], reviewer_client: Any, agent_client: Any
) -> None:
    # when
    response = decide(
        reviewer_client,
        held,
        {"verdict": "approve", "params": {"order_id": "A-9", "amount": 50}, "reason": "policy caps this at 50"},
    )

    # then
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["status"] == "approved"
    assert body["params"] == {"order_id": "A-9", "amount": 80}  # the proposal as it was
    assert body["approved_params"] == {"order_id": "A-9", "amount": 50}
    assert body["approved_params_hash"] == canonical_hash({"amount": 50, "order_id": "A-9"})
    assert body["decision"]["reason"] == "policy caps this at 50"
    assert body["approvals"] == [{"by": "lead", "at": body["approvals"][0]["at"]}]
    assert body["approvals_required"] == 1
    # the agent reads the same (GET and ?wait=)
    seen = agent_client.get(f"/api/v1/actions/{held['id']}?wait=1").json()
    assert (seen["approved_params"], seen["approved_params_hash"]) == (
        body["approved_params"],
        body["approved_params_hash"],
    )
    # the audit log shows the edit
    decided = AuditEvent.objects.get(action_id=held["id"], event="decided")
    assert decided.data["params_edit"] == {"amount": {"old": 80, "new": 50}}
    assert decided.data["approved_params_hash"] == body["approved_params_hash"]
    assert decided.data["reason"] == "policy caps this at 50"


def test_the_one_hash_function_is_the_proposals_too(held: dict[str, Any]) -> None:
    stored = ProposedAction.objects.get(pk=held["id"])
    assert stored.params_hash == params_hash({"amount": 80, "order_id": "A-9"}) == canonical_hash(stored.params)


@pytest.mark.parametrize(
    ("params", "problem"),
    [
        ({"order_id": "A-9", "amount": -5}, "/amount"),
        ({"order_id": "A-9"}, "amount"),
        ({"order_id": 9, "amount": 5}, "/order_id"),
    ],
)
def test_params_that_fail_the_schema_are_refused_and_nothing_changes(
    held: dict[str, Any], reviewer_client: Any, params: dict[str, Any], problem: str
) -> None:
    audit_before = AuditEvent.objects.filter(action_id=held["id"]).count()

    response = decide(reviewer_client, held, {"verdict": "approve", "params": params})

    assert response.status_code == 400
    body = response.json()
    assert "schema" in body["detail"]
    assert problem in body["detail"]
    assert body["params"]
    assert all({"path", "message"} <= set(p) for p in body["params"])
    stored = ProposedAction.objects.get(pk=held["id"])
    assert (stored.status, stored.approved_params, stored.approved_params_hash, stored.approvals_count) == (
        Status.NEEDS_REVIEW,
        None,
        "",
        0,
    )
    assert not Approval.objects.filter(action=stored).exists()
    assert AuditEvent.objects.filter(action_id=held["id"]).count() == audit_before


@pytest.mark.parametrize(
    "body",
    [
        {"verdict": "reject", "params": {"order_id": "A-9", "amount": 5}},
        {"verdict": "approve", "params": ["not", "an", "object"]},
        {"verdict": "approve", "params": "amount=5"},
    ],
)
def test_params_go_with_an_approval_only_and_as_an_object(
    held: dict[str, Any], reviewer_client: Any, body: dict[str, Any]
) -> None:
    response = decide(reviewer_client, held, body)

    assert response.status_code == 400, response.content
    assert ProposedAction.objects.get(pk=held["id"]).status == Status.NEEDS_REVIEW
    assert not OutboxEvent.objects.filter(action_id=held["id"]).exclude(event="evaluated").exists()


@pytest.mark.parametrize("params", [None, {"amount": 80, "order_id": "A-9"}])
def test_not_edited_has_null_approved_params_and_the_proposals_hash(
    held: dict[str, Any], reviewer_client: Any, params: dict[str, Any] | None
) -> None:
    body: dict[str, Any] = {"verdict": "approve", "reason": "fine"}
    if params is not None:
        body["params"] = params  # equal to the proposed ones, keys in another order: not an edit

    answer = decide(reviewer_client, held, body).json()

    assert answer["status"] == "approved"
    assert answer["approved_params"] is None
    assert answer["approved_params_hash"] == canonical_hash(HELD["params"])
    assert "params_edit" not in AuditEvent.objects.get(action_id=held["id"], event="decided").data


def test_a_rejection_has_no_approved_params(held: dict[str, Any], reviewer_client: Any) -> None:
    answer = decide(reviewer_client, held, {"verdict": "reject", "reason": "no"}).json()

    assert answer["status"] == "rejected"
    assert (answer["approved_params"], answer["approved_params_hash"], answer["approvals"]) == (None, None, [])
    assert answer["decision"]["reason"] == "no"


def test_an_auto_approved_action_shows_the_proposals_hash(policy_v1: int, propose: Any) -> None:
    from tests.conftest import LOOKED_UP

    action = propose({"action_type": "refund", "params": {"order_id": "A-1", "amount": 20}, "trajectory": LOOKED_UP})

    assert action.action["status"] == "auto_approved"
    assert action.action["approved_params"] is None
    assert action.action["approved_params_hash"] == canonical_hash({"order_id": "A-1", "amount": 20})
    assert (action.action["approvals"], action.action["approvals_required"]) == ([], 1)


def test_the_desk_form_approves_the_fields_as_edited(held: dict[str, Any]) -> None:
    desk = Client()
    desk.force_login(ReviewerFactory(username="desk"))

    page = desk.get(f"/review/{held['id']}")
    assert b'name="param:amount" value="80" data-original="80"' in page.content

    response = desk.post(
        f"/review/{held['id']}/decide",
        {"verdict": "approve", "edit": "1", "reason": "capped", "param:order_id": "A-9", "param:amount": "40"},
    )

    assert response.status_code == 302
    stored = ProposedAction.objects.get(pk=held["id"])
    assert (stored.status, stored.approved_params) == (Status.APPROVED, {"order_id": "A-9", "amount": 40})
    assert stored.decision.reason == "capped"
    shown = desk.get(f"/review/{held['id']}").content.decode()
    assert "Approved with an edit" in shown
    assert "<del>80</del> → <ins>40</ins>" in shown


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"param:amount": "forty"}, "amount: must be a number"),  # does not read as its type
        ({"param:amount": "-5"}, "amount: -5 is less than the minimum of 0"),  # reads, but the schema refuses it
    ],
)
def test_a_refused_edit_shows_the_form_again_as_typed_and_changes_nothing(
    held: dict[str, Any], fields: dict[str, str], named: str
) -> None:
    desk = Client()
    desk.force_login(ReviewerFactory(username="desk"))

    response = desk.post(
        f"/review/{held['id']}/decide",
        {"verdict": "approve", "edit": "1", "reason": "capped", "param:order_id": "A-9", **fields},
    )

    assert response.status_code == 400
    page = response.content.decode()
    assert named in page
    assert f'value="{fields["param:amount"]}" data-original="80"' in page
    assert 'value="capped"' in page
    stored = ProposedAction.objects.get(pk=held["id"])
    assert (stored.status, stored.approved_params, stored.approvals_count) == (Status.NEEDS_REVIEW, None, 0)


def test_the_decided_webhook_carries_the_edit_and_the_approvals(policy_v1: int, agent: Any, reviewer: Any) -> None:
    from approvals.gate.services import action_evaluate, action_propose, request_fingerprint
    from approvals.models import ActionType, WebhookDelivery
    from approvals.review.services import action_decide

    url = "https://hooks.example.com/gate"
    action, _ = action_propose(
        agent=agent,
        action_type=ActionType.objects.get(name="refund"),
        params=HELD["params"],
        fingerprint=request_fingerprint({**HELD, "callback_url": url}),
        callback_url=url,
    )
    action_evaluate(action_id=str(action.pk))

    action_decide(
        action_id=str(action.pk),
        user=reviewer,
        verdict="approve",
        params={"order_id": "A-9", "amount": 50},
        reason="capped",
    )

    sent = json.loads(WebhookDelivery.objects.get(action=action, event="action.decided").body)
    assert sent["approved_params"] == {"order_id": "A-9", "amount": 50}
    assert sent["approved_params_hash"] == canonical_hash({"order_id": "A-9", "amount": 50})
    assert [a["by"] for a in sent["approvals"]] == ["lead"]
    assert sent["decision"]["reason"] == "capped"
