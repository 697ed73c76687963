"""The action as returned carries the decision's reason and its labels (issue: rejection reasons
reach the agent)."""

from __future__ import annotations

from typing import Any

import pytest

from approvals.models import ProposedAction
from approvals.review.services import action_decide, label_create
from tests.conftest import LOOKED_UP
from tests.factories import ReviewerFactory

pytestmark = pytest.mark.django_db

HELD = {"action_type": "refund", "params": {"order_id": "A-9", "amount": 20}, "trajectory": LOOKED_UP}


def test_reason_and_labels_reach_the_agent_newest_label_first(policy_v1: int, propose: Any, agent_client: Any) -> None:
    action = propose(HELD).action
    assert action["labels"] == []
    lead = ReviewerFactory(username="lead")
    action_decide(action_id=action["id"], user=lead, verdict="reject", reason="never looked up")
    stored = ProposedAction.objects.get(pk=action["id"])
    label_create(action=stored, author=lead, label="unsafe", tags=["no-lookup"], note="first look")
    label_create(action=stored, author=lead, label="safe", note="customer had called")

    shown = agent_client.get(action["url"]).json()
    assert shown["decision"]["reason"] == "never looked up"
    assert [(label["label"], label["by"], label["note"]) for label in shown["labels"]] == [
        ("safe", "lead", "customer had called"),
        ("unsafe", "lead", "first look"),
    ]
    assert shown["labels"][1]["tags"] == ["no-lookup"]
    assert shown["labels"][0]["at"].endswith("Z")


def test_the_queue_reads_labels_in_a_bounded_number_of_queries(
    policy_v1: int, propose: Any, reviewer_client: Any, django_assert_max_num_queries: Any
) -> None:
    lead = ReviewerFactory(username="lead2")
    for n in range(6):
        action = propose({**HELD, "params": {"order_id": f"A-9{n}", "amount": 20}}).action
        label_create(action=ProposedAction.objects.get(pk=action["id"]), author=lead, label="unsafe")
    with django_assert_max_num_queries(8):
        page = reviewer_client.get("/api/v1/review/queue").json()
    assert len(page["results"]) == 6
    assert all(row["labels"][0]["label"] == "unsafe" for row in page["results"])
