"""examples/agents/plain_loop.py against the real stack (uvicorn, a Celery worker, PostgreSQL, Redis)."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import gate_client
import httpx
import pytest
from rest_framework.authtoken.models import Token

from approvals.gate.policies import policies_import
from approvals.models import ProposedAction
from tests.agents_stack import first_held_action_id, load_example
from tests.conftest import ROOT, TEST_POLICY
from tests.factories import AgentFactory, ReviewerFactory

pytestmark = [pytest.mark.worker, pytest.mark.server, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def setup(asgi_server: str) -> Any:
    policies_import(document=TEST_POLICY, actor="test")
    example = load_example("plain_loop.py")
    agent = AgentFactory()
    reviewer = httpx.Client(
        base_url=asgi_server,
        headers={"Authorization": f"Token {Token.objects.create(user=ReviewerFactory()).key}"},
    )
    gate = gate_client.Gate(asgi_server, agent.token)
    yield example, gate, reviewer
    gate.close()
    reviewer.close()


def test_a_looked_up_refund_goes_through_and_the_model_sees_the_result(setup: Any) -> None:
    example, gate, _ = setup
    model = example.ScriptedModel(
        [
            example.ToolCall("get_order", {"order_id": "A-1"}),
            example.ToolCall("refund", {"order_id": "A-1", "amount": 20}),
            example.Reply("done"),
        ]
    )
    agent = example.Agent(
        gate=gate, model=model, read_tools={"get_order": example.get_order}, write_tools={"refund": example.refund}
    )
    assert agent.run("refund 20 on A-1 please") == "done"
    assert example.REFUNDS == [{"order_id": "A-1", "amount": 20}]
    assert '"refund_id": "R-1"' in model.seen[-1]
    action = ProposedAction.objects.get()
    assert action.status == "auto_approved"
    assert action.context == {"session_id": agent.session_id}
    assert [s["tool"] for s in action.trajectory if s["kind"] == "tool_call"] == ["get_order"]
    assert action.outcome_executed is True


def test_a_rejected_refund_never_runs_and_the_model_is_told_why(setup: Any) -> None:
    example, gate, reviewer = setup
    model = example.ScriptedModel(
        [example.ToolCall("refund", {"order_id": "A-9", "amount": 20}, id="call_A9"), example.Reply("sorry")]
    )
    agent = example.Agent(gate=gate, model=model, read_tools={}, write_tools={"refund": example.refund}, timeout=30)
    answer: dict[str, str] = {}
    thread = threading.Thread(target=lambda: answer.setdefault("text", agent.run("refund A-9")), daemon=True)
    thread.start()
    decided = reviewer.post(
        f"/api/v1/actions/{first_held_action_id(reviewer)}/decision",
        json={"verdict": "reject", "reason": "A-9 was never looked up; ask for the order number again"},
    )
    assert decided.status_code == 200
    thread.join(20)
    assert answer == {"text": "sorry"}
    assert example.REFUNDS == []
    assert len(model.seen) == 1
    assert model.seen[0].startswith('Not done. refund({"amount": 20, "order_id": "A-9"}) was rejected by a reviewer')
    assert "A-9 was never looked up; ask for the order number again" in model.seen[0]
    (action,) = agent.last_actions
    stored = ProposedAction.objects.get()
    assert (action.id, action.status) == (str(stored.id), "rejected")
    assert stored.idempotency_key == "tool-call/refund/call_A9"


def test_the_example_runs_as_a_script(setup: Any, asgi_server: str) -> None:
    _, gate, _ = setup
    token = gate.headers["Authorization"].removeprefix("Bearer ")
    done = subprocess.run(
        [
            sys.executable,
            str(Path(ROOT, "examples", "agents", "plain_loop.py")),
            "--base-url",
            asgi_server,
            "--token",
            token,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "I refunded 20 on order A-1." in done.stdout
