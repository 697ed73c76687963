"""A plain Python agent loop gated by Autonomy Gate, with a scripted model (runs offline).

    python examples/agents/plain_loop.py --base-url http://127.0.0.1:8000 --token gat_...

The model proposes tool calls; read-only tools run at once, state-changing ones go through the
gate with everything the agent did so far as the trajectory, under an idempotency key made from the
model's tool-call id (``gate_client.tool_call``: the same call re-run finds the same action). The
decorator returns refusals as values (``on_refusal="return"``): a ``Refusal``'s ``message`` goes back
to the model as the tool's result, so that it can explain or change course; a call still undecided
after the timeout is withdrawn and reported as such, never taken as a "no". ``last_actions`` keeps
each gated call's action (its id, status, decision) for the agent's own log.
"""

from __future__ import annotations

import argparse
import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import gate_client


@dataclass
class ToolCall:
    tool: str
    args: dict[str, Any]
    id: str = field(default_factory=lambda: f"call_{uuid.uuid4().hex[:12]}")


@dataclass
class Reply:
    text: str


Step = ToolCall | Reply


class ScriptedModel:
    """Stands in for an LLM: plays a script, and records what it was shown (tool results)."""

    def __init__(self, script: list[Step]) -> None:
        self.script: Iterator[Step] = iter(script)
        self.seen: list[str] = []

    def next(self, last_result: str | None) -> Step:
        if last_result is not None:
            self.seen.append(last_result)
        return next(self.script, Reply("Is there anything else I can do?"))


@dataclass
class Agent:
    gate: gate_client.Gate
    model: ScriptedModel
    read_tools: dict[str, Callable[..., Any]]
    write_tools: dict[str, Callable[..., Any]]  # tool name -> function; the action type is the tool name
    timeout: float = 60.0
    session_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    trajectory: list[dict[str, Any]] = field(default_factory=list)
    last_actions: list[gate_client.Action] = field(default_factory=list)

    def run(self, user_message: str, max_turns: int = 10) -> str:
        self.trajectory.append({"kind": "message", "role": "user", "content": user_message})
        result: str | None = None
        for _ in range(max_turns):
            step = self.model.next(result)
            if isinstance(step, Reply):
                self.trajectory.append({"kind": "message", "role": "assistant", "content": step.text})
                return step.text
            result = self.call(step)
        return "(stopped after too many turns)"

    def call(self, call: ToolCall) -> str:
        if call.tool in self.read_tools:
            output = json.dumps(self.read_tools[call.tool](**call.args))
        elif call.tool in self.write_tools:
            output = self.gated(call)
        else:
            output = f"Error: no tool named {call.tool}"
        self.trajectory.append({"kind": "tool_call", "tool": call.tool, "args": call.args, "result": output})
        return output

    def gated(self, call: ToolCall) -> str:
        tool = gate_client.requires_approval(
            self.gate,
            action_type=call.tool,
            trajectory=list(self.trajectory),
            context={"session_id": self.session_id},
            timeout=self.timeout,
            on_refusal="return",
        )(self.write_tools[call.tool])
        try:
            with gate_client.tool_call(call.id):
                result = tool(**call.args)
        except gate_client.ParamsNotApplicable as edited:
            return f"Not done: a reviewer approved other arguments this tool does not take: {edited.reason}"
        finally:
            if tool.last_action is not None:
                self.last_actions.append(tool.last_action)
        if isinstance(result, gate_client.Refusal | gate_client.PendingAction):
            return f"Not done. {result.message}"
        return json.dumps(result)


# --- a demo shop --------------------------------------------------------------------------------

ORDERS = {"A-1": {"order_id": "A-1", "total": 80, "status": "delivered"}}
REFUNDS: list[dict[str, Any]] = []


def get_order(order_id: str) -> dict[str, Any]:
    return ORDERS.get(order_id, {"error": f"no order {order_id}"})


def refund(order_id: str, amount: float) -> dict[str, Any]:
    REFUNDS.append({"order_id": order_id, "amount": amount})
    return {"refund_id": f"R-{len(REFUNDS)}", "order_id": order_id, "amount": amount}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base-url", default="http://127.0.0.1:8000")
    parser.add_argument("--token", required=True, help="an agent token from `manage.py create_agent`")
    args = parser.parse_args()
    model = ScriptedModel(
        [
            ToolCall("get_order", {"order_id": "A-1"}),
            ToolCall("refund", {"order_id": "A-1", "amount": 20}),
            Reply("I refunded 20 on order A-1."),
        ]
    )
    with gate_client.Gate(args.base_url, args.token) as gate:
        agent = Agent(gate=gate, model=model, read_tools={"get_order": get_order}, write_tools={"refund": refund})
        print(agent.run("My blender from order A-1 arrived broken; please refund 20."))
    print("the model was shown:", *model.seen, sep="\n  ")


if __name__ == "__main__":
    main()
