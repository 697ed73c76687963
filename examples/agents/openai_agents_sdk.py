"""Autonomy Gate as the approver of the OpenAI Agents SDK's human-in-the-loop tool calls.

    python examples/agents/openai_agents_sdk.py --base-url http://127.0.0.1:8000 --token gat_...

The SDK (``openai-agents`` 0.24) pauses a run before a tool marked ``needs_approval``: the result
carries ``interruptions``, and the run resumes with ``Runner.run(agent, state)`` once each one is
approved (``state.approve(item)``) or rejected (``state.reject(item, rejection_message=...)``).
``run_with_gate`` answers those interruptions with the gate instead of a console prompt:

- each interrupted call is proposed to the gate: the tool's action type (``action_types`` maps tool
  names to action types), its parsed arguments as params, the conversation so far as an OpenAI
  chat-completions trajectory (``{"format": "openai", "messages": [...]}``, the call being proposed
  left out), ``context.session_id``, and an idempotency key made of the run's id and the call id;
- the decision is awaited with the client's long poll (``AsyncGate.wait``, up to ``timeout``);
- ``approved`` / ``auto_approved``: ``state.approve(item)``; the SDK runs the tool when the run resumes,
  and its output (read back from the run's items) is reported to the gate as the action's outcome;
- any refusal (``rejected``, ``blocked``, ``expired``, ``cancelled``): ``state.reject(item,
  rejection_message=...)``; the SDK sends that exact text back to the model as the tool's output, so
  the model reads the gate's reason (the reviewer's words, or the policy findings) and can explain it;
- still undecided after ``timeout``: the action is withdrawn and ``gate_client.ApprovalTimeout`` is
  raised; a timeout is never turned into a silent denial.

The demo runs offline: a scripted model (an ``agents.models.interface.Model``) plays the tool calls
of an LLM, so no OpenAI key is needed and tracing is off.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import agents
import gate_client
from agents import Agent, FunctionTool, RunConfig, RunContextWrapper, RunHooks, Runner, function_tool
from agents.agent_output import AgentOutputSchemaBase
from agents.handoffs import Handoff
from agents.items import (
    ModelResponse,
    ToolApprovalItem,
    ToolCallOutputItem,
    TResponseInputItem,
    TResponseOutputItem,
    TResponseStreamEvent,
)
from agents.model_settings import ModelSettings
from agents.models.chatcmpl_converter import Converter
from agents.models.interface import Model, ModelTracing
from agents.result import RunResult
from agents.tool import Tool
from agents.tool_context import ToolContext
from agents.usage import Usage
from openai.types.responses import ResponseFunctionToolCall, ResponseOutputMessage, ResponseOutputText
from openai.types.responses.response_prompt_param import ResponsePromptParam

# --- the adapter ------------------------------------------------------------------------------------


class GateApprovals:
    """Which tools the gate decides, and under which action type.

    Mark each gated tool with ``needs_approval=approvals.needs_approval``; optionally also pass
    ``failure_error_function=approvals.failure_error_function`` so that a gated tool that raises is
    reported to the gate as not executed (the model is told it failed, as with the SDK's default).
    """

    def __init__(self, gate: gate_client.AsyncGate, action_types: Mapping[str, str]) -> None:
        self.gate = gate
        self.action_types = dict(action_types)
        self._failures: dict[str, str] = {}  # call id -> error, for gated tools that raised

    async def needs_approval(self, context: RunContextWrapper[Any], params: dict[str, Any], call_id: str) -> bool:
        """Every call of a tool marked with this waits for the gate (the SDK interrupts the run)."""
        return True

    def failure_error_function(self, context: RunContextWrapper[Any], error: Exception) -> str:
        """Record a gated tool's failure for the outcome report; the model gets a short notice."""
        call_id = getattr(context, "tool_call_id", None) if isinstance(context, ToolContext) else None
        if call_id:
            self._failures[call_id] = f"{type(error).__name__}: {error}"
        return f"The tool failed ({type(error).__name__}); it did not complete."

    def action_type(self, tool_name: str) -> str:
        try:
            return self.action_types[tool_name]
        except KeyError:
            raise ValueError(
                f"the run asked approval for tool {tool_name!r}, which GateApprovals.action_types does not map "
                "to an action type"
            ) from None


@dataclass
class _Call:
    item: ToolApprovalItem
    tool: str
    call_id: str
    params: dict[str, Any]


@dataclass
class _Proposed:
    call: _Call
    action: gate_client.Action


@dataclass
class GateRun:
    """What ``run_with_gate`` did: the final result and every action it proposed, as decided."""

    result: RunResult
    run_id: str
    actions: list[gate_client.Action] = field(default_factory=list)
    reported: dict[str, gate_client.Action] = field(default_factory=dict)  # action id -> after the report


def _function_call(item: ToolApprovalItem) -> _Call:
    raw = item.raw_item
    if isinstance(raw, dict):
        call_id, arguments = raw.get("call_id") or raw.get("id"), raw.get("arguments")
    else:
        call_id, arguments = getattr(raw, "call_id", None) or getattr(raw, "id", None), getattr(raw, "arguments", None)
    if not item.name or not call_id:
        raise ValueError(f"cannot propose an approval request without a tool name and call id: {raw!r}")
    try:
        params = json.loads(arguments) if isinstance(arguments, str) and arguments.strip() else {}
    except ValueError:
        params = {"_raw_arguments": arguments}  # proposed as sent: the gate's schema check will block it
    if not isinstance(params, dict):
        params = {"_raw_arguments": arguments}
    return _Call(item=item, tool=item.name, call_id=str(call_id), params=params)


def openai_trajectory(items: Sequence[TResponseInputItem], *, leave_out: set[str]) -> Any:
    """The conversation so far as OpenAI chat-completions messages (contract §2), without the calls
    in ``leave_out`` (those being proposed); native steps if the SDK's converter cannot express it."""
    kept = [
        item
        for item in items
        if not (isinstance(item, dict) and item.get("type") == "function_call" and item.get("call_id") in leave_out)
    ]
    try:
        messages = json.loads(json.dumps(Converter.items_to_messages(kept)))
    except (TypeError, ValueError, agents.UserError):
        return _native_steps(kept)
    return {"format": "openai", "messages": messages}


def _native_steps(items: Sequence[TResponseInputItem]) -> list[dict[str, Any]]:
    steps: list[dict[str, Any]] = []
    calls: dict[str, dict[str, Any]] = {}
    for entry in items:
        if not isinstance(entry, dict):
            continue
        item: dict[str, Any] = dict(entry)
        kind = item.get("type")
        if kind == "function_call":
            step = {"kind": "tool_call", "tool": item.get("name"), "args": item.get("arguments") or {}, "result": None}
            calls[str(item.get("call_id"))] = step
            steps.append(step)
        elif kind == "function_call_output" and str(item.get("call_id")) in calls:
            calls[str(item.get("call_id"))]["result"] = item.get("output")
        elif item.get("role") in ("user", "assistant", "system", "developer"):
            content = item.get("content")
            if not isinstance(content, str):
                content = "".join(str(part.get("text", "")) for part in content or [] if isinstance(part, dict))
            role = "system" if item.get("role") == "developer" else item.get("role")
            steps.append({"kind": "message", "role": role, "content": content})
    return steps


def rejection_message(tool: str, action: gate_client.Action) -> str:
    """What the model reads instead of the tool's output when the gate refuses the call: the gate's
    ``Refusal.message`` (the decider's words; the policy's checks labelled apart from a reviewer's)."""
    return f"Autonomy Gate refused this call. {gate_client.Refusal(action, tool=tool).message} Tell the user why."


def edited_message(tool: str, action: gate_client.Action) -> str:
    """What the model reads when a reviewer approved the call only with other arguments."""
    return (
        f"A reviewer approved this {tool} call (action {action.id}) only with these arguments: "
        f"{json.dumps(action.approved_params, sort_keys=True)} ({action.reason}). The tool did not run; "
        "call it again with exactly those arguments if they still serve the user."
    )


def _jsonable(value: Any) -> Any:
    """A tool's output as the outcome's result: JSON text decoded, anything else JSON or its text."""
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return str(value)
    return value


async def _decide(approvals: GateApprovals, proposed: _Proposed, timeout: float | None) -> gate_client.Action:
    """The final action, or ApprovalTimeout once it is withdrawn (or the decision that beat the cancel)."""
    gate = approvals.gate
    action = await gate.wait(proposed.action.id, timeout)
    if action.final:
        return action
    try:
        action = await gate.cancel(action.id)
    except gate_client.ConflictError:
        action = await gate.get(action.id)  # decided between the wait and the cancel
    if action.final and action.status != "cancelled":
        return action
    raise gate_client.ApprovalTimeout(action, timeout or 0)  # says whether the withdrawal went through


async def run_with_gate(
    agent: Agent[Any],
    input: str | list[TResponseInputItem],
    approvals: GateApprovals,
    *,
    context: Any = None,
    session_id: str | None = None,
    timeout: float | None = 300.0,
    max_turns: int = 10,
    run_config: RunConfig | None = None,
    hooks: RunHooks[Any] | None = None,
    run_id: str | None = None,
) -> GateRun:
    """Run ``agent`` to its end, every interruption decided by the gate (see the module's docstring).

    ``session_id`` goes to the gate as ``context.session_id`` (default: the run's id); ``run_id``
    (default: a fresh one) makes the idempotency keys, so a retried loop never proposes a call twice.
    Raises ``gate_client.ApprovalTimeout`` when a call is still undecided after ``timeout`` seconds
    (None: wait forever); gate errors (``gate_client.GateError``) propagate.
    """
    run_id = run_id or uuid.uuid4().hex
    gate_context = {"session_id": session_id or run_id}
    unreported: dict[str, gate_client.Action] = {}  # call id -> approved action whose tool has not reported
    run = GateRun(
        result=await Runner.run(agent, input, context=context, max_turns=max_turns, run_config=run_config, hooks=hooks),
        run_id=run_id,
    )
    while True:
        await _report_outcomes(approvals, run, unreported)
        if not run.result.interruptions:
            break
        calls = [_function_call(item) for item in run.result.interruptions]
        trajectory = openai_trajectory(run.result.to_input_list(), leave_out={call.call_id for call in calls})
        proposed = []
        for call in calls:
            action = await approvals.gate.propose(
                approvals.action_type(call.tool),
                call.params,
                trajectory=trajectory,
                context=gate_context,
                idempotency_key=f"openai-agents/{run_id}/{call.call_id}",
            )
            proposed.append(_Proposed(call, action))
        decisions = await asyncio.gather(*(_decide(approvals, p, timeout) for p in proposed), return_exceptions=True)
        failure = next((d for d in decisions if isinstance(d, BaseException)), None)
        if failure is not None:
            run.actions += [d for d in decisions if isinstance(d, gate_client.Action)]
            for decided in decisions:  # approved alongside the failed wait: they will never run
                if isinstance(decided, gate_client.Action) and decided.approved:
                    await approvals.gate.report(decided.id, executed=False, error=f"the run stopped: {failure}")
            raise failure
        state = run.result.to_state()
        for p, decided in zip(proposed, decisions, strict=True):
            assert isinstance(decided, gate_client.Action)
            run.actions.append(decided)
            if decided.approved and decided.approved_params is not None:
                # The SDK runs an approved call with the model's own arguments: a reviewer's edit
                # (contract §6.3) goes back to the model, to call again with those arguments.
                run.reported[decided.id] = await approvals.gate.report(
                    decided.id, executed=False, error="approved with edited params; the model was asked to use them"
                )
                state.reject(p.call.item, rejection_message=edited_message(p.call.tool, decided))
            elif decided.approved:
                state.approve(p.call.item)
                unreported[p.call.call_id] = decided
            else:
                state.reject(p.call.item, rejection_message=rejection_message(p.call.tool, decided))
        run.result = await Runner.run(agent, state, max_turns=max_turns, run_config=run_config, hooks=hooks)
    for call_id, action in unreported.items():  # approved, yet the run ended without running them
        run.reported[action.id] = await approvals.gate.report(
            action.id, executed=False, error=f"the run ended before tool call {call_id} ran"
        )
    return run


async def _report_outcomes(approvals: GateApprovals, run: GateRun, unreported: dict[str, gate_client.Action]) -> None:
    """Report each approved call whose output is now among the run's items (once each)."""
    for item in run.result.new_items:
        if not isinstance(item, ToolCallOutputItem) or item.call_id not in unreported:
            continue
        action = unreported.pop(item.call_id)
        error = approvals._failures.pop(item.call_id, None)
        if error is not None:
            reported = await approvals.gate.report(action.id, executed=False, error=error)
        else:
            reported = await approvals.gate.report(action.id, executed=True, result=_jsonable(item.output))
        run.reported[action.id] = reported


# --- the demo: a scripted model and two tools -------------------------------------------------------

Responder = Callable[[list[TResponseInputItem]], list[TResponseOutputItem]]


class ScriptedModel(Model):
    """Stands in for an LLM: each call returns the next scripted output (tool calls, a message), and
    records the input it was given, so a test can read what the model saw."""

    def __init__(self, script: Sequence[list[TResponseOutputItem] | Responder]) -> None:
        self.script = list(script)
        self.inputs: list[list[TResponseInputItem]] = []

    async def get_response(
        self,
        system_instructions: str | None,
        input: str | list[TResponseInputItem],
        model_settings: ModelSettings,
        tools: list[Tool],
        output_schema: AgentOutputSchemaBase | None,
        handoffs: list[Handoff],
        tracing: ModelTracing,
        *,
        previous_response_id: str | None,
        conversation_id: str | None,
        prompt: ResponsePromptParam | None,
    ) -> ModelResponse:
        items: list[TResponseInputItem] = [{"role": "user", "content": input}] if isinstance(input, str) else input
        self.inputs.append(json.loads(json.dumps(items, default=str)))
        step = self.script.pop(0) if self.script else [message("Is there anything else I can do?")]
        output = step(items) if callable(step) else step
        return ModelResponse(output=output, usage=Usage(), response_id=None)

    def stream_response(
        self,
        system_instructions: str | None,
        input: str | list[TResponseInputItem],
        model_settings: ModelSettings,
        tools: list[Tool],
        output_schema: AgentOutputSchemaBase | None,
        handoffs: list[Handoff],
        tracing: ModelTracing,
        *,
        previous_response_id: str | None,
        conversation_id: str | None,
        prompt: ResponsePromptParam | None,
    ) -> AsyncIterator[TResponseStreamEvent]:
        raise NotImplementedError("the scripted model does not stream")


def tool_call(name: str, arguments: dict[str, Any], call_id: str | None = None) -> list[TResponseOutputItem]:
    call_id = call_id or f"call_{uuid.uuid4().hex[:12]}"
    return [
        ResponseFunctionToolCall(
            type="function_call", id=f"fc_{call_id}", call_id=call_id, name=name, arguments=json.dumps(arguments)
        )
    ]


def message(text: str) -> ResponseOutputMessage:
    return ResponseOutputMessage(
        id=f"msg_{uuid.uuid4().hex[:12]}",
        type="message",
        role="assistant",
        status="completed",
        content=[ResponseOutputText(type="output_text", text=text, annotations=[])],
    )


def reply_with_last_tool_output(items: list[TResponseInputItem]) -> list[TResponseOutputItem]:
    """A final answer that quotes the last tool output the model was given (a refusal included)."""
    outputs = [item for item in items if isinstance(item, dict) and item.get("type") == "function_call_output"]
    last = outputs[-1].get("output") if outputs else None
    return [message(f"Done. Last tool said: {last}")]


def support_tools(approvals: GateApprovals, refunds: list[dict[str, Any]]) -> list[FunctionTool]:
    """``get_order`` (read-only, runs at once) and ``refund`` (gated); refunds made are appended to
    ``refunds``."""

    @function_tool
    def get_order(order_id: str) -> str:
        """Look up an order: its total and status."""
        return json.dumps({"order_id": order_id, "total": 80, "status": "delivered"})

    @function_tool(needs_approval=approvals.needs_approval, failure_error_function=approvals.failure_error_function)
    def refund(order_id: str, amount: float) -> str:
        """Refund ``amount`` on an order."""
        refunds.append({"order_id": order_id, "amount": amount})
        return json.dumps({"refund_id": f"R-{len(refunds)}", "order_id": order_id, "amount": amount})

    return [get_order, refund]


def support_agent(model: Model, tools: list[FunctionTool]) -> Agent[Any]:
    return Agent(
        name="support-bot",
        instructions="You help customers with their orders. Look an order up before refunding it.",
        model=model,
        tools=list(tools),
    )


async def demo(base_url: str, token: str, *, order_id: str, look_up: bool, amount: float, timeout: float) -> str:
    agents.set_tracing_disabled(True)
    script: list[list[TResponseOutputItem] | Responder] = []
    if look_up:
        script.append(tool_call("get_order", {"order_id": order_id}))
    script += [tool_call("refund", {"order_id": order_id, "amount": amount}), reply_with_last_tool_output]
    refunds: list[dict[str, Any]] = []
    async with gate_client.AsyncGate(base_url, token) as gate:
        approvals = GateApprovals(gate, action_types={"refund": "refund"})
        agent = support_agent(ScriptedModel(script), support_tools(approvals, refunds))
        run = await run_with_gate(agent, f"My order {order_id} arrived broken", approvals, timeout=timeout)
    for action in run.actions:
        print(f"{action.action_type} {action.id}: {action.status} ({action.reason})")
    print(f"refunds made: {refunds}")
    return str(run.result.final_output)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base-url", default="http://127.0.0.1:8000")
    parser.add_argument("--token", required=True, help="an agent token from `manage.py create_agent`")
    parser.add_argument("--order", default="A-1001", help="the order to refund")
    parser.add_argument("--amount", type=float, default=20)
    parser.add_argument(
        "--skip-lookup", action="store_true", help="refund without get_order first: the gate holds it for review"
    )
    parser.add_argument("--timeout", type=float, default=120, help="seconds to wait for a reviewer")
    args = parser.parse_args()
    final = asyncio.run(
        demo(
            args.base_url,
            args.token,
            order_id=args.order,
            look_up=not args.skip_lookup,
            amount=args.amount,
            timeout=args.timeout,
        )
    )
    print(f"agent: {final}")


if __name__ == "__main__":
    main()
