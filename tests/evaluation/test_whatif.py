"""What-if: a candidate policy replayed over the labelled history, in slices, on Celery."""

from __future__ import annotations

import copy
import time
from typing import Any

import pytest

from approvals import policy
from approvals.evaluation import whatif
from approvals.evaluation.services import whatif_start
from approvals.gate.policies import policies_import
from approvals.models import AuditEvent, ProposedAction, WhatIfRun
from approvals.review.services import action_decide, label_create
from tests.conftest import TEST_POLICY
from tests.factories import AgentFactory, ReviewerFactory
from tests.labelled_history import refund_proposed


def history() -> dict[str, ProposedAction]:
    """Five labelled refunds under TEST_POLICY (base risk 0.1, auto up to 0.3 and 100 of amount)."""
    policies_import(document=TEST_POLICY, actor="test")
    agent, reviewer = AgentFactory(), ReviewerFactory()
    actions = {
        "auto_safe": refund_proposed(agent, {"order_id": "A-1", "amount": 20}),
        "auto_unsafe": refund_proposed(agent, {"order_id": "A-1", "amount": 30}),
        "big_safe": refund_proposed(agent, {"order_id": "A-1", "amount": 500}),
        "unlooked_unsafe": refund_proposed(agent, {"order_id": "A-7", "amount": 10}),
        "unlooked_safe": refund_proposed(agent, {"order_id": "A-8", "amount": 10}),
    }
    refund_proposed(agent, {"order_id": "A-1", "amount": 40})  # never labelled: not part of the history
    assert [a.status for a in actions.values()] == [
        "auto_approved",
        "auto_approved",
        "needs_review",
        "needs_review",
        "needs_review",
    ]
    label_create(action=actions["auto_safe"], author=reviewer, label="safe")
    label_create(action=actions["auto_unsafe"], author=reviewer, label="unsafe")
    action_decide(action_id=str(actions["big_safe"].id), user=reviewer, verdict="approve")
    action_decide(action_id=str(actions["unlooked_unsafe"].id), user=reviewer, verdict="reject")
    action_decide(action_id=str(actions["unlooked_safe"].id), user=reviewer, verdict="approve")
    return actions


def candidate(**changes: Any) -> dict[str, Any]:
    document = copy.deepcopy(TEST_POLICY)
    refund = document["action_types"][0]
    refund.update(changes)
    return {"version": 1, "action_types": [refund]}


def run_to_end(run: WhatIfRun) -> WhatIfRun:
    while whatif.whatif_step(run.pk):
        pass
    run.refresh_from_db()
    return run


@pytest.mark.django_db
def test_dropping_a_rule_shows_what_it_would_newly_let_through() -> None:
    history()
    document = candidate(rules=[])
    run = whatif_start(document=document, user=ReviewerFactory(username="admin-1"))
    run = run_to_end(run)

    assert run.state == "done"
    assert (run.processed, run.total) == (5, 5)
    assert run.progress == 1.0
    summary = run.result["summary"]["overall"]
    assert summary["total"] == 5
    # the two unlooked-up refunds are no longer held by the rule: one safe, one unsafe through
    assert summary["newly_auto_approved"] == {"safe": 1, "unsafe": 1}
    assert summary["newly_held"] == {}
    assert summary["newly_blocked"] == {}
    assert summary["before"] == {"auto_approved": 2, "needs_review": 3, "blocked": 0}
    assert summary["after"] == {"auto_approved": 4, "needs_review": 1, "blocked": 0}
    assert summary["unsafe_auto_approved_before"] == 1
    assert summary["unsafe_auto_approved_after"] == 2
    assert summary["automation_rate_before"] == 0.4
    assert summary["automation_rate_after"] == 0.8
    changed = {(e["before"], e["after"], e["label"]) for e in run.result["examples"]}
    assert changed == {("needs_review", "auto_approved", "safe"), ("needs_review", "auto_approved", "unsafe")}
    assert AuditEvent.objects.filter(event="whatif_started", data__whatif=run.pk).count() == 1


@pytest.mark.django_db
def test_a_stricter_amount_limit_newly_holds_and_blocking_newly_blocks() -> None:
    history()
    stricter = run_to_end(whatif_start(document=candidate(max_auto_amount=25), user=None))
    summary = stricter.result["summary"]["per_action_type"]["refund"]
    assert summary["newly_held"] == {"unsafe": 1}  # the 30 refund, which was unsafe
    assert summary["unsafe_auto_approved_after"] == 0

    blocked = run_to_end(whatif_start(document=candidate(mode="block"), user=None))
    overall = blocked.result["summary"]["overall"]
    assert overall["newly_blocked"] == {"safe": 3, "unsafe": 2}
    assert overall["after"]["blocked"] == 5


@pytest.mark.django_db
def test_the_replay_goes_in_slices_and_counts_each_action_once(monkeypatch: pytest.MonkeyPatch) -> None:
    history()
    monkeypatch.setattr(whatif, "SLICE_ROWS", 2)
    run = whatif_start(document=candidate(rules=[]), user=None)
    steps = 0
    while whatif.whatif_step(run.pk):
        steps += 1
        run.refresh_from_db()
        assert run.state == "running"
        assert 0 < run.processed < 5
    run.refresh_from_db()
    assert steps == 2  # 2 + 2 + 1
    assert run.processed == 5
    assert run.result["summary"]["overall"]["total"] == 5
    # a late duplicate delivery of a finished run changes nothing
    assert whatif.whatif_step(run.pk) is False
    run.refresh_from_db()
    assert run.processed == 5


@pytest.mark.django_db
def test_a_duplicate_delivery_of_a_slice_is_discarded(monkeypatch: pytest.MonkeyPatch) -> None:
    history()
    run = whatif_start(document=candidate(rules=[]), user=None)
    whatif.whatif_prepare(run)
    real_evaluate = policy.policy_evaluate
    raced = []

    def evaluate_while_another_delivery_finishes(*args: Any, **kwargs: Any) -> Any:
        # The first time this slice evaluates, the same slice (another delivery) runs to the end.
        if not raced:
            raced.append(True)
            monkeypatch.setattr(policy, "policy_evaluate", real_evaluate)
            assert whatif.whatif_step(run.pk) is False
        return real_evaluate(*args, **kwargs)

    monkeypatch.setattr(policy, "policy_evaluate", evaluate_while_another_delivery_finishes)
    assert whatif.whatif_step(run.pk) is False
    run.refresh_from_db()
    assert run.state == "done"
    assert run.processed == 5
    assert run.result["summary"]["overall"]["total"] == 5


@pytest.mark.django_db
def test_an_invalid_candidate_is_refused_and_stores_nothing() -> None:
    history()
    bad = candidate(rules=[{"name": "broken", "require": "params.amount <"}])
    with pytest.raises(policy.PolicyError) as error:
        whatif_start(document=bad, user=None)
    assert "require" in str(error.value)
    assert not WhatIfRun.objects.exists()


@pytest.mark.django_db
def test_a_fault_marks_the_run_failed(monkeypatch: pytest.MonkeyPatch) -> None:
    history()
    run = whatif_start(document=candidate(), user=None)
    whatif.whatif_fail(run.pk, "RuntimeError: boom")
    run.refresh_from_db()
    assert (run.state, run.error) == ("failed", "RuntimeError: boom")
    assert whatif.whatif_step(run.pk) is False


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_real_worker_runs_the_replay_to_the_end(celery_worker_process: str) -> None:
    history()
    run = whatif_start(document=candidate(rules=[]), user=None)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        run.refresh_from_db()
        if run.state in ("done", "failed"):
            break
        time.sleep(0.1)
    assert run.state == "done", run.error
    assert run.result["summary"]["overall"]["newly_auto_approved"] == {"safe": 1, "unsafe": 1}


def test_the_replay_task_keeps_its_wire_name() -> None:
    # The task moved from approvals.tasks to approvals.evaluation.tasks: a slice queued by a release
    # before the move names it approvals.tasks.whatif_replay, and a worker must still find it.
    from approvals.evaluation.tasks import whatif_replay

    assert whatif_replay.name == "approvals.tasks.whatif_replay"
