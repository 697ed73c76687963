"""gate_client with a reviewer's edit (contract §6.3), against the real stack: uvicorn serving the
ASGI app, a real Celery worker evaluating, PostgreSQL and Redis; the reviewer deciding through the
API. The decorated function runs with the approved params and reports their hash."""

from __future__ import annotations

import asyncio
from typing import Any

import gate_client
import pytest

from approvals.gate.params import params_hash
from approvals.models import ProposedAction
from tests.agents_stack import Stack, in_thread

pytestmark = [pytest.mark.worker, pytest.mark.server, pytest.mark.django_db(transaction=True)]


def approve_edited(stack: Stack, action_id: str, params: dict[str, Any], reason: str) -> None:
    response = stack.reviewer.post(
        f"/api/v1/actions/{action_id}/decision", json={"verdict": "approve", "params": params, "reason": reason}
    )
    assert response.status_code == 200, response.text


def test_the_decorated_function_runs_with_the_approved_params_and_reports_their_hash(stack: Stack) -> None:
    calls: list[dict[str, Any]] = []

    @gate_client.requires_approval(stack.gate, action_type="refund", timeout=30)
    def refund(order_id: str, amount: float, note: str = "") -> dict[str, Any]:
        calls.append({"order_id": order_id, "amount": amount, "note": note})
        return {"refunded": amount}

    # when: A-9 was never looked up (held); the reviewer caps the amount
    thread, outcome = in_thread(lambda: refund("A-9", amount=80, note="broken"))
    action_id = stack.held_action_id()
    approve_edited(stack, action_id, {"order_id": "A-9", "amount": 50, "note": "broken"}, "capped at 50")
    thread.join(20)

    # then the function ran once, with the edit, and said so
    assert outcome == {"value": {"refunded": 50}}
    assert calls == [{"order_id": "A-9", "amount": 50, "note": "broken"}]
    stored = ProposedAction.objects.get(pk=action_id)
    assert stored.params == {"order_id": "A-9", "amount": 80, "note": "broken"}
    assert stored.outcome_params_hash == params_hash({"order_id": "A-9", "amount": 50, "note": "broken"})
    assert stored.outcome_params_hash == gate_client.params_hash({"note": "broken", "amount": 50, "order_id": "A-9"})
    assert (stored.outcome_executed, stored.params_mismatch) == (True, False)


def test_an_unedited_approval_reports_the_proposed_params_hash(stack: Stack) -> None:
    @gate_client.requires_approval(stack.gate, action_type="refund", timeout=30)
    def refund(order_id: str, amount: float) -> str:
        return f"{order_id}:{amount}"

    thread, outcome = in_thread(lambda: refund("A-9", 20))
    action_id = stack.held_action_id()
    stack.decide(action_id, "approve", "fine")
    thread.join(20)

    assert outcome == {"value": "A-9:20"}
    stored = ProposedAction.objects.get(pk=action_id)
    assert (stored.approved_params, stored.params_mismatch) == (None, False)
    assert stored.outcome_params_hash == stored.params_hash


def test_an_edit_the_decorator_cannot_map_back_is_not_run_and_reported_as_not_executed(stack: Stack) -> None:
    calls: list[Any] = []

    @gate_client.requires_approval(
        stack.gate,
        action_type="refund",
        params=lambda order, cents: {"order_id": order, "amount": cents / 100},
        timeout=30,
    )
    def refund(order: str, cents: int) -> None:
        calls.append((order, cents))

    thread, outcome = in_thread(lambda: refund("A-9", 8000))
    action_id = stack.held_action_id()
    approve_edited(stack, action_id, {"order_id": "A-9", "amount": 50}, "capped")
    thread.join(20)

    assert isinstance(outcome["error"], gate_client.ParamsNotApplicable)
    assert calls == []
    stored = ProposedAction.objects.get(pk=action_id)
    assert stored.outcome_executed is False
    assert "cannot be mapped back" in stored.outcome_error


def test_the_async_client_runs_an_edited_call_too(stack: Stack) -> None:
    calls: list[float] = []

    async def scenario() -> Any:
        async with gate_client.AsyncGate(stack.base_url, stack.agent.token, timeout=10) as gate:

            @gate_client.requires_approval(gate, action_type="refund", timeout=30)
            async def refund(order_id: str, amount: float) -> float:
                calls.append(amount)
                return amount

            task = asyncio.create_task(refund("A-9", 80))
            action_id = await asyncio.to_thread(stack.held_action_id)
            await asyncio.to_thread(approve_edited, stack, action_id, {"order_id": "A-9", "amount": 30}, "less")
            return await task, action_id

    result, action_id = asyncio.run(scenario())

    assert (result, calls) == (30, [30])
    stored = ProposedAction.objects.get(pk=action_id)
    assert stored.outcome_params_hash == params_hash({"order_id": "A-9", "amount": 30})
    assert stored.params_mismatch is False


def test_the_action_says_what_to_execute() -> None:
    edited = gate_client.Action({"params": {"a": 1}, "approved_params": {"a": 2}})
    plain = gate_client.Action({"params": {"a": 1}, "approved_params": None})

    assert (edited.params_to_execute, plain.params_to_execute) == ({"a": 2}, {"a": 1})
