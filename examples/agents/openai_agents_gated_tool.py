"""The shortest way to gate an OpenAI Agents SDK tool: ``gated_function_tool``.

    python examples/agents/openai_agents_gated_tool.py --base-url http://127.0.0.1:8000 --token gat_...

``openai_agents_sdk.py`` answers the SDK's ``needs_approval`` interruptions with the gate (the run
pauses between turns). This adapter instead gates inside the tool: the function is wrapped with
``gate_client.requires_approval(..., on_refusal="return")`` and becomes a ``FunctionTool`` whose
invocation

- proposes the call under an idempotency key made from the SDK's tool-call id
  (``with gate_client.tool_call(ctx.tool_call_id)``), so a re-run of the same call finds the same
  action instead of making a second;
- waits for the decision (the gate's long poll), then runs the function with the approved params
  (a reviewer's edit included) and reports the outcome;
- already carried out (the same tool call re-run after it ran): not run again; the recorded
  result is the output;
- refused or still undecided: returns the gate's ``Refusal.message`` / ``PendingAction.message``
  as the tool's output, which the SDK hands to the model: nothing is raised, nothing runs.

The scripted model of ``openai_agents_sdk.py`` plays the LLM, so the demo runs offline.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import agents
import gate_client
from agents import Agent, FunctionTool, Runner, function_tool
from agents.tool_context import ToolContext

sys.path.insert(0, str(Path(__file__).resolve().parent))
import openai_agents_sdk as sdk


@dataclass
class GatedFunctionTool(FunctionTool):
    """A ``FunctionTool`` with its ``GatedFunction``: ``tool.gated.last_action`` is the gate's
    action for the latest call (its id, status, decision)."""

    gated: gate_client.GatedFunction[..., Any] | None = None


def gated_function_tool(
    gate: gate_client.AsyncGate,
    function: Callable[..., Any],
    *,
    action_type: str | None = None,
    timeout: float | None = 120.0,
    context: Mapping[str, Any] | None = None,
    rationale: str | Callable[..., Any] | None = None,
) -> GatedFunctionTool:
    """``function`` (an ``async def``; its signature and docstring make the tool's schema) as a tool
    whose every call the gate decides first. The return value when it runs (JSON text unless a
    string); the gate's explanation as the output when it does not."""
    gated = gate_client.requires_approval(
        gate,
        action_type=action_type or function.__name__,
        context=context,
        rationale=rationale,
        timeout=timeout,
        cancel_on_timeout=False,  # undecided: the model is told it waits; a human may still approve
        on_refusal="return",
    )(function)
    schema = function_tool(function)

    async def invoke(ctx: ToolContext[Any], arguments: str) -> str:
        params = json.loads(arguments) if arguments.strip() else {}
        with gate_client.tool_call(ctx.tool_call_id):
            try:
                result = await gated(**params)
            except gate_client.AlreadyExecuted as done:  # a re-run of a call that already ran
                recorded = (done.action.outcome or {}).get("result")
                return (
                    f"This call was already carried out (action {done.action.id}); its result: {json.dumps(recorded)}"
                )
        if isinstance(result, gate_client.Refusal | gate_client.PendingAction):
            return result.message
        return result if isinstance(result, str) else json.dumps(result, default=str)

    return GatedFunctionTool(
        name=schema.name,
        description=schema.description,
        params_json_schema=schema.params_json_schema,
        on_invoke_tool=invoke,
        strict_json_schema=schema.strict_json_schema,
        gated=gated,
    )


async def demo(base_url: str, token: str, order_id: str, amount: float, timeout: float) -> str:
    agents.set_tracing_disabled(True)
    refunds: list[dict[str, Any]] = []

    async def refund(order_id: str, amount: float) -> str:
        """Refund ``amount`` on an order."""
        refunds.append({"order_id": order_id, "amount": amount})
        print(f"    $$ refund of {amount} on {order_id} carried out")
        return json.dumps({"refund_id": f"R-{len(refunds)}", "order_id": order_id, "amount": amount})

    async with gate_client.AsyncGate(base_url, token) as gate:
        tool = gated_function_tool(gate, refund, timeout=timeout)
        model = sdk.ScriptedModel(
            [sdk.tool_call("refund", {"order_id": order_id, "amount": amount}), sdk.reply_with_last_tool_output]
        )
        agent = Agent(name="support-bot", instructions="Help customers.", model=model, tools=[tool])
        result = await Runner.run(agent, f"Please refund {amount:g} on {order_id}")
    action = tool.gated.last_action if tool.gated else None
    if action is not None:
        print(f"gate: {action.action_type} {action.id}: {action.status} ({action.reason})")
    return str(result.final_output)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base-url", default="http://127.0.0.1:8000")
    parser.add_argument("--token", required=True, help="an agent token from `manage.py create_agent`")
    parser.add_argument("--order", default="A-1001")
    parser.add_argument("--amount", type=float, default=20)
    parser.add_argument("--timeout", type=float, default=120, help="seconds to wait for a reviewer")
    args = parser.parse_args()
    print(f"agent: {asyncio.run(demo(args.base_url, args.token, args.order, args.amount, args.timeout))}")


if __name__ == "__main__":
    main()
