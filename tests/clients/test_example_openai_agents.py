"""examples/agents/openai_agents_sdk.py: the OpenAI Agents SDK's tool approvals decided by the gate,
against the real stack (uvicorn, a Celery worker, PostgreSQL, Redis); a reviewer decides through the API.
The model is scripted (an ``agents.models.interface.Model``): no OpenAI call, no key, tracing off."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import agents
import gate_client
import httpx
import pytest
from rest_framework.authtoken.models import Token

from approvals.gate.policies import policies_import
from approvals.models import AuditEvent, ProposedAction
from tests.agents_stack import first_held_action_id, load_example
from tests.conftest import ROOT, TEST_POLICY
from tests.factories import AgentFactory, ReviewerFactory

pytestmark = [pytest.mark.worker, pytest.mark.server, pytest.mark.django_db(transaction=True)]

EXAMPLE_PATH = ROOT / "examples" / "agents" / "openai_agents_sdk.py"


@dataclass
class Setup:
    example: ModuleType
    base_url: str
    token: str
    reviewer: httpx.Client

    def held_action_id(self, seconds: float = 20) -> str:
        return first_held_action_id(self.reviewer, seconds)

    def decide(self, action_id: str, verdict: str, reason: str) -> None:
        response = self.reviewer.post(
            f"/api/v1/actions/{action_id}/decision", json={"verdict": verdict, "reason": reason}
        )
        assert response.status_code == 200, response.text


@pytest.fixture
def setup(asgi_server: str) -> Iterator[Setup]:
    agents.set_tracing_disabled(True)
    policies_import(document=TEST_POLICY, actor="test")
    reviewer = httpx.Client(
        base_url=asgi_server,
        headers={"Authorization": f"Token {Token.objects.create(user=ReviewerFactory(username='lead')).key}"},
    )
    yield Setup(load_example("openai_agents_sdk.py"), asgi_server, AgentFactory(name="support-bot").token, reviewer)
    reviewer.close()


def tool_outputs(model_input: list[dict[str, Any]]) -> list[str]:
    return [str(item["output"]) for item in model_input if item.get("type") == "function_call_output"]


def test_a_refund_of_a_looked_up_order_is_auto_approved_runs_once_and_is_reported(setup: Setup) -> None:
    ex = setup.example
    refunds: list[dict[str, Any]] = []
    model = ex.ScriptedModel(
        [
            ex.tool_call("get_order", {"order_id": "A-1"}, call_id="call_lookup"),
            ex.tool_call("refund", {"order_id": "A-1", "amount": 20}, call_id="call_refund"),
            ex.reply_with_last_tool_output,
        ]
    )

    async def scenario() -> Any:
        async with gate_client.AsyncGate(setup.base_url, setup.token) as gate:
            approvals = ex.GateApprovals(gate, action_types={"refund": "refund"})
            agent = ex.support_agent(model, ex.support_tools(approvals, refunds))
            return await ex.run_with_gate(agent, "My order A-1 arrived broken", approvals, session_id="s-1", timeout=30)

    run = asyncio.run(scenario())
    assert refunds == [{"order_id": "A-1", "amount": 20.0}]  # ran once
    assert [a.status for a in run.actions] == ["auto_approved"]
    assert '"refund_id": "R-1"' in run.result.final_output
    assert '"refund_id": "R-1"' in tool_outputs(model.inputs[-1])[-1]  # the model saw the tool's output

    stored = ProposedAction.objects.get()
    assert stored.status == "auto_approved"
    assert stored.params == {"order_id": "A-1", "amount": 20}
    assert stored.context == {"session_id": "s-1"}
    assert stored.idempotency_key == f"openai-agents/{run.run_id}/call_refund"
    # The conversation so far, as OpenAI messages: the lookup and its result, not the refund being proposed.
    assert stored.trajectory_raw["format"] == "openai"
    messages = stored.trajectory_raw["messages"]
    assert messages[0] == {"role": "user", "content": "My order A-1 arrived broken"}
    calls = [c["function"]["name"] for m in messages for c in m.get("tool_calls") or []]
    assert calls == ["get_order"]
    steps = [(s["kind"], s["tool"], s["args"], s["result"]) for s in stored.trajectory]  # as the gate read it
    assert steps == [
        ("message", "", {}, None),
        ("tool_call", "get_order", {"order_id": "A-1"}, {"order_id": "A-1", "total": 80, "status": "delivered"}),
    ]
    assert stored.outcome_executed is True
    assert stored.outcome_result == {"refund_id": "R-1", "order_id": "A-1", "amount": 20.0}
    assert run.reported[str(stored.pk)].data["outcome"]["executed"] is True


def test_a_held_refund_runs_once_only_after_the_reviewer_approves(setup: Setup) -> None:
    ex = setup.example
    refunds: list[dict[str, Any]] = []
    model = ex.ScriptedModel(
        [ex.tool_call("refund", {"order_id": "A-9", "amount": 20}), ex.reply_with_last_tool_output]
    )

    async def scenario() -> tuple[Any, list[dict[str, Any]]]:
        async with gate_client.AsyncGate(setup.base_url, setup.token) as gate:
            approvals = ex.GateApprovals(gate, action_types={"refund": "refund"})
            agent = ex.support_agent(model, ex.support_tools(approvals, refunds))
            task = asyncio.create_task(ex.run_with_gate(agent, "Refund 20 on my order A-9", approvals, timeout=30))
            action_id = await asyncio.to_thread(setup.held_action_id)  # A-9 was never looked up: held
            await asyncio.sleep(0.5)
            before = list(refunds)
            assert not task.done()  # run_with_gate is waiting on the gate's long poll
            await asyncio.to_thread(setup.decide, action_id, "approve", "customer confirmed by phone")
            return await asyncio.wait_for(task, 30), before

    run, before_approval = asyncio.run(scenario())
    assert before_approval == []  # held: the tool had not run
    assert refunds == [{"order_id": "A-9", "amount": 20.0}]  # exactly once, after the approval
    assert [a.status for a in run.actions] == ["approved"]
    assert '"refund_id": "R-1"' in run.result.final_output

    stored = ProposedAction.objects.get()
    assert (stored.status, stored.outcome_executed) == ("approved", True)
    assert stored.outcome_result == {"refund_id": "R-1", "order_id": "A-9", "amount": 20.0}
    events = list(AuditEvent.objects.filter(action_id=stored.pk).order_by("pk").values_list("event", flat=True))
    assert events.count("outcome_reported") == 1
    assert events.index("outcome_reported") > events.index("decided")


def test_a_rejected_refund_never_runs_and_the_model_reads_the_reviewer_s_reason(setup: Setup) -> None:
    ex = setup.example
    refunds: list[dict[str, Any]] = []
    model = ex.ScriptedModel(
        [ex.tool_call("refund", {"order_id": "A-9", "amount": 20}), ex.reply_with_last_tool_output]
    )

    async def scenario() -> Any:
        async with gate_client.AsyncGate(setup.base_url, setup.token) as gate:
            approvals = ex.GateApprovals(gate, action_types={"refund": "refund"})
            agent = ex.support_agent(model, ex.support_tools(approvals, refunds))
            task = asyncio.create_task(ex.run_with_gate(agent, "Refund 20 on A-9", approvals, timeout=30))
            action_id = await asyncio.to_thread(setup.held_action_id)
            await asyncio.to_thread(setup.decide, action_id, "reject", "order A-9 belongs to another customer")
            return await asyncio.wait_for(task, 30)

    run = asyncio.run(scenario())
    assert refunds == []  # never ran
    assert [a.status for a in run.actions] == ["rejected"]
    seen = tool_outputs(model.inputs[-1])  # what the model was given in place of the tool's output
    assert len(seen) == 1
    assert "refused" in seen[0]
    assert "order A-9 belongs to another customer" in seen[0]
    assert "lead" in seen[0]  # the reviewer
    assert "order A-9 belongs to another customer" in run.result.final_output
    stored = ProposedAction.objects.get()
    assert (stored.status, stored.outcome_executed) == ("rejected", None)


def test_an_undecided_call_times_out_explicitly_and_is_withdrawn(setup: Setup) -> None:
    ex = setup.example
    refunds: list[dict[str, Any]] = []
    model = ex.ScriptedModel(
        [ex.tool_call("refund", {"order_id": "A-9", "amount": 20}), ex.reply_with_last_tool_output]
    )

    async def scenario() -> None:
        async with gate_client.AsyncGate(setup.base_url, setup.token) as gate:
            approvals = ex.GateApprovals(gate, action_types={"refund": "refund"})
            agent = ex.support_agent(model, ex.support_tools(approvals, refunds))
            await ex.run_with_gate(agent, "Refund 20 on A-9", approvals, timeout=1.5)

    started = time.monotonic()
    with pytest.raises(gate_client.ApprovalTimeout) as timeout:
        asyncio.run(scenario())
    assert 1.5 <= time.monotonic() - started < 15
    assert timeout.value.cancelled
    assert not isinstance(timeout.value, gate_client.NotApproved)  # not a refusal
    assert refunds == []
    assert ProposedAction.objects.get().status == "cancelled"
    assert len(model.inputs) == 1  # the model was not told "no": the run stopped


def test_the_demo_runs_from_the_command_line(setup: Setup) -> None:
    done = subprocess.run(
        [sys.executable, str(EXAMPLE_PATH), "--base-url", setup.base_url, "--token", setup.token, "--order", "A-1"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env={k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"},
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "auto_approved" in done.stdout
    assert "refunds made: [{'order_id': 'A-1', 'amount': 20.0}]" in done.stdout
    assert ProposedAction.objects.get().outcome_executed is True
