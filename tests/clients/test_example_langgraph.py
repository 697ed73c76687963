"""examples/agents/langgraph_agent.py against the real stack: uvicorn serving the ASGI app, a real
Celery worker evaluating, PostgreSQL and Redis; a reviewer deciding through the API. The model is
scripted; LangGraph, its interrupt and checkpointer are real."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
import uuid
from typing import Any

import gate_client
import pytest
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage

from approvals.models import ProposedAction
from tests.agents_stack import Stack, load_example
from tests.conftest import ROOT

pytestmark = [pytest.mark.worker, pytest.mark.server, pytest.mark.django_db(transaction=True)]

EXAMPLE = ROOT / "examples" / "agents" / "langgraph_agent.py"


lg = load_example("langgraph_agent.py")


class Refunds:
    """The state-changing tool: records each time it really runs."""

    def __init__(self) -> None:
        self.calls: list[tuple[float, str, float]] = []

    def __call__(self, order_id: str, amount: float) -> dict[str, Any]:
        self.calls.append((time.monotonic(), order_id, amount))
        return {"refund_id": f"R-{len(self.calls)}", "order_id": order_id, "amount": amount}


def get_order(order_id: str) -> dict[str, Any]:
    return {"order_id": order_id, "total": 80}


def answer_with_last_tool_result(messages: Any) -> AIMessage:
    return AIMessage(content=f"Done: {messages[-1].text}")


def agent_for(stack: Stack, script: list[Any], refunds: Refunds) -> tuple[Any, Any, dict[str, Any]]:
    model = lg.ScriptedModel(script)
    graph = lg.build_agent_graph(
        model, stack.gate, read_only_tools={"get_order": get_order}, gated_tools={"refund": refunds}
    )
    thread_id = f"thread-{uuid.uuid4().hex[:8]}"
    return model, graph, {"configurable": {"thread_id": thread_id}}


def tool_messages(messages: list[BaseMessage]) -> list[ToolMessage]:
    return [m for m in messages if isinstance(m, ToolMessage)]


def test_a_refund_of_a_looked_up_order_is_auto_approved_and_runs_without_interrupt(stack: Stack) -> None:
    refunds = Refunds()
    model, graph, config = agent_for(
        stack,
        [
            lg.tool_call("get_order", "c-lookup", order_id="A-1"),
            lg.tool_call("refund", "c-refund", order_id="A-1", amount=20),
            answer_with_last_tool_result,
        ],
        refunds,
    )

    state = graph.invoke({"messages": [HumanMessage("My order A-1 arrived broken")]}, config)

    assert "__interrupt__" not in state
    assert lg.gate_interrupts(graph, config) == []
    assert [(order, amount) for _, order, amount in refunds.calls] == [("A-1", 20)]
    stored = ProposedAction.objects.get()
    assert (stored.status, stored.outcome_executed) == ("auto_approved", True)
    assert stored.outcome_result == {"refund_id": "R-1", "order_id": "A-1", "amount": 20}
    assert stored.params == {"order_id": "A-1", "amount": 20}
    assert stored.context == {"session_id": config["configurable"]["thread_id"]}
    assert stored.idempotency_key == f"langgraph/{config['configurable']['thread_id']}/c-refund"
    assert stored.trajectory_raw == [
        {"kind": "message", "role": "user", "content": "My order A-1 arrived broken"},
        {
            "kind": "tool_call",
            "tool": "get_order",
            "args": {"order_id": "A-1"},
            "result": '{"order_id": "A-1", "total": 80}',
        },
    ]
    refund_result = tool_messages(state["messages"])[-1]
    assert refund_result.artifact == {"gate_action_id": str(stored.id), "status": "auto_approved"}
    assert "R-1" in state["messages"][-1].text
    assert len(model.inputs) == 3


def test_a_held_refund_interrupts_and_runs_once_after_the_reviewer_approves(stack: Stack) -> None:
    refunds = Refunds()
    model, graph, config = agent_for(
        stack, [lg.tool_call("refund", "c-1", order_id="A-9", amount=20), answer_with_last_tool_result], refunds
    )

    state = graph.invoke({"messages": [HumanMessage("Refund 20 on A-9")]}, config)

    (interrupt,) = state["__interrupt__"]
    payload = interrupt.value
    stored = ProposedAction.objects.get()
    assert payload["kind"] == lg.GATE_INTERRUPT
    assert (payload["action_id"], payload["status"], payload["tool"]) == (str(stored.id), "needs_review", "refund")
    assert payload["params"] == {"order_id": "A-9", "amount": 20}
    assert any(f["rule"] == "order_was_looked_up" and f["outcome"] == "fail" for f in payload["findings"])
    assert payload["review_url"] == f"{stack.base_url}/review/{stored.id}"
    assert graph.get_state(config).next == ("gate",)  # paused, checkpointed
    assert stored.context == {"session_id": config["configurable"]["thread_id"]}
    assert refunds.calls == []
    assert len(model.inputs) == 1

    resumed: dict[str, Any] = {}
    waiter = threading.Thread(
        target=lambda: resumed.update(state=lg.resume_when_decided(graph, config, stack.gate, timeout=30)),
        daemon=True,
    )
    waiter.start()
    time.sleep(1.0)  # the helper is long-polling the gate; nothing has run
    assert waiter.is_alive()
    assert refunds.calls == []
    approved_at = time.monotonic()
    stack.decide(str(stored.id), "approve", "customer confirmed by phone")
    waiter.join(30)
    assert not waiter.is_alive()

    assert len(refunds.calls) == 1
    ran_at, order, amount = refunds.calls[0]
    assert (order, amount) == ("A-9", 20)
    assert ran_at > approved_at
    stored.refresh_from_db()
    assert (stored.status, stored.outcome_executed) == ("approved", True)
    assert stored.outcome_result == {"refund_id": "R-1", "order_id": "A-9", "amount": 20}
    assert ProposedAction.objects.count() == 1  # the resumed node did not propose again
    final = resumed["state"]["messages"]
    assert tool_messages(final)[-1].artifact == {"gate_action_id": str(stored.id), "status": "approved"}
    assert "R-1" in final[-1].text
    assert lg.gate_interrupts(graph, config) == []
    # Resuming once more does nothing: the refund is not run a second time.
    assert lg.resume_when_decided(graph, config, stack.gate, timeout=1)["messages"] == final
    assert len(refunds.calls) == 1


def test_a_rejection_reaches_the_model_with_the_reviewer_s_reason_and_nothing_runs(stack: Stack) -> None:
    refunds = Refunds()
    model, graph, config = agent_for(
        stack, [lg.tool_call("refund", "c-1", order_id="A-9", amount=20), answer_with_last_tool_result], refunds
    )
    state = graph.invoke({"messages": [HumanMessage("Refund 20 on A-9")]}, config)
    action_id = state["__interrupt__"][0].value["action_id"]

    stack.decide(action_id, "reject", "order A-9 belongs to another customer")
    final = lg.resume_when_decided(graph, config, stack.gate, timeout=30)

    assert refunds.calls == []
    next_input = model.inputs[-1]
    assert len(model.inputs) == 2
    refusal = next_input[-1]
    assert isinstance(refusal, ToolMessage)
    assert refusal.tool_call_id == "c-1"
    assert refusal.status == "error"
    assert "rejected by a reviewer" in refusal.text
    assert "order A-9 belongs to another customer (lead)" in refusal.text
    assert "NOT carried out" in refusal.text
    assert "another customer" in final["messages"][-1].text
    stored = ProposedAction.objects.get(pk=action_id)
    assert (stored.status, stored.outcome_executed) == ("rejected", None)


def test_a_blocked_refund_is_not_run_and_the_findings_reach_the_model(stack: Stack) -> None:
    refunds = Refunds()
    model, graph, config = agent_for(
        stack, [lg.tool_call("refund", "c-1", order_id="A-1", amount=-5), answer_with_last_tool_result], refunds
    )

    state = graph.invoke({"messages": [HumanMessage("Refund A-1")]}, config)

    assert "__interrupt__" not in state
    assert refunds.calls == []
    refusal = model.inputs[-1][-1]
    assert isinstance(refusal, ToolMessage)
    assert "blocked by the policy" in refusal.text
    assert "params_schema" in refusal.text
    assert ProposedAction.objects.get().status == "blocked"


def test_an_early_resume_pauses_again_and_a_timeout_leaves_the_thread_paused(stack: Stack) -> None:
    refunds = Refunds()
    _, graph, config = agent_for(stack, [lg.tool_call("refund", "c-1", order_id="A-9", amount=20)], refunds)
    graph.invoke({"messages": [HumanMessage("Refund 20 on A-9")]}, config)
    ((interrupt_id, payload),) = lg.gate_interrupts(graph, config)

    # A resume value cannot approve anything: the node asks the gate, finds it undecided, pauses again.
    graph.invoke(lg.Command(resume={interrupt_id: {"status": "approved"}}), config)
    assert [p["action_id"] for _, p in lg.gate_interrupts(graph, config)] == [payload["action_id"]]
    assert refunds.calls == []

    with pytest.raises(gate_client.ApprovalTimeout) as timeout:
        lg.resume_when_decided(graph, config, stack.gate, timeout=1)
    assert not timeout.value.cancelled
    assert lg.gate_interrupts(graph, config)
    assert refunds.calls == []
    assert ProposedAction.objects.get().status == "needs_review"


def test_the_demo_script_runs_a_conversation_through_the_gate(stack: Stack) -> None:
    demo = subprocess.Popen(
        [sys.executable, str(EXAMPLE), "--base-url", stack.base_url, "--token", stack.agent.token, "--timeout", "60"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        stack.decide(stack.held_action_id(), "approve", "fine")
        output, _ = demo.communicate(timeout=60)
    finally:
        if demo.poll() is None:
            demo.kill()
    assert demo.returncode == 0, output
    assert output.count("carried out") == 2, output
    assert "needs_review" in output
    assert list(ProposedAction.objects.order_by("created_at").values_list("status", "outcome_executed")) == [
        ("auto_approved", True),
        ("approved", True),
    ]


def test_an_approved_call_beside_a_held_one_runs_once_across_the_interrupt(stack: Stack) -> None:
    refunds = Refunds()
    both = AIMessage(
        content="Refunding both orders",
        tool_calls=[
            {"name": "refund", "args": {"order_id": "A-1", "amount": 10}, "id": "c-a1"},
            {"name": "refund", "args": {"order_id": "A-9", "amount": 10}, "id": "c-a9"},
        ],
    )
    model, graph, config = agent_for(
        stack, [lg.tool_call("get_order", "c-lookup", order_id="A-1"), both, answer_with_last_tool_result], refunds
    )

    state = graph.invoke({"messages": [HumanMessage("Refund A-1 and A-9")]}, config)

    assert [order for _, order, _ in refunds.calls] == ["A-1"]  # auto-approved: ran before the pause
    held = state["__interrupt__"][0].value
    assert held["tool_call_id"] == "c-a9"
    stack.decide(held["action_id"], "approve", "ok")
    final = lg.resume_when_decided(graph, config, stack.gate, timeout=30)

    assert [order for _, order, _ in refunds.calls] == ["A-1", "A-9"]  # each exactly once
    assert [(m.tool_call_id, m.artifact["status"]) for m in tool_messages(final["messages"])[1:]] == [
        ("c-a1", "auto_approved"),
        ("c-a9", "approved"),
    ]
    assert sorted(ProposedAction.objects.values_list("status", "outcome_executed", "rationale")) == [
        ("approved", True, "Refunding both orders"),
        ("auto_approved", True, "Refunding both orders"),
    ]
    assert len(model.inputs) == 3
