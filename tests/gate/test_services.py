"""Every state change of the gate, through the services directly, against the real database."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.db import DatabaseError
from django.utils import timezone

from approvals.errors import ActionConflict, IdempotencyConflict, ServiceError
from approvals.evaluation.figures import evaluation_summary
from approvals.evaluation.selectors import ground_truth
from approvals.gate import selectors as gate_selectors
from approvals.gate.agents import agent_authenticate, agent_create, agent_may_propose, agent_rotate_token, token_hash
from approvals.gate.policies import policies_import
from approvals.gate.selectors import compiled_policy_for
from approvals.gate.services import (
    action_cancel,
    action_evaluate,
    action_hold_for_review,
    action_propose,
    action_requeue_stale,
    request_fingerprint,
)
from approvals.gate.tasks import evaluate_action, sweep_pending_actions
from approvals.models import ActionType, Agent, AuditEvent, Decision, Label, ProposedAction, Status
from approvals.policy import normalize_trajectory
from approvals.review.services import action_decide, label_create
from tests.conftest import LOOKED_UP, TEST_POLICY
from tests.factories import AgentFactory, ProposedActionFactory, ReviewerFactory

pytestmark = pytest.mark.django_db

GOOD_REFUND = {"order_id": "A-1", "amount": 20}


def propose(
    agent: Agent,
    type_name: str = "refund",
    params: Any = None,
    *,
    trajectory: Any = LOOKED_UP,
    key: str | None = None,
) -> tuple[ProposedAction, bool]:
    params = GOOD_REFUND if params is None else params
    body = {"action_type": type_name, "params": params, "trajectory": trajectory}
    return action_propose(
        agent=agent,
        action_type=ActionType.objects.get(name=type_name),
        params=params,
        fingerprint=request_fingerprint(body),
        trajectory_raw=trajectory,
        idempotency_key=key,
    )


def pending(agent: Agent, type_name: str = "refund", params: Any = None, **kwargs: Any) -> ProposedAction:
    """A proposed action whose queued evaluation has not run (this test's transaction never commits)."""
    action, created = propose(agent, type_name, params, **kwargs)
    assert created
    assert action.status == Status.PENDING
    return action


def evaluated(agent: Agent, type_name: str = "refund", params: Any = None, **kwargs: Any) -> ProposedAction:
    action = pending(agent, type_name, params, **kwargs)
    action_evaluate(action_id=str(action.id))
    action.refresh_from_db()
    return action


def events(action: ProposedAction, event: str | None = None) -> list[AuditEvent]:
    queryset = AuditEvent.objects.filter(action=action)
    if event:
        queryset = queryset.filter(event=event)
    return list(queryset)


def transitions(action: ProposedAction) -> list[tuple[str, str, str, str]]:
    return [(e.event, e.actor, e.from_status, e.to_status) for e in events(action)]


@pytest.fixture
def held(policy_v1, agent) -> ProposedAction:
    action = evaluated(agent, params={"order_id": "A-1", "amount": 500})
    assert action.status == Status.NEEDS_REVIEW
    return action


# --- proposing ----------------------------------------------------------------------------------------


def test_propose_stores_a_pending_action_with_an_audit_event(policy_v1, agent):
    action = pending(agent)

    assert action.params == GOOD_REFUND
    assert action.trajectory_raw == LOOKED_UP
    assert action.trajectory == normalize_trajectory(LOOKED_UP)
    assert action.evaluation_attempts == 0
    assert transitions(action) == [("proposed", "agent:support-bot", "", "pending")]


def test_propose_queues_the_evaluation_on_commit(policy_v1, agent, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        action = pending(agent)

    assert callbacks
    action.refresh_from_db()
    assert action.status == Status.AUTO_APPROVED


def test_propose_replay_returns_the_stored_action(policy_v1, agent):
    first, created = propose(agent, key="k")
    again, created_again = propose(agent, key="k")

    assert (created, created_again) == (True, False)
    assert again.pk == first.pk
    assert ProposedAction.objects.count() == 1
    assert len(events(first, "proposed")) == 1


def test_propose_same_key_other_body_conflicts(policy_v1, agent):
    first, _ = propose(agent, key="k")

    with pytest.raises(IdempotencyConflict):
        propose(agent, params={"order_id": "A-1", "amount": 21}, key="k")

    assert list(ProposedAction.objects.all()) == [first]


def test_fingerprint_leaves_the_key_out_and_ignores_key_order():
    assert request_fingerprint({"a": 1, "b": {"x": 1, "y": 2}, "idempotency_key": "k"}) == (
        request_fingerprint({"b": {"y": 2, "x": 1}, "a": 1})
    )
    assert request_fingerprint({"a": 1}) != request_fingerprint({"a": 2})


# --- evaluating: pending -> auto_approved | blocked | needs_review --------------------------------------


def test_evaluate_to_auto_approved(policy_v1, agent):
    # when
    action = evaluated(agent)

    # then
    assert action.status == Status.AUTO_APPROVED
    assert action.risk_score == pytest.approx(0.1)
    assert action.policy_version == policy_v1
    assert action.evaluated_at is not None
    assert action.decided_at == action.evaluated_at
    assert action.evaluation_attempts == 1
    decision = Decision.objects.get(action=action)
    assert (decision.verdict, decision.by_policy, decision.by, decision.reviewer) == ("approve", True, "policy", None)
    assert transitions(action)[-1] == ("evaluated", "policy", "pending", "auto_approved")
    assert events(action, "evaluated")[0].data["policy_version"] == policy_v1


def test_evaluate_to_blocked_by_mode(policy_v1, agent):
    action = evaluated(agent, "delete_account", {"customer_id": "C-1"})

    assert action.status == Status.BLOCKED
    assert action.decided_at is not None
    decision = Decision.objects.get(action=action)
    assert (decision.verdict, decision.by_policy) == ("reject", True)
    assert "mode" in decision.reason
    assert transitions(action)[-1] == ("evaluated", "policy", "pending", "blocked")


def test_evaluate_to_blocked_by_schema(policy_v1, agent):
    action = evaluated(agent, params={"order_id": "A-1", "amount": "twenty"})

    assert action.status == Status.BLOCKED
    assert [f["path"] for f in action.findings if f["rule"] == "params_schema"] == ["/amount"]
    assert Decision.objects.get(action=action).verdict == "reject"


def test_evaluate_to_needs_review_sets_deadlines(policy_v1, agent):
    # given
    before = timezone.now()

    # when
    action = evaluated(agent, trajectory=None)

    # then
    assert action.status == Status.NEEDS_REVIEW
    assert action.decided_at is None
    assert not Decision.objects.filter(action=action).exists()
    assert action.sla_deadline - action.evaluated_at == timedelta(minutes=30)
    assert action.expires_at - action.evaluated_at == timedelta(minutes=1440)
    assert action.evaluated_at >= before
    assert transitions(action)[-1] == ("evaluated", "policy", "pending", "needs_review")


def test_evaluate_uses_the_current_policy_version(policy_v1, agent):
    # given a stricter policy imported after the action was proposed
    action = pending(agent)
    stricter = {
        **TEST_POLICY,
        "action_types": [{**TEST_POLICY["action_types"][0], "max_auto_amount": 10}],
    }
    version = policies_import(document=stricter, actor="test")

    # when
    action_evaluate(action_id=str(action.id))

    # then
    action.refresh_from_db()
    assert version == policy_v1 + 1
    assert action.policy_version == version
    assert action.status == Status.NEEDS_REVIEW


def test_evaluate_twice_decides_once(policy_v1, agent):
    # given
    action = pending(agent)

    # when
    action_evaluate(action_id=str(action.id))
    action_evaluate(action_id=str(action.id))

    # then
    action.refresh_from_db()
    assert action.status == Status.AUTO_APPROVED
    assert action.evaluation_attempts == 1
    assert Decision.objects.filter(action=action).count() == 1
    assert len(events(action, "evaluated")) == 1


@pytest.mark.parametrize("status", [s for s in Status.values if s != "pending"])
def test_evaluate_a_non_pending_action_does_nothing(policy_v1, status):
    # given
    action = ProposedActionFactory(action_type=ActionType.objects.get(name="refund"), status=status, params=GOOD_REFUND)

    # when
    returned = action_evaluate(action_id=str(action.id))

    # then
    assert returned is not None
    assert returned.status == status
    action.refresh_from_db()
    assert action.status == status
    assert action.evaluation_attempts == 0
    assert action.evaluated_at is None
    assert not events(action)
    assert not Decision.objects.filter(action=action).exists()


def test_evaluate_an_unknown_action_returns_none(policy_v1):
    assert action_evaluate(action_id="00000000-0000-0000-0000-000000000000") is None


def test_evaluation_loses_to_a_change_made_meanwhile(policy_v1, agent, monkeypatch):
    # given an action that the agent cancels while its evaluation is running
    action = pending(agent)
    real = compiled_policy_for

    def compile_while_the_agent_cancels(action_type: ActionType) -> Any:
        action_cancel(action_id=str(action.id), agent=agent)
        return real(action_type)

    monkeypatch.setattr(gate_selectors, "compiled_policy_for", compile_while_the_agent_cancels)

    # when
    action_evaluate(action_id=str(action.id))

    # then the guarded update leaves the cancel standing
    action.refresh_from_db()
    assert action.status == Status.CANCELLED
    assert action.evaluated_at is None
    assert not Decision.objects.filter(action=action).exists()
    assert not events(action, "evaluated")


# --- evaluating: faults ----------------------------------------------------------------------------------


def assert_held_for_evaluation_error(action: ProposedAction) -> dict[str, Any]:
    action.refresh_from_db()
    assert action.status == Status.NEEDS_REVIEW
    assert not Decision.objects.filter(action=action).exists()
    [finding] = action.findings
    assert (finding["rule"], finding["outcome"], finding["effect"]) == ("evaluation", "error", "review")
    assert finding["message"]
    return finding


def test_attempts_exhausted_holds_for_review(policy_v1, agent, settings):
    # given an action whose evaluation already ran (and died) as often as allowed
    settings.GATE_MAX_EVALUATION_ATTEMPTS = 2
    action = pending(agent)
    ProposedAction.objects.filter(pk=action.pk).update(evaluation_attempts=2)

    # when
    action_evaluate(action_id=str(action.id))

    # then it is held, never auto-approved, though its params would pass
    finding = assert_held_for_evaluation_error(action)
    assert "2 attempts" in finding["error"]
    assert transitions(action)[-1] == ("evaluated", "system", "pending", "needs_review")


def test_attempt_below_the_limit_is_evaluated(policy_v1, agent, settings):
    settings.GATE_MAX_EVALUATION_ATTEMPTS = 2
    action = pending(agent)
    ProposedAction.objects.filter(pk=action.pk).update(evaluation_attempts=1)

    action_evaluate(action_id=str(action.id))

    action.refresh_from_db()
    assert action.status == Status.AUTO_APPROVED
    assert action.evaluation_attempts == 2


def test_exception_inside_evaluation_holds_for_review(policy_v1, agent, monkeypatch):
    # given a gate fault
    def broken(action_type: ActionType) -> Any:
        raise RuntimeError("compiler exploded")

    monkeypatch.setattr(gate_selectors, "compiled_policy_for", broken)
    action = pending(agent)

    # when
    action_evaluate(action_id=str(action.id))

    # then
    finding = assert_held_for_evaluation_error(action)
    assert finding["error"] == "RuntimeError: compiler exploded"
    assert action.policy_version == policy_v1
    assert action.sla_deadline is not None
    assert transitions(action)[-1] == ("evaluated", "policy", "pending", "needs_review")


def test_exception_inside_evaluation_never_auto_approves_a_blocked_type(policy_v1, agent, monkeypatch):
    monkeypatch.setattr(gate_selectors, "compiled_policy_for", lambda action_type: 1 / 0)
    action = pending(agent, "delete_account", {})

    action_evaluate(action_id=str(action.id))

    assert_held_for_evaluation_error(action)


def test_database_error_propagates_and_leaves_the_action_pending(policy_v1, agent, monkeypatch):
    # given
    def db_down(action_type: ActionType) -> Any:
        raise DatabaseError("connection lost")

    monkeypatch.setattr(gate_selectors, "compiled_policy_for", db_down)
    action = pending(agent)

    # when / then
    with pytest.raises(DatabaseError):
        action_evaluate(action_id=str(action.id))
    action.refresh_from_db()
    assert action.status == Status.PENDING
    assert action.evaluation_attempts == 1
    assert not events(action, "evaluated")


def test_task_retries_a_database_error_until_the_attempts_run_out(policy_v1, agent, monkeypatch, settings):
    # given a database fault on every attempt (the eager task runs its retries in place)
    settings.GATE_MAX_EVALUATION_ATTEMPTS = 3
    calls: list[str] = []

    def db_down(action_type: ActionType) -> Any:
        calls.append(action_type.name)
        raise DatabaseError("connection lost")

    monkeypatch.setattr(gate_selectors, "compiled_policy_for", db_down)
    action = pending(agent)

    # when
    evaluate_action.apply(args=[str(action.id)])

    # then three attempts failed, and the fourth held it for a person
    assert len(calls) == 3
    finding = assert_held_for_evaluation_error(action)
    assert "3 attempts" in finding["error"]
    assert action.evaluation_attempts == 4


def test_task_evaluates(policy_v1, agent):
    action = pending(agent)

    evaluate_action.apply(args=[str(action.id)])

    action.refresh_from_db()
    assert action.status == Status.AUTO_APPROVED


# --- holding and sweeping ------------------------------------------------------------------------------


def test_hold_for_review(policy_v1, agent):
    action = pending(agent)

    assert action_hold_for_review(action_id=str(action.id), error="worker died") is True

    finding = assert_held_for_evaluation_error(action)
    assert finding["error"] == "worker died"
    assert transitions(action)[-1] == ("evaluated", "system", "pending", "needs_review")


def test_hold_for_review_of_a_decided_action_does_nothing(policy_v1, agent):
    action = evaluated(agent)

    assert action_hold_for_review(action_id=str(action.id), error="late") is False

    action.refresh_from_db()
    assert action.status == Status.AUTO_APPROVED


def test_requeue_stale(policy_v1, agent, settings, django_capture_on_commit_callbacks):
    # given
    settings.GATE_MAX_EVALUATION_ATTEMPTS = 3
    old = timezone.now() - timedelta(minutes=5)
    stale = pending(agent)
    exhausted = pending(agent)
    fresh = pending(agent)
    ProposedAction.objects.filter(pk__in=[stale.pk, exhausted.pk]).update(created_at=old)
    ProposedAction.objects.filter(pk=exhausted.pk).update(evaluation_attempts=3)
    old_held = ProposedActionFactory(
        agent=agent, action_type=ActionType.objects.get(name="refund"), status=Status.NEEDS_REVIEW
    )
    ProposedAction.objects.filter(pk=old_held.pk).update(created_at=old)

    # when
    with django_capture_on_commit_callbacks(execute=True):
        result = action_requeue_stale(older_than=timedelta(minutes=1))

    # then
    assert result == {"requeued": 1, "held": 1}
    stale.refresh_from_db()
    assert stale.status == Status.AUTO_APPROVED
    assert_held_for_evaluation_error(exhausted)
    fresh.refresh_from_db()
    assert fresh.status == Status.PENDING
    old_held.refresh_from_db()
    assert old_held.status == Status.NEEDS_REVIEW
    assert not events(old_held)


def test_sweep_task(policy_v1, agent, settings, django_capture_on_commit_callbacks):
    settings.GATE_PENDING_SWEEP_AFTER_SECONDS = 0
    action = pending(agent)
    ProposedAction.objects.filter(pk=action.pk).update(created_at=timezone.now() - timedelta(seconds=5))

    with django_capture_on_commit_callbacks(execute=True):
        result = sweep_pending_actions()

    assert result == {"requeued": 1, "held": 0}
    action.refresh_from_db()
    assert action.status == Status.AUTO_APPROVED


# --- reviewers: needs_review -> approved | rejected ----------------------------------------------------


@pytest.mark.parametrize(("verdict", "status"), [("approve", "approved"), ("reject", "rejected")])
def test_decide(held, reviewer, verdict, status):
    # when
    action = action_decide(action_id=str(held.id), user=reviewer, verdict=verdict, reason="looked at it")

    # then
    assert action.status == status
    held.refresh_from_db()
    assert held.status == status
    assert held.decided_at is not None
    decision = Decision.objects.get(action=held)
    assert (decision.verdict, decision.by_policy, decision.reviewer, decision.by) == (verdict, False, reviewer, "lead")
    assert decision.reason == "looked at it"
    [event] = events(held, "decided")
    assert (event.actor, event.from_status, event.to_status) == ("user:lead", "needs_review", status)
    expected = {"verdict": verdict, "reason": "looked at it"}
    if verdict == "approve":  # contract §6.3: the approvals and the hash of the params approved (the proposed ones)
        expected |= {"approvals": 1, "approvals_required": 1, "approved_params_hash": held.params_hash}
    assert event.data == expected


def test_decide_with_an_unknown_verdict(held, reviewer):
    with pytest.raises(ServiceError):
        action_decide(action_id=str(held.id), user=reviewer, verdict="maybe")

    held.refresh_from_db()
    assert held.status == Status.NEEDS_REVIEW
    assert not events(held, "decided")


@pytest.mark.parametrize("status", [s for s in Status.values if s != "needs_review"])
def test_decide_an_action_not_needing_review_conflicts(policy_v1, reviewer, status):
    action = ProposedActionFactory(action_type=ActionType.objects.get(name="refund"), status=status)

    with pytest.raises(ActionConflict):
        action_decide(action_id=str(action.id), user=reviewer, verdict="approve")

    action.refresh_from_db()
    assert action.status == status
    assert not events(action)


def test_second_decision_conflicts(held, reviewer):
    action_decide(action_id=str(held.id), user=reviewer, verdict="reject")

    with pytest.raises(ActionConflict):
        action_decide(action_id=str(held.id), user=ReviewerFactory(), verdict="approve")

    held.refresh_from_db()
    assert held.status == Status.REJECTED
    assert Decision.objects.filter(action=held).count() == 1


# --- agents: pending | needs_review -> cancelled ------------------------------------------------------


def test_cancel_pending(policy_v1, agent):
    action = pending(agent)

    cancelled = action_cancel(action_id=str(action.id), agent=agent)

    assert cancelled.status == Status.CANCELLED
    action.refresh_from_db()
    assert action.status == Status.CANCELLED
    assert not Decision.objects.filter(action=action).exists()
    assert transitions(action)[-1] == ("cancelled", "agent:support-bot", "pending", "cancelled")


def test_cancel_needs_review(held, agent):
    action_cancel(action_id=str(held.id), agent=agent)

    held.refresh_from_db()
    assert held.status == Status.CANCELLED
    assert transitions(held)[-1] == ("cancelled", "agent:support-bot", "needs_review", "cancelled")


def test_cancelled_action_cannot_be_decided(held, agent, reviewer):
    action_cancel(action_id=str(held.id), agent=agent)

    with pytest.raises(ActionConflict):
        action_decide(action_id=str(held.id), user=reviewer, verdict="approve")


@pytest.mark.parametrize("status", [s for s in Status.values if s not in ("pending", "needs_review")])
def test_cancel_a_final_action_conflicts(policy_v1, agent, status):
    action = ProposedActionFactory(agent=agent, action_type=ActionType.objects.get(name="refund"), status=status)

    with pytest.raises(ActionConflict):
        action_cancel(action_id=str(action.id), agent=agent)

    action.refresh_from_db()
    assert action.status == status
    assert not events(action)


def test_cancel_another_agents_action(held):
    with pytest.raises(ProposedAction.DoesNotExist):
        action_cancel(action_id=str(held.id), agent=AgentFactory())

    held.refresh_from_db()
    assert held.status == Status.NEEDS_REVIEW


# --- labels and ground truth ------------------------------------------------------------------------------


def test_label_history_is_kept_and_the_latest_wins(policy_v1, agent, reviewer):
    # given
    action = evaluated(agent)
    other = ReviewerFactory(username="second-opinion")

    # when
    first = label_create(action=action, author=reviewer, label="unsafe", tags=["fraud"], note="hmm")
    assert ground_truth(action) == "unsafe"
    latest = label_create(action=action, author=other, label="safe")

    # then
    assert list(action.labels.all()) == [latest, first]
    assert (first.label, first.tags, first.note, first.author) == ("unsafe", ["fraud"], "hmm", reviewer)
    assert (latest.tags, latest.note) == ([], "")
    assert ground_truth(action) == "safe"
    assert evaluation_summary()["unsafe_auto_approved"] == 0
    labelled = events(action, "labelled")
    assert [(e.actor, e.from_status, e.to_status, e.data["label"]) for e in labelled] == [
        ("user:lead", "auto_approved", "auto_approved", "unsafe"),
        ("user:second-opinion", "auto_approved", "auto_approved", "safe"),
    ]
    action.refresh_from_db()
    assert action.status == Status.AUTO_APPROVED


def test_ground_truth_falls_back_to_the_reviewers_decision(policy_v1, agent, reviewer):
    # given
    approved = evaluated(agent, trajectory=None)
    rejected = evaluated(agent, trajectory=None)
    action_decide(action_id=str(approved.id), user=reviewer, verdict="approve")
    action_decide(action_id=str(rejected.id), user=reviewer, verdict="reject")
    approved.refresh_from_db()
    rejected.refresh_from_db()
    auto = evaluated(agent)

    # then
    assert ground_truth(approved) == "safe"
    assert ground_truth(rejected) == "unsafe"
    assert ground_truth(auto) is None

    # and an explicit label overrides the decision
    label_create(action=rejected, author=reviewer, label="safe")
    assert ground_truth(rejected) == "safe"
    assert Label.objects.filter(action=rejected).count() == 1


# --- agents -------------------------------------------------------------------------------------------


def test_agent_create_stores_only_a_hash(policy_v1):
    agent, token = agent_create(name="bot", action_types=["refund"])

    assert agent.token_hash == token_hash(token)
    assert token not in (agent.token_hash, agent.token_prefix)
    assert agent_authenticate(token) == agent
    assert agent_authenticate(token + "x") is None
    assert not agent.all_action_types
    assert agent_may_propose(agent, ActionType.objects.get(name="refund"))
    assert not agent_may_propose(agent, ActionType.objects.get(name="escalate_ticket"))
    assert AuditEvent.objects.filter(event="agent_created", data__agent="bot").exists()


def test_agent_create_with_an_unknown_type_changes_nothing(policy_v1):
    with pytest.raises(ServiceError, match="no_such_type"):
        agent_create(name="bot", action_types=["refund", "no_such_type"])

    assert not Agent.objects.filter(name="bot").exists()


def test_rotated_token_without_grace_replaces_the_old_one(policy_v1):
    # Rotation with a grace period, revocation: tests/gate/test_agent_tokens.py.
    agent, old = agent_create(name="bot")

    new = agent_rotate_token(agent=agent, actor="test", grace_minutes=0)

    assert agent_authenticate(old) is None
    assert agent_authenticate(new) == agent


# --- built-in check: repeats of refused proposals -----------------------------------------------


def test_repeat_of_a_rejected_proposal_is_held_for_review(policy_v1, agent, reviewer):
    # given: a held refund that a reviewer rejected
    first = evaluated(agent, params={"order_id": "A-1", "amount": 500})
    action_decide(action_id=str(first.id), user=reviewer, verdict="reject")

    # when: the agent proposes the identical refund again, and a different one
    again = evaluated(agent, params={"order_id": "A-1", "amount": 500})
    other = evaluated(agent, params={"order_id": "A-1", "amount": 20})

    # then: only the identical one is held, and its finding names the refused proposal
    found = {f["rule"]: f for f in again.findings}
    assert again.status == Status.NEEDS_REVIEW
    assert found["repeat_of_refused"]["outcome"] == "fail"
    assert found["repeat_of_refused"]["repeat_of"] == str(first.id)
    assert other.status == Status.AUTO_APPROVED


def test_a_repeat_is_the_same_params_whatever_their_key_order(policy_v1, agent, reviewer):
    # given: a rejected refund, and the same params sent again with their keys in another order
    first = evaluated(agent, params={"order_id": "A-1", "amount": 500, "reason": "broken"})
    action_decide(action_id=str(first.id), user=reviewer, verdict="reject")
    reordered = evaluated(agent, params={"reason": "broken", "amount": 500, "order_id": "A-1"})

    # then: one check, on the params' canonical hash, finds the refused one (PostgreSQL and SQLite alike)
    assert reordered.params_hash == first.params_hash
    found = {f["rule"]: f for f in reordered.findings}
    assert found["repeat_of_refused"]["outcome"] == "fail"
    assert found["repeat_of_refused"]["repeat_of"] == str(first.id)


def test_repeat_of_a_blocked_proposal_by_another_agent_or_older_than_a_day_is_not_held(policy_v1, agent):
    blocked = evaluated(agent, params={"order_id": "A-1", "amount": "lots"})
    assert blocked.status == Status.BLOCKED
    ProposedAction.objects.filter(pk=blocked.pk).update(created_at=timezone.now() - timedelta(hours=25))
    stranger = AgentFactory()
    blocked_by_stranger = evaluated(stranger, params={"order_id": "A-1", "amount": 20}, trajectory=[])
    ProposedAction.objects.filter(pk=blocked_by_stranger.pk).update(status=Status.BLOCKED)

    fresh = evaluated(agent, params={"order_id": "A-1", "amount": "lots"})
    mine = evaluated(agent, params={"order_id": "A-1", "amount": 20})

    assert {f["rule"]: f["outcome"] for f in fresh.findings}.get("repeat_of_refused") is None  # schema blocked first
    assert {f["rule"]: f["outcome"] for f in mine.findings}["repeat_of_refused"] == "pass"
    assert mine.status == Status.AUTO_APPROVED
