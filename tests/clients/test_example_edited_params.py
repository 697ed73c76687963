"""The agent examples with a reviewer's edit (contract §6.3), against the real stack: the LangGraph
agent runs the tool with the approved params and reports their hash; the OpenAI Agents SDK loop,
whose SDK would run the model's own arguments, hands the edit back to the model instead."""

from __future__ import annotations

import asyncio
import threading
import uuid
from typing import Any

import agents
import gate_client
import httpx
import pytest
from langchain_core.messages import AIMessage, HumanMessage
from rest_framework.authtoken.models import Token

from approvals.gate.params import params_hash
from approvals.gate.policies import policies_import
from approvals.models import ProposedAction
from tests.agents_stack import Stack, first_held_action_id, load_example
from tests.conftest import TEST_POLICY
from tests.factories import AgentFactory, ReviewerFactory

pytestmark = [pytest.mark.worker, pytest.mark.server, pytest.mark.django_db(transaction=True)]

lg = load_example("langgraph_agent.py")


def test_the_langgraph_agent_runs_the_reviewer_s_edit(stack: Stack) -> None:
    calls: list[tuple[str, float]] = []

    def refund(order_id: str, amount: float) -> dict[str, Any]:
        calls.append((order_id, amount))
        return {"refunded": amount}

    model = lg.ScriptedModel(
        [lg.tool_call("refund", "c-1", order_id="A-9", amount=80), lambda m: AIMessage(content=m[-1].text)]
    )
    graph = lg.build_agent_graph(model, stack.gate, read_only_tools={}, gated_tools={"refund": refund})
    config = {"configurable": {"thread_id": f"thread-{uuid.uuid4().hex[:8]}"}}
    state = graph.invoke({"messages": [HumanMessage("Refund 80 on A-9")]}, config)
    assert state["__interrupt__"]
    stored = ProposedAction.objects.get()

    # when the reviewer approves a smaller amount, the graph resumes
    resumed: dict[str, Any] = {}
    waiter = threading.Thread(
        target=lambda: resumed.update(state=lg.resume_when_decided(graph, config, stack.gate, timeout=30)),
        daemon=True,
    )
    waiter.start()
    response = stack.reviewer.post(
        f"/api/v1/actions/{stored.id}/decision",
        json={"verdict": "approve", "params": {"order_id": "A-9", "amount": 30}, "reason": "partial refund"},
    )
    assert response.status_code == 200, response.text
    waiter.join(30)

    # then the tool ran once, with the edit, and the gate was told so
    assert calls == [("A-9", 30)]
    stored.refresh_from_db()
    assert stored.outcome_params_hash == params_hash({"order_id": "A-9", "amount": 30})
    assert (stored.outcome_executed, stored.params_mismatch) == (True, False)
    assert "30" in resumed["state"]["messages"][-1].text


def test_the_openai_agents_loop_hands_the_edit_back_to_the_model(asgi_server: str) -> None:
    agents.set_tracing_disabled(True)
    policies_import(document=TEST_POLICY, actor="test")
    token = AgentFactory(name="support-bot").token
    reviewer = httpx.Client(
        base_url=asgi_server,
        headers={"Authorization": f"Token {Token.objects.create(user=ReviewerFactory(username='lead')).key}"},
    )
    ex = load_example("openai_agents_sdk.py")
    refunds: list[dict[str, Any]] = []
    model = ex.ScriptedModel(
        [ex.tool_call("refund", {"order_id": "A-9", "amount": 80}), ex.reply_with_last_tool_output]
    )

    async def scenario() -> Any:
        async with gate_client.AsyncGate(asgi_server, token) as gate:
            approvals = ex.GateApprovals(gate, action_types={"refund": "refund"})
            agent = ex.support_agent(model, ex.support_tools(approvals, refunds))
            task = asyncio.create_task(ex.run_with_gate(agent, "Refund 80 on A-9", approvals, timeout=30))
            action_id = await asyncio.to_thread(first_held_action_id, reviewer, 20)
            response = await asyncio.to_thread(
                reviewer.post,
                f"/api/v1/actions/{action_id}/decision",
                json={"verdict": "approve", "params": {"order_id": "A-9", "amount": 30}, "reason": "partial"},
            )
            assert response.status_code == 200, response.text
            return await asyncio.wait_for(task, 30)

    try:
        run = asyncio.run(scenario())
    finally:
        reviewer.close()

    # the SDK would have run the model's arguments: the call did not run, the model read the edit
    assert refunds == []
    [seen] = [str(item["output"]) for item in model.inputs[-1] if item.get("type") == "function_call_output"]
    assert '"amount": 30' in seen
    stored = ProposedAction.objects.get()
    assert (stored.status, stored.outcome_executed) == ("approved", False)
    assert run.reported[str(stored.id)].data["outcome"]["executed"] is False
