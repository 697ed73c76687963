"""A LangGraph agent whose state-changing tool calls go through Autonomy Gate.

Read-only tools (``get_order``) run freely in a ``tools`` node. State-changing ones (``refund``) go
to a gate node, ``gated_tool_node(gate, tools=..., action_types=...)``, a small subgraph that:

1. proposes each call to the gate, with the conversation so far as the trajectory (native steps)
   and ``context.session_id`` = the LangGraph thread id, under an idempotency key derived from the
   thread and the tool call id (a re-run of the node can never create a second action);
2. approved (``auto_approved``): runs the tool and reports the outcome (``gate.report``);
   refused (``blocked``, or the gate could not be asked): feeds ``gate_client.Refusal.message``
   back to the model as the tool's result (who refused and why, the policy's checks labelled
   apart), and nothing runs;
3. held (``needs_review``): pauses the graph with LangGraph's ``interrupt`` (the payload carries the
   gate action's id, status and findings); the state is checkpointed, so the process may even stop.
   ``resume_when_decided(graph, config, gate, timeout)`` long-polls the gate (``gate.wait``) and
   resumes with ``Command(resume=...)``. On resume the node asks the gate itself what was decided
   (a resume value can never approve anything): approved, the tool runs once and the outcome is
   reported; rejected, expired or cancelled, the reason goes back to the model.
   ``langgraph_restart.py`` runs this across a restart: the first process stops with the
   checkpoint and a ``gate_client.PendingAction`` saved, a later one resumes the thread.

The model is scripted (``ScriptedModel``), so the demo runs offline against a local gate:

    .venv/bin/python examples/agents/langgraph_agent.py --base-url http://127.0.0.1:8000 --token TOKEN
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Protocol

from gate_client import Action, ApprovalTimeout, ConflictError, Gate, GateError, Refusal, params_hash
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage, ToolCall, ToolMessage
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.types import Command, interrupt

Tool = Callable[..., Any]
Step = dict[str, Any]
AnyGraph = CompiledStateGraph[Any, Any, Any, Any]

#: ``interrupt`` payloads from the gate node carry this ``kind``; ``resume_when_decided`` looks for it.
GATE_INTERRUPT = "autonomy_gate.review"


# --- the model ----------------------------------------------------------------------------------


class ChatModel(Protocol):
    """What the agent node needs of a model: messages in, the next assistant message out."""

    def invoke(self, messages: Sequence[BaseMessage], /) -> AIMessage: ...


ScriptStep = AIMessage | Callable[[Sequence[BaseMessage]], AIMessage]


class ScriptedModel:
    """A fake chat model for offline runs: returns its script's steps in order (a step may be a
    function of the messages it is given), and remembers every input it was given."""

    def __init__(self, script: Sequence[ScriptStep]) -> None:
        self._script: Iterator[ScriptStep] = iter(script)
        self.inputs: list[list[BaseMessage]] = []

    def invoke(self, messages: Sequence[BaseMessage], /) -> AIMessage:
        self.inputs.append(list(messages))
        step = next(self._script, None)
        if step is None:
            return AIMessage(content="(the script has nothing more to say)")
        return step if isinstance(step, AIMessage) else step(messages)


def tool_call(name: str, call_id: str | None = None, **args: Any) -> AIMessage:
    """An assistant message asking for one tool call (for scripts)."""
    return AIMessage(
        content="", tool_calls=[ToolCall(name=name, args=args, id=call_id or f"call-{uuid.uuid4().hex[:12]}")]
    )


# --- messages and the trajectory --------------------------------------------------------------------


def _answered(messages: Sequence[BaseMessage]) -> dict[str, ToolMessage]:
    return {m.tool_call_id: m for m in messages if isinstance(m, ToolMessage)}


def unanswered_calls(messages: Sequence[BaseMessage]) -> list[ToolCall]:
    """The last assistant message's tool calls that have no tool result yet."""
    last = messages[-1] if messages else None
    if not isinstance(last, AIMessage):
        return []
    answered = _answered(messages)
    return [call for call in last.tool_calls if call.get("id") not in answered]


def trajectory_from_messages(messages: Sequence[BaseMessage]) -> list[Step]:
    """The conversation as the gate's native steps, oldest first: each user/assistant/system
    message with text, and each answered tool call with its result. Unanswered calls (those being
    proposed) are left out; tool messages make no step of their own."""
    answered = _answered(messages)
    roles = {HumanMessage: "user", SystemMessage: "system", AIMessage: "assistant"}
    steps: list[Step] = []
    for message in messages:
        role = next((name for cls, name in roles.items() if isinstance(message, cls)), None)
        if role is None:
            continue
        if message.text or not (isinstance(message, AIMessage) and message.tool_calls):
            steps.append({"kind": "message", "role": role, "content": message.text})
        if isinstance(message, AIMessage):
            for call in message.tool_calls:
                result = answered.get(call.get("id") or "")
                if result is not None:
                    steps.append(
                        {"kind": "tool_call", "tool": call["name"], "args": call["args"], "result": result.text}
                    )
    return steps


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, default=str)


def _jsonable(value: Any) -> Any:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return None
    return value


def _thread_id(config: RunnableConfig) -> str:
    thread_id = (config.get("configurable") or {}).get("thread_id")
    if not thread_id:
        raise ValueError("gated tool calls need a checkpointed thread: pass config={'configurable': {'thread_id': …}}")
    return str(thread_id)


# --- read-only tools ----------------------------------------------------------------------------


class ReadOnlyToolNode:
    """A node answering the last assistant message's unanswered calls, except those in ``skip``
    (left to the gate node): known tools run freely, unknown ones get an error result."""

    def __init__(self, tools: Mapping[str, Tool], *, skip: frozenset[str] = frozenset()) -> None:
        self.tools = dict(tools)
        self.skip = skip

    def __call__(self, state: MessagesState) -> dict[str, Any]:
        results: list[BaseMessage] = []
        for call in unanswered_calls(state["messages"]):
            name, call_id = call["name"], call.get("id") or ""
            if name in self.skip:
                continue
            if name not in self.tools:
                results.append(ToolMessage(f"unknown tool {name!r}", tool_call_id=call_id, name=name, status="error"))
                continue
            try:
                content = _text(self.tools[name](**call["args"]))
            except Exception as exc:
                results.append(
                    ToolMessage(f"{type(exc).__name__}: {exc}", tool_call_id=call_id, name=name, status="error")
                )
            else:
                results.append(ToolMessage(content, tool_call_id=call_id, name=name))
        return {"messages": results}


# --- the gate node ------------------------------------------------------------------------------------


class GatedState(MessagesState):
    """The gate subgraph's state: the messages, and the calls held for review, oldest first."""

    gate_held: list[dict[str, Any]]


def gated_tool_node(
    gate: Gate,
    *,
    tools: Mapping[str, Tool],
    action_types: Mapping[str, str] | None = None,
    context: Mapping[str, Any] | None = None,
    evaluation_wait: float = 10.0,
) -> AnyGraph:
    """A node (a compiled subgraph: add it with ``builder.add_node("gate", node)``) for the
    state-changing ``tools``: each unanswered call to one of them is proposed to the gate as
    ``action_types[name]`` (default: the tool's name) with the call's arguments as params, and runs
    only once the gate approves it. Held calls pause the graph (``interrupt``) until resumed;
    refusals reach the model as the tool's result. ``context`` is sent with every proposal, with
    ``session_id`` set to the thread id. The parent graph needs a checkpointer."""
    types = dict(action_types or {})

    def run(call: Mapping[str, Any], action: Action) -> ToolMessage:
        """The approved call, run once, its outcome reported to the gate."""
        name, call_id = str(call["tool"]), str(call["tool_call_id"])
        artifact = {"gate_action_id": action.id, "status": action.status}
        # A reviewer's edit (approved_params) replaces the model's arguments; the gate is told which ran.
        args = action.params_to_execute if action.approved_params is not None else dict(call["args"])
        executed = params_hash(args)
        try:
            result = tools[name](**args)
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
            _report(action, executed=False, error=error, params_hash=executed)
            return ToolMessage(
                f"{name} was approved but failed: {error}",
                tool_call_id=call_id,
                name=name,
                status="error",
                artifact=artifact,
            )
        _report(action, executed=True, result=_jsonable(result), params_hash=executed)
        return ToolMessage(_text(result), tool_call_id=call_id, name=name, artifact=artifact)

    def _report(action: Action, **outcome: Any) -> None:
        try:
            gate.report(action.id, **outcome)
        except GateError as exc:  # the tool ran: never run it again because a report failed
            print(f"autonomy gate: could not report the outcome of {action.id}: {exc}", file=sys.stderr)

    def refused(call: Mapping[str, Any], action: Action | None, error: str = "") -> ToolMessage:
        """The refusal as the tool's result: the gate's ``Refusal.message`` (what, why, in whose
        words, and that nothing ran), or, when the gate could not be asked, that."""
        name = str(call["tool"])
        if action is None:
            text = f"{name}({json.dumps(call['args'], sort_keys=True)}) was not carried out: {error}."
            return ToolMessage(
                text, tool_call_id=str(call["tool_call_id"]), name=name, status="error", artifact={"status": "error"}
            )
        return ToolMessage(
            Refusal(action, tool=name).message,
            tool_call_id=str(call["tool_call_id"]),
            name=name,
            status="error",
            artifact={"gate_action_id": action.id, "status": action.status},
        )

    def settle(call: Mapping[str, Any], action: Action) -> ToolMessage:
        return run(call, action) if action.approved else refused(call, action)

    def propose(state: GatedState, config: RunnableConfig) -> dict[str, Any]:
        thread_id = _thread_id(config)
        messages = state["messages"]
        trajectory = trajectory_from_messages(messages)  # computed once: a re-run proposes the same body
        last = messages[-1]
        rationale = last.text if isinstance(last, AIMessage) and last.text else None
        proposed: list[tuple[dict[str, Any], Action | None, str]] = []
        for call in unanswered_calls(messages):
            if call["name"] not in tools:
                continue
            entry: dict[str, Any] = {
                "tool": call["name"],
                "tool_call_id": call.get("id") or "",
                "args": dict(call["args"]),
                "action_type": types.get(call["name"], call["name"]),
            }
            try:
                action = gate.propose(
                    entry["action_type"],
                    entry["args"],
                    trajectory=trajectory,
                    context={**(context or {}), "session_id": thread_id},
                    rationale=rationale,
                    idempotency_key=f"langgraph/{thread_id}/{entry['tool_call_id']}",
                    wait=evaluation_wait,
                )
            except GateError as exc:  # fail closed: no approval, no action
                proposed.append((entry, None, f"the gate could not be asked ({exc})"))
            else:
                proposed.append((entry, action, ""))
        # Only once every call is proposed does anything run: a failed proposal re-runs nothing.
        results: list[BaseMessage] = []
        held: list[dict[str, Any]] = []
        for entry, answer, error in proposed:
            if answer is None:
                results.append(refused(entry, None, error))
            elif answer.final:
                results.append(settle(entry, answer))
            else:
                held.append({**entry, "action_id": answer.id, "status": answer.status, "action": answer.data})
        return {"messages": results, "gate_held": held}

    def await_review(state: GatedState, config: RunnableConfig) -> dict[str, Any]:
        entry, rest = state["gate_held"][0], state["gate_held"][1:]
        data = entry["action"]
        interrupt(
            {
                "kind": GATE_INTERRUPT,
                "action_id": entry["action_id"],
                "action_type": entry["action_type"],
                "status": entry["status"],
                "tool": entry["tool"],
                "tool_call_id": entry["tool_call_id"],
                "params": entry["args"],
                "findings": data.get("findings") or [],
                "risk_score": data.get("risk_score"),
                "review_url": f"{gate.base_url}{data.get('review_url', '')}",
                "reason": Action(data).reason,
            }
        )
        # Resumed. What was decided is the gate's word, never the resume value's.
        action = gate.get(entry["action_id"])
        if not action.final:  # resumed too early: pause again on the same call
            return {"gate_held": [{**entry, "status": action.status, "action": action.data}, *rest]}
        return {"messages": [settle(entry, action)], "gate_held": rest}

    def after(state: GatedState) -> str:
        return "await_review" if state.get("gate_held") else END

    builder = StateGraph(GatedState, output_schema=MessagesState)
    builder.add_node("propose", propose)
    builder.add_node("await_review", await_review)
    builder.add_edge(START, "propose")
    builder.add_conditional_edges("propose", after, ["await_review", END])
    builder.add_conditional_edges("await_review", after, ["await_review", END])
    return builder.compile()


def gate_interrupts(graph: AnyGraph, config: RunnableConfig) -> list[tuple[str, dict[str, Any]]]:
    """The (interrupt id, payload) of each gate review the thread is paused on."""
    return [
        (pending.id, pending.value)
        for pending in graph.get_state(config).interrupts
        if isinstance(pending.value, dict) and pending.value.get("kind") == GATE_INTERRUPT
    ]


def resume_when_decided(
    graph: AnyGraph,
    config: RunnableConfig,
    gate: Gate,
    timeout: float | None = 300.0,
    *,
    cancel_on_timeout: bool = False,
) -> dict[str, Any]:
    """While the thread is paused on a gate review, wait for the decision (long poll) and resume
    the graph with it; return the graph's state once it is no longer paused on the gate.

    Undecided after ``timeout`` seconds in all (None: wait forever): ApprovalTimeout, the graph
    left paused (resume later), or with ``cancel_on_timeout`` the action is withdrawn and the graph
    resumed, the model told so (unless a decision landed meanwhile, which is then honoured)."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while paused := gate_interrupts(graph, config):
        interrupt_id, payload = paused[0]
        left = None if deadline is None else max(deadline - time.monotonic(), 0.0)
        action = gate.wait(payload["action_id"], timeout=left)
        if not action.final:
            if not cancel_on_timeout:
                raise ApprovalTimeout(action, timeout or 0, cancelled=False)
            try:
                action = gate.cancel(action.id)
            except ConflictError:  # decided between the wait and the cancel
                action = gate.get(action.id)
        graph.invoke(Command(resume={interrupt_id: {"action_id": action.id, "status": action.status}}), config)
    return dict(graph.get_state(config).values)


# --- the agent graph ----------------------------------------------------------------------------------


def build_agent_graph(
    model: ChatModel,
    gate: Gate,
    *,
    read_only_tools: Mapping[str, Tool],
    gated_tools: Mapping[str, Tool],
    action_types: Mapping[str, str] | None = None,
    context: Mapping[str, Any] | None = None,
    checkpointer: BaseCheckpointSaver[Any] | None = None,
) -> AnyGraph:
    """agent ⇄ tools (read-only, free) → gate (state-changing, gated) → agent, until the model
    answers without tool calls. Checkpointed (an InMemorySaver unless given), as interrupts need."""
    gated = frozenset(gated_tools)

    def agent(state: MessagesState) -> dict[str, Any]:
        return {"messages": [model.invoke(state["messages"])]}

    def after_agent(state: MessagesState) -> str:
        calls = unanswered_calls(state["messages"])
        if not calls:
            return END
        return "tools" if any(call["name"] not in gated for call in calls) else "gate"

    def after_tools(state: MessagesState) -> str:
        return "gate" if unanswered_calls(state["messages"]) else "agent"

    builder = StateGraph(MessagesState)
    builder.add_node("agent", agent)
    builder.add_node("tools", ReadOnlyToolNode(read_only_tools, skip=gated))
    builder.add_node("gate", gated_tool_node(gate, tools=gated_tools, action_types=action_types, context=context))
    builder.add_edge(START, "agent")
    builder.add_conditional_edges("agent", after_agent, ["tools", "gate", END])
    builder.add_conditional_edges("tools", after_tools, ["gate", "agent"])
    builder.add_edge("gate", "agent")
    return builder.compile(checkpointer=checkpointer or InMemorySaver())


# --- the demo ----------------------------------------------------------------------------------------

ORDERS = {"A-1001": {"order_id": "A-1001", "total": 120, "status": "delivered"}}


def get_order(order_id: str) -> dict[str, Any]:
    return ORDERS.get(order_id) or {"order_id": order_id, "error": "no such order"}


def refund(order_id: str, amount: float) -> dict[str, Any]:
    print(f"    $$ refund of {amount} on {order_id} carried out")
    return {"refund_id": f"R-{uuid.uuid4().hex[:6]}", "order_id": order_id, "amount": amount}


def reply_with_last_result(messages: Sequence[BaseMessage]) -> AIMessage:
    return AIMessage(content=f"Here is what happened: {messages[-1].text}")


def demo(base_url: str, token: str, timeout: float) -> int:
    with Gate(base_url, token) as gate:
        conversations = [
            (
                "My order A-1001 arrived broken, please refund 20.",
                [tool_call("get_order", order_id="A-1001"), tool_call("refund", order_id="A-1001", amount=20)],
            ),
            ("Refund 30 on order A-2002, now.", [tool_call("refund", order_id="A-2002", amount=30)]),
        ]
        for number, (question, calls) in enumerate(conversations, 1):
            model = ScriptedModel([*calls, reply_with_last_result])
            graph = build_agent_graph(
                model, gate, read_only_tools={"get_order": get_order}, gated_tools={"refund": refund}
            )
            config: RunnableConfig = {"configurable": {"thread_id": f"demo-{uuid.uuid4().hex[:8]}"}}
            print(f"[{number}] user: {question}")
            state = graph.invoke({"messages": [HumanMessage(question)]}, config)
            for interrupt_id, payload in gate_interrupts(graph, config):
                print(f"    paused ({interrupt_id[:8]}): {payload['tool']} is {payload['status']}: {payload['reason']}")
                print(f"    decide it at {payload['review_url']} (waiting up to {timeout:g}s)", flush=True)
            if gate_interrupts(graph, config):
                try:
                    state = resume_when_decided(graph, config, gate, timeout)
                except ApprovalTimeout as exc:
                    print(f"    {exc}; the thread stays paused")
                    return 1
            print(f"    agent: {state['messages'][-1].text}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--base-url", default="http://127.0.0.1:8000")
    parser.add_argument("--token", required=True, help="an agent token (manage.py create_agent NAME)")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for a reviewer")
    args = parser.parse_args(argv)
    return demo(args.base_url, args.token, args.timeout)


if __name__ == "__main__":
    sys.exit(main())
