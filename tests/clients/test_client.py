"""The gate_client package against the real stack: uvicorn serving the ASGI app, a real Celery
worker evaluating, PostgreSQL and Redis; a reviewer deciding through the API."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from typing import Any

import gate_client
import httpx
import pytest

from approvals.integrations import webhooks
from approvals.models import AuditEvent, ProposedAction
from tests.agents_stack import Stack, in_thread
from tests.conftest import LOOKED_UP, ROOT

pytestmark = [pytest.mark.worker, pytest.mark.server, pytest.mark.django_db(transaction=True)]


def test_propose_waits_for_the_automatic_decision_with_a_default_idempotency_key(stack: Stack) -> None:
    action = stack.gate.propose("refund", {"order_id": "A-1", "amount": 20}, trajectory=LOOKED_UP, wait=10)
    assert action.status == "auto_approved"
    assert action.approved
    assert action.final
    assert action["idempotency_key"].startswith("gate-client/")
    again = stack.gate.propose(
        "refund", {"order_id": "A-1", "amount": 20}, trajectory=LOOKED_UP, idempotency_key=action["idempotency_key"]
    )
    assert again.id == action.id
    assert ProposedAction.objects.count() == 1


def test_the_decorated_function_runs_only_after_a_reviewer_approves(stack: Stack) -> None:
    calls: list[dict[str, Any]] = []

    @gate_client.requires_approval(stack.gate, action_type="refund", trajectory=LOOKED_UP, timeout=30)
    def refund(order_id: str, amount: float) -> dict[str, Any]:
        calls.append({"order_id": order_id, "amount": amount})
        return {"refund_id": "R-1"}

    thread, outcome = in_thread(lambda: refund("A-9", amount=20))  # A-9 was never looked up: held
    action_id = stack.held_action_id()
    time.sleep(0.3)
    assert calls == []  # held: the function has not run

    stack.decide(action_id, "approve", "customer confirmed by phone")
    thread.join(20)
    assert outcome == {"value": {"refund_id": "R-1"}}
    assert calls == [{"order_id": "A-9", "amount": 20}]
    stored = ProposedAction.objects.get(pk=action_id)
    assert stored.params == {"order_id": "A-9", "amount": 20}
    assert (stored.status, stored.outcome_executed, stored.outcome_result) == ("approved", True, {"refund_id": "R-1"})


def test_a_rejection_raises_with_the_reviewer_s_reason_and_nothing_runs(stack: Stack) -> None:
    calls: list[Any] = []

    @gate_client.requires_approval(stack.gate, action_type="refund", trajectory=LOOKED_UP, timeout=30)
    def refund(order_id: str, amount: float) -> None:
        calls.append(order_id)

    thread, outcome = in_thread(lambda: refund("A-9", 20))
    stack.decide(stack.held_action_id(), "reject", "order A-9 belongs to another customer")
    thread.join(20)
    error = outcome["error"]
    assert isinstance(error, gate_client.ActionRejected)
    assert error.status == "rejected"
    assert "order A-9 belongs to another customer" in error.reason
    assert "lead" in error.reason
    assert calls == []


def test_a_blocked_call_raises_with_the_policy_s_findings(stack: Stack) -> None:
    @gate_client.requires_approval(stack.gate, action_type="refund")
    def refund(order_id: str, amount: Any) -> None:
        raise AssertionError("must not run")

    with pytest.raises(gate_client.ActionBlocked) as blocked:
        refund("A-1", "everything")
    assert "params_schema" in blocked.value.reason


def test_an_undecided_call_times_out_explicitly_and_is_withdrawn(stack: Stack) -> None:
    @gate_client.requires_approval(stack.gate, action_type="refund", trajectory=LOOKED_UP, timeout=1.5)
    def refund(order_id: str, amount: float) -> None:
        raise AssertionError("must not run")

    started = time.monotonic()
    with pytest.raises(gate_client.ApprovalTimeout) as timeout:
        refund("A-9", 20)
    assert 1.5 <= time.monotonic() - started < 10
    assert timeout.value.cancelled
    assert not isinstance(timeout.value, gate_client.NotApproved)  # a timeout is not a refusal
    assert ProposedAction.objects.get(pk=timeout.value.action.id).status == "cancelled"


def test_a_failure_of_the_function_is_reported_and_re_raised(stack: Stack) -> None:
    @gate_client.requires_approval(stack.gate, action_type="refund", trajectory=LOOKED_UP)
    def refund(order_id: str, amount: float) -> None:
        raise RuntimeError("payment gateway down")

    with pytest.raises(RuntimeError, match="payment gateway down"):
        refund("A-1", 20)
    stored = ProposedAction.objects.get()
    assert (stored.status, stored.outcome_executed) == ("auto_approved", False)
    assert stored.outcome_error == "RuntimeError: payment gateway down"


def test_wait_cancel_and_report_directly(stack: Stack) -> None:
    held = stack.gate.propose("refund", {"order_id": "A-9", "amount": 20}, trajectory=LOOKED_UP, wait=10)
    assert held.status == "needs_review"
    assert stack.gate.wait(held.id, timeout=0.5).status == "needs_review"
    assert stack.gate.cancel(held.id).status == "cancelled"
    assert stack.gate.cancel(held.id).status == "cancelled"  # a retried cancel is done, not an error

    done = stack.gate.propose("refund", {"order_id": "A-1", "amount": 5}, trajectory=LOOKED_UP, wait=10)
    assert stack.gate.report(done.id, executed=True, result={"ok": 1}).data["outcome"]["executed"] is True
    assert stack.gate.report(done.id, executed=True).data["outcome"]["result"] == {"ok": 1}  # retried: once
    with pytest.raises(gate_client.ConflictError):
        stack.gate.report(done.id, executed=False)
    assert AuditEvent.objects.filter(action_id=done.id, event="outcome_reported").count() == 1


class FlakyTransport(httpx.HTTPTransport):
    """Drops the first ``failures`` requests before they reach the server (a network error)."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures
        self.attempts = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.attempts += 1
        if self.attempts <= self.failures:
            raise httpx.ConnectError("connection refused (simulated drop)", request=request)
        return super().handle_request(request)


def test_network_errors_are_retried_and_the_key_keeps_it_one_action(stack: Stack) -> None:
    transport = FlakyTransport(failures=2)
    with gate_client.Gate(stack.base_url, stack.agent.token, transport=transport, backoff=0.01) as gate:
        action = gate.propose("refund", {"order_id": "A-1", "amount": 20}, trajectory=LOOKED_UP, wait=10)
    assert transport.attempts == 3
    assert action.status == "auto_approved"
    assert ProposedAction.objects.count() == 1


def test_errors_are_typed(stack: Stack) -> None:
    with pytest.raises(gate_client.InvalidRequestError) as invalid:
        stack.gate.propose("no_such_type", {})
    assert invalid.value.status_code == 400
    with gate_client.Gate(stack.base_url, "gat_wrong") as stranger, pytest.raises(gate_client.AuthenticationError):
        stranger.propose("refund", {"order_id": "A-1", "amount": 1})
    with pytest.raises(gate_client.NotFoundError):
        stack.gate.get("00000000-0000-0000-0000-000000000000")
    nowhere = gate_client.Gate("http://127.0.0.1:9", "t", retries=1, backoff=0.01)
    with nowhere, pytest.raises(gate_client.GateError, match="cannot reach the gate"):
        nowhere.get("x")


def test_the_async_client_and_decorator(stack: Stack) -> None:
    async def scenario() -> tuple[Any, Any]:
        async with gate_client.AsyncGate(stack.base_url, stack.agent.token) as gate:

            @gate_client.requires_approval(gate, action_type="refund", trajectory=LOOKED_UP, timeout=30)
            async def refund(order_id: str, amount: float) -> str:
                return f"refunded {amount} on {order_id}"

            approved = await refund("A-1", 20)
            task = asyncio.create_task(refund("A-9", 20))
            action_id = await asyncio.to_thread(stack.held_action_id)
            await asyncio.to_thread(stack.decide, action_id, "reject", "not this one")
            with pytest.raises(gate_client.ActionRejected) as rejected:
                await task
            return approved, rejected.value.reason

    approved, reason = asyncio.run(scenario())
    assert approved == "refunded 20 on A-1"
    assert "not this one" in reason


def test_the_client_verifies_the_gate_s_webhook_signatures() -> None:
    body = json.dumps({"id": "x", "status": "approved"}).encode()
    header = webhooks.sign("whsec_s", body)
    assert gate_client.verify_signature("whsec_s", body, header)
    assert not gate_client.verify_signature("whsec_s", body + b" ", header)
    assert not gate_client.verify_signature("whsec_other", body, header)


def test_the_client_needs_no_django() -> None:
    code = "import sys, gate_client; sys.exit(any(m == 'django' or m.startswith('django.') for m in sys.modules))"
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT / "clients", check=False).returncode == 0
