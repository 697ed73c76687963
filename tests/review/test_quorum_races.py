"""The two-person rule under concurrent requests on the real PostgreSQL: real threads, real commits,
real row locks (as tests/lifecycle/test_races.py). Races decide once."""

from __future__ import annotations

import copy
from collections import Counter
from typing import Any

import pytest
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from approvals.gate.policies import policies_import
from approvals.models import ActionType, Approval, AuditEvent, Decision, ProposedAction, Status
from tests.conftest import TEST_POLICY
from tests.factories import AgentFactory, ProposedActionFactory, ReviewerFactory
from tests.lifecycle.test_races import post, reviewer_client, run_together

pytestmark = pytest.mark.django_db(transaction=True)

ROUNDS = 6


@pytest.fixture
def two_people(db: None) -> ActionType:
    document = copy.deepcopy(TEST_POLICY)
    document["action_types"][0]["approvals_required"] = 2
    policies_import(document=document, actor="test")
    return ActionType.objects.get(name="refund")


def held(action_type: ActionType, agent: Any) -> ProposedAction:
    return ProposedActionFactory(
        agent=agent,
        action_type=action_type,
        params={"order_id": "A-9", "amount": 80},
        status=Status.NEEDS_REVIEW,
        approvals_required=2,
    )


def consistent(action: ProposedAction) -> None:
    """The count on the row is the number of approvals, and the audit log agrees with the status."""
    action.refresh_from_db()
    approvals = Approval.objects.filter(action=action).count()
    assert action.approvals_count == approvals
    decided = AuditEvent.objects.filter(action=action, event="decided").count()
    partial = AuditEvent.objects.filter(action=action, event="approved_partially").count()
    if action.status == Status.APPROVED:
        assert (approvals, decided, partial) == (2, 1, 1)
        assert Decision.objects.get(action=action).verdict == "approve"
    elif action.status == Status.REJECTED:
        assert approvals <= 1
        assert decided == 1
        assert partial == approvals
        assert Decision.objects.get(action=action).verdict == "reject"
    else:
        raise AssertionError(f"not decided: {action.status}")


def test_two_approvals_at_once_both_count_and_approve_it_once(two_people: ActionType) -> None:
    agent = AgentFactory(name="racer")
    ann, bob = reviewer_client(ReviewerFactory(username="ann")), reviewer_client(ReviewerFactory(username="bob"))
    for _ in range(ROUNDS):
        # given
        action = held(two_people, agent)
        url = f"/api/v1/actions/{action.id}/decision"

        # when
        results = run_together(
            lambda url=url: post(ann, url, {"verdict": "approve"}),
            lambda url=url: post(bob, url, {"verdict": "approve"}),
        )

        # then both count, once each, and the action is approved exactly once
        assert [code for code, _ in results] == [200, 200], results
        assert sorted(body["status"] for _, body in results) == ["approved", "needs_review"]
        action.refresh_from_db()
        assert action.status == Status.APPROVED
        assert sorted(Approval.objects.filter(action=action).values_list("reviewer__username", flat=True)) == [
            "ann",
            "bob",
        ]
        assert AuditEvent.objects.filter(action=action, event="decided").count() == 1
        consistent(action)


def test_the_same_reviewer_approving_twice_at_once_counts_once(two_people: ActionType) -> None:
    agent = AgentFactory(name="racer")
    user = ReviewerFactory(username="ann")
    first = reviewer_client(user)
    second = APIClient()  # the same reviewer's token, a second browser tab
    second.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.get(user=user).key}")
    for _ in range(ROUNDS):
        action = held(two_people, agent)
        url = f"/api/v1/actions/{action.id}/decision"

        results = run_together(
            lambda url=url: post(first, url, {"verdict": "approve"}),
            lambda url=url: post(second, url, {"verdict": "approve"}),
        )

        assert sorted(code for code, _ in results) == [200, 409], results
        action.refresh_from_db()
        assert (action.status, action.approvals_count) == (Status.NEEDS_REVIEW, 1)
        assert Approval.objects.filter(action=action).count() == 1


def test_a_rejection_racing_the_second_approval_gives_one_final_outcome(two_people: ActionType) -> None:
    agent = AgentFactory(name="racer")
    ann, bob, cat = (reviewer_client(ReviewerFactory(username=name)) for name in ("ann", "bob", "cat"))
    outcomes: Counter[str] = Counter()
    for _ in range(ROUNDS):
        # given one approval of two
        action = held(two_people, agent)
        url = f"/api/v1/actions/{action.id}/decision"
        assert post(ann, url, {"verdict": "approve"})[0] == 200

        # when the second approval and a rejection arrive at once
        (approve_code, approved), (reject_code, rejected) = run_together(
            lambda url=url: post(bob, url, {"verdict": "approve"}),
            lambda url=url: post(cat, url, {"verdict": "reject", "reason": "no"}),
        )

        # then exactly one decides, and the rows agree with it
        assert sorted([approve_code, reject_code]) == [200, 409], (approved, rejected)
        action.refresh_from_db()
        outcomes[action.status] += 1
        winner = approved if approve_code == 200 else rejected
        assert winner["status"] == action.status
        assert [a["by"] for a in winner["approvals"]] == (["ann", "bob"] if action.status == "approved" else ["ann"])
        consistent(action)
    assert sum(outcomes.values()) == ROUNDS


def test_edits_racing_each_other_leave_one_set_of_params_under_approval(two_people: ActionType) -> None:
    agent = AgentFactory(name="racer")
    ann, bob = reviewer_client(ReviewerFactory(username="ann")), reviewer_client(ReviewerFactory(username="bob"))
    for _ in range(ROUNDS):
        action = held(two_people, agent)
        url = f"/api/v1/actions/{action.id}/decision"

        results = run_together(
            lambda url=url: post(ann, url, {"verdict": "approve", "params": {"order_id": "A-9", "amount": 50}}),
            lambda url=url: post(bob, url, {"verdict": "approve", "params": {"order_id": "A-9", "amount": 60}}),
        )

        # the first edit holds; the other is told to approve those or reject
        assert sorted(code for code, _ in results) == [200, 409], results
        action.refresh_from_db()
        assert (action.status, action.approvals_count) == (Status.NEEDS_REVIEW, 1)
        approval = Approval.objects.get(action=action)
        assert approval.params_hash == action.approved_params_hash
        assert action.approved_params in ({"order_id": "A-9", "amount": 50}, {"order_id": "A-9", "amount": 60})


def test_the_queue_shows_a_partly_approved_action_with_its_approvals(two_people: ActionType) -> None:
    """The queue lists a partly approved action with its approvals (the representation reads them)."""
    action = held(two_people, AgentFactory(name="racer"))
    ann = reviewer_client(ReviewerFactory(username="ann"))
    post(ann, f"/api/v1/actions/{action.id}/decision", {"verdict": "approve"})

    queue = ann.get("/api/v1/review/queue").json()

    [item] = [item for item in queue["results"] if item["id"] == str(action.id)]
    assert ([a["by"] for a in item["approvals"]], item["approvals_required"]) == (["ann"], 2)
