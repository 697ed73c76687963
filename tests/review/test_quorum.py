"""The two-person rule (contract §6.3): ``approvals_required: N`` per action type; a held action
needs approvals by N distinct reviewers, one rejection rejects it. Through the reviewer API on the
real database; the races are in test_quorum_races.py."""

from __future__ import annotations

import copy
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.utils import timezone
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from approvals.gate.policies import policies_import
from approvals.models import ActionType, Approval, AuditEvent, Decision, ProposedAction, RememberedApproval, Status
from tests.conftest import TEST_POLICY
from tests.factories import ReviewerFactory

pytestmark = pytest.mark.django_db

SESSION = "run-1"
HELD = {"action_type": "refund", "params": {"order_id": "A-9", "amount": 80}, "context": {"session_id": SESSION}}


def two_person_policy(required: int = 2) -> dict[str, Any]:
    document = copy.deepcopy(TEST_POLICY)
    document["action_types"][0]["approvals_required"] = required
    return document


@pytest.fixture
def two_people(db: None) -> int:
    return policies_import(document=two_person_policy(), actor="test")


def client_of(username: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=ReviewerFactory(username=username)).key}")
    return client


@pytest.fixture
def ann() -> APIClient:
    return client_of("ann")


@pytest.fixture
def bob() -> APIClient:
    return client_of("bob")


@pytest.fixture
def held(two_people: int, propose: Any) -> dict[str, Any]:
    action = propose(HELD).action
    assert (action["status"], action["approvals_required"]) == ("needs_review", 2)
    return action


def decide(client: APIClient, action: dict[str, Any], **body: Any) -> Any:
    return client.post(f"/api/v1/actions/{action['id']}/decision", body, format="json")


def test_one_approval_of_two_answers_200_and_the_action_stays_held(held: dict[str, Any], ann: APIClient) -> None:
    response = decide(ann, held, verdict="approve", reason="looks right")

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "needs_review"
    assert body["decision"] is None
    assert [a["by"] for a in body["approvals"]] == ["ann"]
    assert body["approvals_required"] == 2
    stored = ProposedAction.objects.get(pk=held["id"])
    assert (stored.approvals_count, stored.decided_at) == (1, None)
    partial = AuditEvent.objects.get(action_id=held["id"], event="approved_partially")
    assert (partial.from_status, partial.to_status, partial.actor) == ("needs_review", "needs_review", "user:ann")
    assert partial.data["approvals"] == 1
    assert partial.data["approvals_required"] == 2
    assert not AuditEvent.objects.filter(action_id=held["id"], event="decided").exists()


def test_the_same_reviewer_approving_twice_gets_409(held: dict[str, Any], ann: APIClient) -> None:
    assert decide(ann, held, verdict="approve").status_code == 200

    again = decide(ann, held, verdict="approve")

    assert again.status_code == 409
    assert "already approved" in again.json()["detail"]
    stored = ProposedAction.objects.get(pk=held["id"])
    assert (stored.status, stored.approvals_count, Approval.objects.filter(action=stored).count()) == (
        Status.NEEDS_REVIEW,
        1,
        1,
    )


def test_two_distinct_reviewers_approve_it(held: dict[str, Any], ann: APIClient, bob: APIClient) -> None:
    decide(ann, held, verdict="approve", reason="amount checked")

    response = decide(bob, held, verdict="approve", reason="customer verified")

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "approved"
    assert [a["by"] for a in body["approvals"]] == ["ann", "bob"]
    assert body["decision"]["by"] == "bob"
    assert body["decision"]["reason"] == "amount checked; customer verified"
    assert AuditEvent.objects.filter(action_id=held["id"], event="decided").count() == 1
    assert AuditEvent.objects.get(action_id=held["id"], event="decided").data["approvals"] == 2


def test_a_rejection_after_one_approval_rejects(held: dict[str, Any], ann: APIClient, bob: APIClient) -> None:
    decide(ann, held, verdict="approve")

    response = decide(bob, held, verdict="reject", reason="not this customer")

    body = response.json()
    assert (response.status_code, body["status"]) == (200, "rejected")
    assert [a["by"] for a in body["approvals"]] == ["ann"]  # what happened before the rejection stays
    assert body["approved_params"] is None
    assert body["approved_params_hash"] is None
    assert decide(ann, held, verdict="approve").status_code == 409


def test_a_later_approval_without_params_approves_the_edit(
    held: dict[str, Any], ann: APIClient, bob: APIClient
) -> None:
    decide(ann, held, verdict="approve", params={"order_id": "A-9", "amount": 50}, reason="capped at 50")

    body = decide(bob, held, verdict="approve").json()

    assert body["status"] == "approved"
    assert body["approved_params"] == {"order_id": "A-9", "amount": 50}
    assert {a.params_hash for a in Approval.objects.filter(action_id=held["id"])} == {body["approved_params_hash"]}
    assert AuditEvent.objects.get(action_id=held["id"], event="decided").data["params_edit"] == {
        "amount": {"old": 80, "new": 50}
    }


@pytest.mark.parametrize(
    "second", [{"params": {"order_id": "A-9", "amount": 60}}, {"params": {"order_id": "A-9", "amount": 80}}]
)
def test_a_later_approval_of_other_params_gets_409(
    held: dict[str, Any], ann: APIClient, bob: APIClient, second: dict[str, Any]
) -> None:
    decide(ann, held, verdict="approve", params={"order_id": "A-9", "amount": 50})

    response = decide(bob, held, verdict="approve", **second)

    assert response.status_code == 409
    assert "approved by ann with other params" in response.json()["detail"]
    stored = ProposedAction.objects.get(pk=held["id"])
    assert (stored.status, stored.approvals_count) == (Status.NEEDS_REVIEW, 1)


def test_an_edit_after_an_unedited_approval_gets_409(held: dict[str, Any], ann: APIClient, bob: APIClient) -> None:
    decide(ann, held, verdict="approve")

    response = decide(bob, held, verdict="approve", params={"order_id": "A-9", "amount": 10})

    assert response.status_code == 409
    assert ProposedAction.objects.get(pk=held["id"]).approvals_count == 1


def test_n_is_fixed_when_held_a_policy_change_mid_review_does_not_lower_it(
    held: dict[str, Any], ann: APIClient
) -> None:
    policies_import(document=two_person_policy(1), actor="test")
    assert ActionType.objects.get(name="refund").approvals_required == 1

    body = decide(ann, held, verdict="approve").json()

    assert (body["status"], body["approvals_required"]) == ("needs_review", 2)


def test_remember_minutes_is_refused_for_a_two_person_type(held: dict[str, Any], ann: APIClient) -> None:
    response = decide(ann, held, verdict="approve", remember_minutes=30)

    assert response.status_code == 400
    assert "never remembered" in response.json()["detail"]
    stored = ProposedAction.objects.get(pk=held["id"])
    assert (stored.approvals_count, RememberedApproval.objects.count()) == (0, 0)


def test_a_remembered_approval_never_covers_a_two_person_type(
    held: dict[str, Any], propose: Any, ann: APIClient
) -> None:
    # given a remembered approval of the session that would cover the next refund's failed checks
    source = ProposedAction.objects.get(pk=held["id"])
    RememberedApproval.objects.create(
        source_action=source,
        agent=source.agent,
        action_type=source.action_type,
        session_id=SESSION,
        failed=["order_was_looked_up", "amount"],
        reviewer=User.objects.get(username="ann"),
        expires_at=timezone.now() + timedelta(minutes=30),
    )

    # when the same agent proposes a similar refund in the same session
    again = propose({**HELD, "params": {"order_id": "A-10", "amount": 70}}).action

    # then it is held for two people all the same
    assert again["status"] == "needs_review"
    assert again["remembered_approval"] is None


def test_an_approval_with_an_edit_is_not_remembered(policy_v1: int, propose: Any, reviewer_client: Any) -> None:
    action = propose(HELD).action

    response = reviewer_client.post(
        f"/api/v1/actions/{action['id']}/decision",
        {"verdict": "approve", "params": {"order_id": "A-9", "amount": 5}, "remember_minutes": 30},
        format="json",
    )

    assert response.status_code == 400
    assert ProposedAction.objects.get(pk=action["id"]).status == Status.NEEDS_REVIEW
    assert not Decision.objects.filter(action_id=action["id"]).exists()


def test_approvals_required_is_parsed_with_its_place_and_bounded() -> None:
    from approvals import policy

    for bad in (0, 6, "2", True, 1.5):
        with pytest.raises(policy.PolicyError, match=r"action_types\[0\] \(refund\)\.approvals_required"):
            policy.parse_document(two_person_policy(bad))
    assert policy.parse_document(two_person_policy(3))[0].approvals_required == 3
    assert policy.parse_document(TEST_POLICY)[0].approvals_required == 1
