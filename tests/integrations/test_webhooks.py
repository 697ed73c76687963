"""Signed webhooks (contract §4): a receiver on loopback gets signed, retried deliveries; private
targets are refused on their resolved address, with nothing sent to them."""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from django.test import override_settings

from approvals.gate.policies import policies_import
from approvals.gate.representation import action_representation
from approvals.gate.services import action_evaluate, action_propose, request_fingerprint
from approvals.integrations import webhooks
from approvals.integrations.services import webhook_deliver, webhook_redeliver
from approvals.models import ActionType, Agent, AuditEvent, ProposedAction, WebhookDelivery
from approvals.review.services import action_decide
from tests.conftest import LOOKED_UP
from tests.factories import AgentFactory, ReviewerFactory

# Every socket.connect made in this process, recorded by an audit hook, so that a test can prove
# that a refused target was never contacted.
_connects: list[Any] = []
_recording = threading.Event()


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if event == "socket.connect" and _recording.is_set():
        _connects.append(args[1])


sys.addaudithook(_audit)


class Receiver:
    """An HTTP server on 127.0.0.1 that records requests and answers with scripted statuses."""

    def __init__(self, statuses: list[int] | None = None) -> None:
        self.requests: list[dict[str, Any]] = []
        self.statuses = list(statuses or [])
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.requests.append({"headers": dict(self.headers), "body": body, "path": self.path})
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://localhost:{self.server.server_address[1]}/hooks/gate"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def wait_for(self, count: int, seconds: float = 20) -> list[dict[str, Any]]:
        deadline = time.monotonic() + seconds
        while len(self.requests) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.requests

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.close()


def propose(agent: Agent, callback_url: str, params: dict[str, Any] | None = None) -> ProposedAction:
    params = params or {"order_id": "A-9", "amount": 20}  # not looked up: held
    body = {"action_type": "refund", "params": params, "trajectory": LOOKED_UP, "callback_url": callback_url}
    action, _ = action_propose(
        agent=agent,
        action_type=ActionType.objects.get(name="refund"),
        params=params,
        fingerprint=request_fingerprint(body),
        trajectory_raw=LOOKED_UP,
        callback_url=callback_url,
    )
    return action


# --- signatures -----------------------------------------------------------------------------------


def test_a_signature_verifies_and_any_change_breaks_it() -> None:
    header = webhooks.sign("whsec_x", b'{"a":1}', timestamp=1_700_000_000)
    assert header.startswith("t=1700000000,v1=")
    assert webhooks.verify("whsec_x", b'{"a":1}', header, now=1_700_000_010)
    assert not webhooks.verify("whsec_x", b'{"a":2}', header, now=1_700_000_010)
    assert not webhooks.verify("whsec_y", b'{"a":1}', header, now=1_700_000_010)
    assert not webhooks.verify("whsec_x", b'{"a":1}', header, now=1_700_000_000 + 3600)  # replayed late
    assert not webhooks.verify("whsec_x", b'{"a":1}', "v1=abc", now=1_700_000_010)
    assert not webhooks.verify("whsec_x", b'{"a":1}', "garbage", now=1_700_000_010)


# --- SSRF ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9/hook",
        "http://10.0.0.1/hook",
        "http://192.168.1.10:8080/hook",
        "http://172.16.5.4/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://100.64.0.1/hook",
        "http://[::1]:8080/hook",
        "http://[fd00::1]/hook",
        "http://[::ffff:10.0.0.1]/hook",
        "http://0.0.0.0/hook",
        "http://localhost:9/hook",
        "ftp://example.com/hook",
    ],
)
@override_settings(GATE_WEBHOOK_ALLOW_PRIVATE=False, GATE_WEBHOOK_ALLOWED_HOSTS=[])
def test_private_and_loopback_targets_are_refused_without_connecting(url: str) -> None:
    _connects.clear()
    _recording.set()
    try:
        with pytest.raises(webhooks.WebhookRefused):
            webhooks.post(url, b"{}", {})
    finally:
        _recording.clear()
    assert _connects == []


@pytest.mark.django_db
@override_settings(GATE_WEBHOOK_ALLOW_PRIVATE=False, GATE_WEBHOOK_ALLOWED_HOSTS=[])
def test_a_refused_delivery_fails_at_once_visible_and_unsent(policy_v1: int, receiver: Receiver) -> None:
    agent = AgentFactory()
    target = receiver.url.replace("localhost", "127.0.0.1")
    action = propose(agent, target)
    action_evaluate(action_id=str(action.id))
    delivery = WebhookDelivery.objects.get(action=action)
    _connects.clear()
    _recording.set()
    try:
        assert webhook_deliver(delivery_id=delivery.pk) == "failed"
    finally:
        _recording.clear()
    delivery.refresh_from_db()
    assert delivery.attempts == 1
    assert "private, loopback or reserved" in delivery.last_error
    assert receiver.requests == []
    assert _connects == []


@override_settings(GATE_WEBHOOK_ALLOW_PRIVATE=True)
def test_private_targets_are_allowed_when_the_setting_says_so(receiver: Receiver) -> None:
    url = receiver.url.replace("localhost", "127.0.0.1")
    assert webhooks.post(url, b"{}", {}).status_code == 200
    assert receiver.requests[0]["headers"]["Host"] == url.split("/")[2]


@override_settings(GATE_WEBHOOK_ALLOW_PRIVATE=False, GATE_WEBHOOK_ALLOWED_HOSTS=["localhost"])
def test_an_allow_listed_host_may_be_private(receiver: Receiver) -> None:
    assert webhooks.post(receiver.url, b"{}", {}).status_code == 200
    with pytest.raises(webhooks.WebhookRefused):
        webhooks.post(receiver.url.replace("localhost", "127.0.0.1"), b"{}", {})


# --- deliveries, in-process (eager Celery) --------------------------------------------------------------


@pytest.mark.django_db
def test_evaluated_and_decided_are_delivered_signed_with_the_representation(
    policy_v1: int, receiver: Receiver, django_capture_on_commit_callbacks: Any
) -> None:
    agent = AgentFactory()
    with django_capture_on_commit_callbacks(execute=True):
        action = propose(agent, receiver.url)
    evaluated = receiver.wait_for(1)[0]
    assert evaluated["path"] == "/hooks/gate"
    assert evaluated["headers"]["X-Gate-Event"] == "action.evaluated"
    assert webhooks.verify(agent.webhook_secret, evaluated["body"], evaluated["headers"]["X-Gate-Signature"])
    payload = json.loads(evaluated["body"])
    action.refresh_from_db()
    assert payload["id"] == str(action.id)
    assert payload["status"] == "needs_review"
    assert payload["findings"] == action.findings

    reviewer = ReviewerFactory()
    with django_capture_on_commit_callbacks(execute=True):
        action_decide(action_id=str(action.id), user=reviewer, verdict="reject", reason="order A-9 was never looked up")
    decided = receiver.wait_for(2)[1]
    assert decided["headers"]["X-Gate-Event"] == "action.decided"
    body = json.loads(decided["body"])
    assert body["status"] == "rejected"
    assert body["decision"]["reason"] == "order A-9 was never looked up"
    assert body["decision"]["by"] == reviewer.username
    assert body == json.loads(json.dumps(action_representation(ProposedAction.objects.get(pk=action.pk))))
    assert list(WebhookDelivery.objects.filter(action=action).values_list("state", flat=True)) == [
        "delivered",
        "delivered",
    ]


@pytest.mark.django_db
def test_no_callback_url_no_delivery(policy_v1: int) -> None:
    action = propose(AgentFactory(), "")
    action_evaluate(action_id=str(action.id))
    assert not WebhookDelivery.objects.exists()


@pytest.mark.django_db
def test_a_failed_delivery_can_be_redelivered(policy_v1: int, receiver: Receiver) -> None:
    agent = AgentFactory()
    action = propose(agent, receiver.url)
    action_evaluate(action_id=str(action.id))
    delivery = WebhookDelivery.objects.get(action=action)
    with override_settings(GATE_WEBHOOK_MAX_ATTEMPTS=1):
        receiver.statuses = [503]
        assert webhook_deliver(delivery_id=delivery.pk) == "failed"
    delivery.refresh_from_db()
    assert (delivery.last_status_code, delivery.last_error) == (503, "HTTP 503")

    again = webhook_redeliver(delivery=delivery, actor="user:admin")
    assert webhook_deliver(delivery_id=again.pk) == "delivered"
    assert receiver.requests[-1]["body"] == delivery.body.encode()
    assert AuditEvent.objects.filter(action=action, event="webhook_redelivered").count() == 1


# --- deliveries through a real worker, retried with backoff ---------------------------------------------


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_real_worker_retries_a_failing_receiver_until_it_answers(celery_worker_process: str) -> None:
    from tests.conftest import TEST_POLICY

    policies_import(document=TEST_POLICY, actor="test")
    server = Receiver(statuses=[500, 502])
    try:
        agent = AgentFactory()
        action = propose(agent, server.url)
        requests = server.wait_for(3, seconds=30)
        assert len(requests) == 3
        assert {r["headers"]["X-Gate-Event"] for r in requests} == {"action.evaluated"}
        assert all(webhooks.verify(agent.webhook_secret, r["body"], r["headers"]["X-Gate-Signature"]) for r in requests)
        deadline = time.monotonic() + 10
        delivery = WebhookDelivery.objects.get(action=action)
        while delivery.state != "delivered" and time.monotonic() < deadline:
            time.sleep(0.1)
            delivery.refresh_from_db()
        assert (delivery.state, delivery.attempts, delivery.last_status_code) == ("delivered", 3, 200)
    finally:
        server.close()


# --- at the door: a callback URL that names a private address outright ---------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    "url", ["http://10.0.0.1/hook", "http://127.0.0.1:8080/hook", "http://[::1]/hook", "http://169.254.169.254/"]
)
def test_a_literal_private_callback_is_refused_when_proposed(policy_v1: int, agent_client: Any, url: str) -> None:
    # A request first, so that the process's own connections (the rate limit's Redis) are open before
    # recording: run alone, this test's first request would otherwise record that connect.
    agent_client.get("/api/v1/actions/00000000-0000-0000-0000-000000000000")
    _connects.clear()
    _recording.set()
    try:
        response = agent_client.post(
            "/api/v1/actions",
            {"action_type": "refund", "params": {"order_id": "A-1", "amount": 1}, "callback_url": url},
            format="json",
        )
    finally:
        _recording.clear()
    assert response.status_code == 400
    assert "GATE_WEBHOOK_ALLOW_PRIVATE" in response.json()["callback_url"][0]
    assert not ProposedAction.objects.exists()
    assert _connects == []


@pytest.mark.django_db
def test_the_door_lets_through_allowed_and_public_targets(policy_v1: int, agent_client: Any) -> None:
    def propose_with(url: str) -> int:
        body = {"action_type": "refund", "params": {"order_id": "A-1", "amount": 1}, "callback_url": url}
        return int(agent_client.post("/api/v1/actions", body, format="json").status_code)

    # names are resolved only when delivering; nothing here runs the on-commit delivery
    assert propose_with("https://agent.example/hooks/gate") == 201
    assert propose_with("http://localhost:9/hooks") == 201  # allow-listed in the test settings
    with override_settings(GATE_WEBHOOK_ALLOWED_HOSTS=[]):
        assert propose_with("http://localhost:9/other") == 400
    with override_settings(GATE_WEBHOOK_ALLOW_PRIVATE=True):
        assert propose_with("http://10.0.0.1/hooks") == 201
