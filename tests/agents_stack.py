"""What the client and agent-example tests share: the real stack seen from an agent and a reviewer."""

from __future__ import annotations

import importlib.util
import sys
import threading
import time
from types import ModuleType
from typing import Any

import gate_client
import httpx
from rest_framework.authtoken.models import Token

from approvals.gate.policies import policies_import
from tests.conftest import ROOT, TEST_POLICY
from tests.factories import AgentFactory, ReviewerFactory


def load_example(filename: str) -> ModuleType:
    """A script of examples/agents/ as a module (examples/ is not a package)."""
    path = ROOT / "examples" / "agents" / filename
    spec = importlib.util.spec_from_file_location(f"example_{path.stem}", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def first_held_action_id(reviewer: httpx.Client, seconds: float = 30) -> str:
    """The id of the first action in the review queue, once one arrives."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        queue = reviewer.get("/api/v1/review/queue").json()["results"]
        if queue:
            return str(queue[0]["id"])
        time.sleep(0.05)
    raise AssertionError("nothing was held for review")


class Stack:
    """TEST_POLICY imported, an agent with a client, and a reviewer (lead) deciding via the API."""

    def __init__(self, base_url: str) -> None:
        policies_import(document=TEST_POLICY, actor="test")
        self.base_url = base_url
        self.agent = AgentFactory()
        reviewer = ReviewerFactory(username="lead")
        self.reviewer = httpx.Client(
            base_url=base_url, headers={"Authorization": f"Token {Token.objects.create(user=reviewer).key}"}
        )
        self.gate = gate_client.Gate(base_url, self.agent.token, timeout=10)

    def decide(self, action_id: str, verdict: str, reason: str = "") -> None:
        response = self.reviewer.post(
            f"/api/v1/actions/{action_id}/decision", json={"verdict": verdict, "reason": reason}
        )
        assert response.status_code == 200, response.text

    def held_action_id(self, seconds: float = 30) -> str:
        return first_held_action_id(self.reviewer, seconds)

    def close(self) -> None:
        self.gate.close()
        self.reviewer.close()


def in_thread(call: Any) -> tuple[threading.Thread, dict[str, Any]]:
    """Run ``call`` in a thread (an agent blocked on a decision); its value or error lands in the
    returned dict for the test thread to check."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["value"] = call()
        except BaseException as exc:  # handed to the test thread
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome
