"""gate_client fitted to agent frameworks, against the real stack (uvicorn, a Celery worker,
PostgreSQL, Redis; a reviewer deciding through the API): refusals as values, the action seen by the
caller, per-call rationale and confidence, keys from the tool-call id (a crashed run re-run makes no
second action), resuming an undecided call from a serialised handle, and honest messages."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from typing import Any

import gate_client
import pytest

from approvals.models import ProposedAction
from tests.agents_stack import Stack, in_thread
from tests.conftest import LOOKED_UP, ROOT

pytestmark = [pytest.mark.worker, pytest.mark.server, pytest.mark.django_db(transaction=True)]


def test_a_refusal_comes_back_as_a_value_for_the_model_and_the_caller_sees_the_action(stack: Stack) -> None:
    calls: list[str] = []

    @gate_client.requires_approval(
        stack.gate, action_type="refund", trajectory=LOOKED_UP, timeout=30, on_refusal="return"
    )
    def refund(order_id: str, amount: float) -> dict[str, Any]:
        calls.append(order_id)
        return {"refund_id": "R-1"}

    assert refund.last_action is None
    ran = refund("A-1", 20)  # looked up: auto-approved, runs
    assert ran == {"refund_id": "R-1"}
    seen = refund.last_action
    assert seen is not None
    assert (seen.status, seen.decided_by) == ("auto_approved", "policy")
    assert seen.outcome is not None
    assert seen.outcome["executed"] is True

    thread, outcome = in_thread(lambda: (refund("A-9", 20), refund.last_action))  # never looked up: held
    held_id = stack.held_action_id()
    stack.decide(held_id, "reject", "")  # no reason given
    thread.join(20)
    refusal, action = outcome["value"]

    assert isinstance(refusal, gate_client.Refusal)
    assert not refusal
    assert calls == ["A-1"]
    assert action is not None
    assert (action.id, action.status, action.decided_by) == (held_id, "rejected", "lead")
    assert refusal.action_id == held_id
    # The reviewer gave no reason: the policy's findings are not passed off as one.
    assert refusal.reason == "rejected by lead (no reason given)"
    assert "order_was_looked_up" not in refusal.reason
    assert refusal.message.startswith('refund({"amount": 20, "order_id": "A-9"}) was rejected by a reviewer')
    assert "rejected by lead (no reason given). The policy's checks (not the reviewer's words): " in refusal.message
    assert "order_was_looked_up" in refusal.message
    assert "NOT carried out" in refusal.message
    assert ProposedAction.objects.get(pk=held_id).outcome_executed is None


def test_a_rejection_without_a_reason_raises_with_the_reviewer_named_and_the_checks_apart(stack: Stack) -> None:
    @gate_client.requires_approval(stack.gate, action_type="refund", timeout=30)
    def refund(order_id: str, amount: float) -> None:
        raise AssertionError("must not run")

    thread, outcome = in_thread(lambda: refund("A-9", 20))
    stack.decide(stack.held_action_id(), "reject")
    thread.join(20)
    error = outcome["error"]
    assert isinstance(error, gate_client.ActionRejected)
    assert error.reason == "rejected by lead (no reason given)"
    assert any(check.startswith("order_was_looked_up: ") for check in error.action.policy_checks)
    assert "The policy's checks (not the reviewer's words)" in str(error)


def test_rationale_confidence_and_the_key_are_computed_from_each_call_s_arguments(stack: Stack) -> None:
    @gate_client.requires_approval(
        stack.gate,
        action_type="refund",
        trajectory=LOOKED_UP,
        rationale=lambda order_id, amount: f"customer asked for {amount} back on {order_id}",
        confidence=lambda order_id, amount: 0.9 if amount < 50 else 0.4,
        idempotency_key=lambda order_id, amount: f"ticket-7/{order_id}/{amount}",
    )
    def refund(order_id: str, amount: float = 20) -> str:
        return "ok"

    assert refund("A-1") == "ok"
    first = refund.last_action
    assert first is not None
    stored = ProposedAction.objects.get(pk=first.id)
    assert (stored.rationale, stored.confidence, stored.idempotency_key) == (
        "customer asked for 20 back on A-1",
        0.9,
        "ticket-7/A-1/20",
    )
    # The same call again: the same key, the same action, already acted on: it does not run twice.
    with pytest.raises(gate_client.AlreadyExecuted):
        refund("A-1")
    assert ProposedAction.objects.count() == 1


CRASHING_AGENT = """
import sys, gate_client
gate = gate_client.Gate(sys.argv[1], sys.argv[2])

@gate_client.requires_approval(gate, action_type="refund", timeout=120)
def refund(order_id, amount):
    print("RAN", flush=True)

with gate_client.tool_call("call_7Qx"):
    refund("A-9", 20)
"""


def test_a_re_run_of_a_crashed_tool_call_finds_the_same_action_and_runs_once(stack: Stack) -> None:
    crashed = subprocess.Popen(
        [sys.executable, "-c", CRASHING_AGENT, stack.base_url, stack.agent.token],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        action_id = stack.held_action_id()  # proposed and waiting ...
    finally:
        crashed.kill()  # ... when the agent's process dies
    output, _ = crashed.communicate(timeout=10)
    assert "RAN" not in output
    assert ProposedAction.objects.get().idempotency_key == "tool-call/refund/call_7Qx"

    calls: list[tuple[str, float]] = []

    @gate_client.requires_approval(stack.gate, action_type="refund", timeout=30)
    def refund(order_id: str, amount: float) -> str:
        calls.append((order_id, amount))
        return "refunded"

    def rerun() -> tuple[Any, Any]:
        with gate_client.tool_call("call_7Qx"):
            return refund("A-9", 20), refund.last_action

    thread, outcome = in_thread(rerun)
    time.sleep(0.5)
    stack.decide(action_id, "approve", "fine")
    thread.join(20)
    result, action = outcome["value"]
    assert result == "refunded"
    assert action.id == action_id
    assert calls == [("A-9", 20)]
    assert ProposedAction.objects.count() == 1
    stored = ProposedAction.objects.get()
    assert (stored.status, stored.outcome_executed) == ("approved", True)


def test_an_undecided_call_is_handed_back_as_a_handle_and_resumed_once_with_the_edit(stack: Stack) -> None:
    calls: list[tuple[str, float]] = []

    def make_refund() -> gate_client.GatedFunction[Any, Any]:
        @gate_client.requires_approval(
            stack.gate, action_type="refund", timeout=1, cancel_on_timeout=False, on_refusal="return"
        )
        def refund(order_id: str, amount: float) -> str:
            calls.append((order_id, amount))
            return f"refunded {amount}"

        return refund

    pending = make_refund()("A-9", 50)
    assert isinstance(pending, gate_client.PendingAction)
    assert not pending
    assert "held for a human's review" in pending.message
    saved = pending.to_json()
    assert calls == []

    response = stack.reviewer.post(
        f"/api/v1/actions/{pending.action_id}/decision",
        json={"verdict": "approve", "params": {"order_id": "A-9", "amount": 30}, "reason": "partial"},
    )
    assert response.status_code == 200, response.text

    handle = gate_client.PendingAction.from_json(saved)
    assert handle == pending
    later = make_refund()  # as a new process would build it
    assert later.resume(handle) == "refunded 30"
    assert calls == [("A-9", 30)]
    with pytest.raises(gate_client.AlreadyExecuted):
        later.resume(handle)
    assert calls == [("A-9", 30)]
    stored = ProposedAction.objects.get()
    assert (stored.status, stored.outcome_executed) == ("approved", True)
    resumed = stack.gate.resume(handle)  # the plain client: the action as it stands, outcome included
    assert resumed.outcome is not None
    assert (resumed.status, resumed.outcome["executed"]) == ("approved", True)
    with pytest.raises(ValueError, match="not a gate_client PendingAction"):
        gate_client.PendingAction.from_json(json.dumps({"action_id": "x"}))


def test_timeouts_say_what_really_happened(stack: Stack) -> None:
    @gate_client.requires_approval(stack.gate, action_type="refund", timeout=1)
    def withdrawn(order_id: str, amount: float) -> None:
        raise AssertionError("must not run")

    with pytest.raises(gate_client.ApprovalTimeout) as cancelled:
        withdrawn("A-9", 20)
    message = str(cancelled.value)
    assert "still undecided after 1s and was withdrawn (cancelled)" in message
    assert "still cancelled" not in message
    assert cancelled.value.cancelled
    assert cancelled.value.pending is None

    @gate_client.requires_approval(stack.gate, action_type="refund", timeout=1, cancel_on_timeout=False)
    def kept(order_id: str, amount: float) -> None:
        raise AssertionError("must not run")

    with pytest.raises(gate_client.ApprovalTimeout) as still:
        kept("A-8", 20)
    assert "is still needs_review after 1s; it may still be decided" in str(still.value)
    assert not still.value.cancelled
    assert still.value.pending is not None
    assert still.value.pending.action_id == still.value.action.id
    statuses = dict(ProposedAction.objects.values_list("params__order_id", "status"))
    assert statuses == {"A-9": "cancelled", "A-8": "needs_review"}


def test_the_async_decorator_returns_refusals_and_resumes(stack: Stack) -> None:
    async def scenario() -> tuple[Any, Any, Any]:
        async with gate_client.AsyncGate(stack.base_url, stack.agent.token) as gate:

            @gate_client.requires_approval(
                gate, action_type="refund", timeout=1, cancel_on_timeout=False, on_refusal="return"
            )
            async def refund(order_id: str, amount: float) -> str:
                return f"refunded {amount} on {order_id}"

            blocked = await refund("A-1", -5)
            pending = await refund("A-9", 20)
            assert isinstance(pending, gate_client.PendingAction)
            await asyncio.to_thread(stack.decide, pending.action_id, "approve", "ok")
            return blocked, pending, await refund.resume(pending, timeout=10)

    blocked, pending, resumed = asyncio.run(scenario())
    assert isinstance(blocked, gate_client.Refusal)
    assert blocked.status == "blocked"
    assert "was blocked by the policy" in blocked.message
    assert "params_schema" in blocked.message
    assert resumed == "refunded 20 on A-9"
    assert ProposedAction.objects.get(pk=pending.action_id).outcome_executed is True
