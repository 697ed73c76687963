"""examples/agents/langgraph_restart.py against the real stack (uvicorn, a Celery worker,
PostgreSQL, Redis): a first process stops with the pending handle and the graph's checkpoint saved,
a reviewer approves through the API, a second process resumes the thread and the refund runs once."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import gate_client
import pytest

from approvals.models import ProposedAction
from tests.agents_stack import Stack
from tests.conftest import ROOT

pytestmark = [pytest.mark.worker, pytest.mark.server, pytest.mark.django_db(transaction=True)]

EXAMPLE = ROOT / "examples" / "agents" / "langgraph_restart.py"


def run(stack: Stack, mode: str, directory: Path) -> str:
    command = [sys.executable, str(EXAMPLE), mode, "--dir", str(directory), "--base-url", stack.base_url]
    done = subprocess.run(
        [*command, "--token", stack.agent.token, "--timeout", "30"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_the_agent_stops_while_held_and_a_new_process_resumes_and_refunds_once(stack: Stack, tmp_path: Path) -> None:
    first = run(stack, "stop", tmp_path)

    assert "stopped; the handle is in" in first
    assert "carried out" not in first
    stored = ProposedAction.objects.get()
    assert stored.status == "needs_review"
    handle = gate_client.PendingAction.from_json((tmp_path / "pending.json").read_text())
    assert handle.action_id == str(stored.id)
    assert handle.params == {"order_id": "A-2002", "amount": 30}
    assert handle.extra["thread_id"].startswith("restart-")
    assert handle.review_url == f"{stack.base_url}/review/{stored.id}"
    assert stored.idempotency_key == f"langgraph/{handle.extra['thread_id']}/{handle.tool_call_id}"
    assert (tmp_path / "checkpoints.json").exists()

    stack.decide(handle.action_id, "approve", "customer confirmed by phone")
    second = run(stack, "resume", tmp_path)

    assert second.count("carried out") == 1, second
    assert f"refund {stored.id}: approved (customer confirmed by phone (lead))" in second
    assert "agent: Here is what happened:" in second
    stored.refresh_from_db()
    assert (stored.status, stored.outcome_executed) == ("approved", True)
    assert ProposedAction.objects.count() == 1

    third = run(stack, "resume", tmp_path)  # resumed again: the thread has moved on; nothing runs twice
    assert "carried out" not in third
    assert ProposedAction.objects.count() == 1
