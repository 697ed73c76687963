"""History aggregates and the search for the same effect already approved (contract §6.1), in SQL
against PostgreSQL: windows and their edges, matches on params, context and the agent, statuses,
sums that skip what is not a number, and the built-in repeat_of_executed."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from approvals import policy
from approvals.evidence.history import executed_repeat, history_values
from approvals.gate.selectors import action_for_evaluation
from approvals.models import ProposedAction, Status
from tests.factories import ActionTypeFactory, AgentFactory, ProposedActionFactory

pytestmark = pytest.mark.django_db


def compiled(history: list[dict[str, Any]], **fields: Any) -> Any:
    spec = policy.parse_action_type(
        {"name": "refund", "params_schema": {"type": "object"}, "history": history, **fields}
    )
    return policy.compile_policy(spec, 1)


def proposal(params: dict[str, Any], **fields: Any) -> policy.Proposal:
    return policy.Proposal(
        sample_key="k",
        action_type="refund",
        params=params,
        confidence=None,
        context=fields.pop("context", {}),
        agent={"name": fields.pop("agent_name", "bot")},
        trajectory=[],
        now=timezone.now(),
        **fields,
    )


def stored(params: dict[str, Any], *, status: str = Status.AUTO_APPROVED, minutes_ago: float = 1, **fields: Any) -> Any:
    action = ProposedActionFactory(
        action_type=fields.pop("action_type", None) or ActionTypeFactory(name="refund"),
        params=params,
        status=status,
        **fields,
    )
    ProposedAction.objects.filter(pk=action.pk).update(created_at=timezone.now() - timedelta(minutes=minutes_ago))
    return action


PER_CUSTOMER = {
    "name": "refunded_today",
    "window_minutes": 1440,
    "match": {"params.customer_id": "params.customer_id"},
    "aggregate": "sum",
    "path": "params.amount",
}
COUNT = {"name": "refunds_today", "window_minutes": 1440, "match": {"params.customer_id": "params.customer_id"}}


def values(history: list[dict[str, Any]], params: dict[str, Any], **fields: Any) -> tuple[dict, list, dict]:
    return history_values(compiled(history), proposal(params, **fields), action_id=None, now=timezone.now())


def test_count_and_sum_over_a_customer_in_the_window() -> None:
    stored({"customer_id": "C-1", "amount": 30})
    stored({"customer_id": "C-1", "amount": 20.5}, status=Status.APPROVED)
    stored({"customer_id": "C-1", "amount": 99}, status=Status.REJECTED)  # not a default status
    stored({"customer_id": "C-1", "amount": 99}, minutes_ago=1441)  # out of the window
    stored({"customer_id": "C-2", "amount": 99})  # another customer
    found, failed, record = values([PER_CUSTOMER, COUNT], {"customer_id": "C-1", "amount": 10})
    assert found == {"refunded_today": 50.5, "refunds_today": 2}
    assert failed == []
    assert record["refunds_today"] == {"value": 2, "matched": {"params.customer_id": "C-1"}}


def test_actions_reported_not_executed_do_not_count() -> None:
    stored({"customer_id": "C-1", "amount": 30})
    refused = stored({"customer_id": "C-1", "amount": 70})
    ProposedAction.objects.filter(pk=refused.pk).update(outcome_executed=False, outcome_at=timezone.now())
    assert values([PER_CUSTOMER, COUNT], {"customer_id": "C-1"})[0] == {"refunded_today": 30.0, "refunds_today": 1}


def test_the_window_edge() -> None:
    stored({"customer_id": "C-1", "amount": 1}, minutes_ago=59.9)
    stored({"customer_id": "C-1", "amount": 1}, minutes_ago=60.1)
    hour = {**COUNT, "window_minutes": 60}
    assert values([hour], {"customer_id": "C-1"})[0] == {"refunds_today": 1}


def test_sum_skips_values_that_are_not_numbers() -> None:
    stored({"customer_id": "C-1", "amount": 40})
    stored({"customer_id": "C-1", "amount": "40"})
    stored({"customer_id": "C-1", "amount": {"value": 40}})
    stored({"customer_id": "C-1"})
    assert values([PER_CUSTOMER], {"customer_id": "C-1"})[0] == {"refunded_today": 40.0}


def test_statuses_other_types_context_and_agent_matches() -> None:
    agent = AgentFactory(name="bot")
    stored({"customer_id": "C-1"}, status=Status.REJECTED, agent=agent, context={"session_id": "s-1"})
    stored({"customer_id": "C-1"}, status=Status.BLOCKED, context={"session_id": "s-1"})
    stored({"customer_id": "C-1"}, action_type=ActionTypeFactory(name="cancel_order"), agent=agent)
    refused = {
        "name": "refused_in_session",
        "window_minutes": 60,
        "statuses": ["rejected", "blocked"],
        "match": {"context.session_id": "context.session_id", "agent.name": "agent.name"},
    }
    cancels = {"name": "cancels", "window_minutes": 60, "action_type": "cancel_order", "match": COUNT["match"]}
    found, _, _ = values([refused, cancels], {"customer_id": "C-1"}, context={"session_id": "s-1"})
    assert found == {"refused_in_session": 1, "cancels": 1}


def test_the_action_itself_is_not_counted() -> None:
    own = stored({"customer_id": "C-1"}, status=Status.PENDING)
    pending = {**COUNT, "statuses": ["pending"]}
    found, _, _ = history_values(
        compiled([pending]), proposal({"customer_id": "C-1"}), action_id=own.pk, now=timezone.now()
    )
    assert found == {"refunds_today": 0}


def test_a_match_that_fails_is_an_error_finding() -> None:
    broken = {**COUNT, "match": {"params.customer_id": "params.customer.id"}}
    found, failed, record = values([broken], {"customer_id": "C-1"})
    assert found == {"refunds_today": None}
    assert [(f["rule"], f["outcome"], f["effect"]) for f in failed] == [("history:refunds_today", "error", "review")]
    assert "error" in record["refunds_today"]


def test_history_is_a_cel_variable_of_rules() -> None:
    stored({"customer_id": "C-1", "amount": 30})
    stored({"customer_id": "C-1", "amount": 30})
    policy_ = compiled([COUNT], rules=[{"name": "at_most_2_a_day", "require": "history.refunds_today < 2"}])
    found, _, _ = history_values(policy_, proposal({"customer_id": "C-1"}), action_id=None, now=timezone.now())
    decision = policy.policy_evaluate(policy_, proposal({"customer_id": "C-1"}, history=found))
    assert decision.status == policy.NEEDS_REVIEW
    assert [f["rule"] for f in decision.findings if f["outcome"] == "fail"] == ["at_most_2_a_day"]


# --- repeat_of_executed: the gate's own history -----------------------------------------------


def pending(agent: Any, params: dict[str, Any], **fields: Any) -> Any:
    return stored(params, status=Status.PENDING, agent=agent, minutes_ago=0, **fields)


def found(action: Any, identity_params: tuple[str, ...] | None = None) -> dict[str, str] | None:
    """What an evaluation of ``action`` finds: by equal params in its one-statement load, by
    identity params in a second statement."""
    loaded = action_for_evaluation(str(action.pk), now=timezone.now())
    assert loaded is not None
    return executed_repeat(
        loaded.action, identity_params, now=timezone.now(), found_by_params=loaded.executed_repeat_of
    )


def test_the_same_effect_approved_in_the_session_is_found() -> None:
    agent = AgentFactory()
    session = {"session_id": "s-1"}
    done = stored({"order_id": "A-1", "amount": 20}, agent=agent, context=session)
    assert found(pending(agent, {"order_id": "A-1", "amount": 20}, context=session)) == {
        "id": str(done.pk),
        "status": Status.AUTO_APPROVED,
    }
    # another session, another agent, other params: not the same effect
    assert found(pending(agent, {"order_id": "A-1", "amount": 20}, context={"session_id": "s-2"})) is None
    assert found(pending(AgentFactory(), {"order_id": "A-1", "amount": 20}, context=session)) is None
    assert found(pending(agent, {"order_id": "A-1", "amount": 21}, context=session)) is None


def test_identity_params_decide_what_the_same_effect_is() -> None:
    agent = AgentFactory()
    stored({"order_id": "A-1", "amount": 20, "note": "first"}, agent=agent)
    assert found(pending(agent, {"order_id": "A-1", "amount": 25, "note": "again"}), ("order_id",)) is not None
    assert found(pending(agent, {"order_id": "A-1", "amount": 25, "note": "again"}), ("order_id", "amount")) is None
    assert found(pending(agent, {"order_id": "A-1", "amount": 25}), None) is None


def test_an_approval_reported_failed_or_refused_is_no_repeat() -> None:
    agent = AgentFactory()
    failed = stored({"order_id": "A-1"}, agent=agent, status=Status.APPROVED)
    ProposedAction.objects.filter(pk=failed.pk).update(outcome_executed=False, outcome_at=timezone.now())
    stored({"order_id": "A-1"}, agent=agent, status=Status.REJECTED)
    assert found(pending(agent, {"order_id": "A-1"})) is None
    assert found(pending(agent, {"order_id": "A-1"}), ("order_id",)) is None
    ProposedAction.objects.filter(pk=failed.pk).update(outcome_executed=True)
    assert found(pending(agent, {"order_id": "A-1"})) is not None
    assert found(pending(agent, {"order_id": "A-1"}), ("order_id",)) is not None


def test_without_a_session_the_last_24_hours_count() -> None:
    agent = AgentFactory()
    stored({"order_id": "A-1"}, agent=agent, minutes_ago=24 * 60 + 1)
    assert found(pending(agent, {"order_id": "A-1"})) is None
    stored({"order_id": "A-1"}, agent=agent, minutes_ago=23 * 60)
    assert found(pending(agent, {"order_id": "A-1"})) is not None
    assert found(pending(agent, {"order_id": "A-1"}, context={"session_id": ""})) is not None  # empty: none
