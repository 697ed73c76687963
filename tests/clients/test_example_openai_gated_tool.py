"""examples/agents/openai_agents_gated_tool.py: an OpenAI Agents SDK function tool gated from inside
(``on_refusal="return"``, keys from the SDK's tool-call id), against the real stack (uvicorn, a
Celery worker, PostgreSQL, Redis); a reviewer decides through the API; the model is scripted."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from typing import Any

import agents
import gate_client
import pytest

from approvals.models import ProposedAction
from tests.agents_stack import Stack, load_example

pytestmark = [pytest.mark.worker, pytest.mark.server, pytest.mark.django_db(transaction=True)]

ex = load_example("openai_agents_gated_tool.py")
sdk = ex.sdk


@pytest.fixture
def stack(asgi_server: str) -> Iterator[Stack]:
    agents.set_tracing_disabled(True)
    stack = Stack(asgi_server)
    yield stack
    stack.close()


def tool_outputs(model_input: list[dict[str, Any]]) -> list[str]:
    return [str(item["output"]) for item in model_input if item.get("type") == "function_call_output"]


class Refunds:
    def __init__(self) -> None:
        self.made: list[tuple[str, float]] = []

    async def refund(self, order_id: str, amount: float) -> dict[str, Any]:
        """Refund ``amount`` on an order."""
        self.made.append((order_id, amount))
        return {"refund_id": f"R-{len(self.made)}"}


def run_agent(stack: Stack, refunds: Refunds, call_id: str) -> tuple[Any, Any, Any]:
    """One run: the model asks for refund(A-9, 20) under ``call_id``, then quotes the tool's output."""
    model = sdk.ScriptedModel(
        [sdk.tool_call("refund", {"order_id": "A-9", "amount": 20}, call_id=call_id), sdk.reply_with_last_tool_output]
    )

    async def scenario() -> tuple[Any, Any]:
        async with gate_client.AsyncGate(stack.base_url, stack.agent.token) as gate:

            async def refund(order_id: str, amount: float) -> dict[str, Any]:
                """Refund ``amount`` on an order."""
                return await refunds.refund(order_id, amount)

            tool = ex.gated_function_tool(gate, refund, timeout=30)
            agent = agents.Agent(name="support-bot", instructions="Help.", model=model, tools=[tool])
            result = await agents.Runner.run(agent, "Refund 20 on A-9")
            return result, tool.gated.last_action

    result, action = asyncio.run(scenario())
    return result, action, model


def test_a_rejection_without_a_reason_reaches_the_model_as_the_tool_s_output(stack: Stack) -> None:
    refunds = Refunds()
    outcome: dict[str, Any] = {}
    runner = threading.Thread(target=lambda: outcome.update(run=run_agent(stack, refunds, "call_r1")), daemon=True)
    runner.start()
    stack.decide(stack.held_action_id(), "reject")
    runner.join(30)
    result, action, model = outcome["run"]

    assert refunds.made == []
    (seen,) = tool_outputs(model.inputs[-1])
    assert seen.startswith('refund({"amount": 20, "order_id": "A-9"}) was rejected by a reviewer')
    assert "rejected by lead (no reason given). The policy's checks (not the reviewer's words)" in seen
    assert "NOT carried out" in seen
    assert seen in str(result.final_output)
    stored = ProposedAction.objects.get()
    assert (action.id, action.status) == (str(stored.id), "rejected")
    assert stored.idempotency_key == "tool-call/refund/call_r1"
    assert stored.outcome_executed is None


def test_an_approved_call_runs_once_and_a_re_run_of_the_same_tool_call_does_not_run_it_again(stack: Stack) -> None:
    refunds = Refunds()
    outcome: dict[str, Any] = {}
    runner = threading.Thread(target=lambda: outcome.update(run=run_agent(stack, refunds, "call_r2")), daemon=True)
    runner.start()
    stack.decide(stack.held_action_id(), "approve", "ok")
    runner.join(30)
    _, action, model = outcome["run"]

    assert refunds.made == [("A-9", 20)]
    assert json.loads(tool_outputs(model.inputs[-1])[0]) == {"refund_id": "R-1"}
    assert (action.status, action.outcome["executed"]) == ("approved", True)

    _, again, rerun_model = run_agent(stack, refunds, "call_r2")  # the same tool call, re-run

    assert refunds.made == [("A-9", 20)]  # not twice
    assert again.id == action.id
    assert ProposedAction.objects.count() == 1
    assert tool_outputs(rerun_model.inputs[-1])[0] == (
        f'This call was already carried out (action {action.id}); its result: {{"refund_id": "R-1"}}'
    )
