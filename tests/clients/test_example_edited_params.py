"""The agent examples with a reviewer's edit (contract §6.3), against the real stack: the LangGraph
agent runs the tool with the approved params and reports their hash."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from langchain_core.messages import AIMessage, HumanMessage

from approvals.gate.params import params_hash
from approvals.models import ProposedAction
from tests.agents_stack import Stack, load_example

pytestmark = [pytest.mark.worker, pytest.mark.server, pytest.mark.django_db(transaction=True)]

lg = load_example("langgraph_agent.py")


@pytest.fixture
def stack(asgi_server: str) -> Iterator[Stack]:
    stack = Stack(asgi_server)
    yield stack
    stack.close()


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
