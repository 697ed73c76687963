"""OpenTelemetry (issue 18, part 5): with OTEL_EXPORTER_OTLP_ENDPOINT set, uvicorn and a real Celery
worker export a span for each proposal and each evaluation over OTLP/HTTP to a collector on loopback
(decoded with opentelemetry-proto), with the GenAI tool-call attributes and the gate's decision;
without it, tracing is off and costs the proposal path one test of a flag (a micro-benchmark ratio).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from approvals.gate.policies import policies_import
from approvals.ops import tracing
from tests.conftest import LOOKED_UP, TEST_POLICY, celery_worker, uvicorn_server
from tests.factories import AgentFactory

TRACE_PARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


class Collector(ThreadingHTTPServer):
    """An OTLP/HTTP trace receiver on loopback that keeps every span it is sent."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), CollectorHandler)
        self.spans: list[dict[str, Any]] = []
        self.lock = threading.Lock()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def matching(self, **attributes: Any) -> list[dict[str, Any]]:
        with self.lock:
            return [span for span in self.spans if attributes.items() <= span["attributes"].items()]


def _value(value: AnyValue) -> Any:
    return getattr(value, value.WhichOneof("value"))


class CollectorHandler(BaseHTTPRequestHandler):
    server: Collector

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        for resource_spans in request.resource_spans:
            resource = {item.key: _value(item.value) for item in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    found = {
                        "path": self.path,
                        "content_type": self.headers["Content-Type"],
                        "name": span.name,
                        "trace_id": span.trace_id.hex(),
                        "span_id": span.span_id.hex(),
                        "parent_span_id": span.parent_span_id.hex(),
                        "duration_ns": span.end_time_unix_nano - span.start_time_unix_nano,
                        "resource": resource,
                        "attributes": {item.key: _value(item.value) for item in span.attributes},
                    }
                    with self.server.lock:
                        self.server.spans.append(found)
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def collector() -> Iterator[Collector]:
    server = Collector()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def traced_stack(collector: Collector, tmp_path: Path) -> Iterator[str]:
    """uvicorn and a worker of their own (their own queue), both exporting to the collector."""
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": collector.endpoint,
        "OTEL_BSP_SCHEDULE_DELAY": "100",
        "OTEL_SERVICE_NAME": "gate-under-test",
        "GATE_QUEUE_PREFIX": "traced-",
    }
    with celery_worker(tmp_path / "worker.log", env=env), uvicorn_server(tmp_path / "uvicorn.log", env=env) as base:
        yield base


def _eventually(find: Any, timeout: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (found := find()) and time.monotonic() < deadline:
        time.sleep(0.1)
    return found


@pytest.mark.worker
@pytest.mark.server
@pytest.mark.django_db(transaction=True)
def test_proposals_and_evaluations_are_exported_as_tool_call_spans(traced_stack: str, collector: Collector) -> None:
    policies_import(document=TEST_POLICY, actor="test")
    agent = AgentFactory(name="traced-bot")
    headers = {"Authorization": f"Bearer {agent.token}"}
    refund = {"action_type": "refund", "trajectory": LOOKED_UP}

    small = httpx.post(
        f"{traced_stack}/api/v1/actions?wait=10",
        json={**refund, "params": {"order_id": "A-1", "amount": 20}},
        headers={**headers, "traceparent": TRACE_PARENT},
        timeout=20,
    )
    large = httpx.post(
        f"{traced_stack}/api/v1/actions",
        json={**refund, "params": {"order_id": "A-1", "amount": 500}},
        headers=headers,
        timeout=20,
    )
    assert (small.status_code, large.status_code) == (201, 201)
    small_id, large_id = small.json()["id"], large.json()["id"]
    assert small.json()["status"] == "auto_approved"

    proposed = _eventually(lambda: collector.matching(**{"gen_ai.tool.call.id": small_id, "gate.stage": "propose"}))
    evaluated = _eventually(lambda: collector.matching(**{"gen_ai.tool.call.id": large_id, "gate.stage": "evaluate"}))
    assert proposed, collector.spans
    assert evaluated, collector.spans

    [span] = proposed
    assert span["name"] == "execute_tool refund"
    assert span["path"] == "/v1/traces"
    assert span["content_type"] == "application/x-protobuf"
    assert span["resource"]["service.name"] == "gate-under-test"
    # The agent's trace goes on through the gate.
    assert (span["trace_id"], span["parent_span_id"]) == (TRACE_PARENT[3:35], TRACE_PARENT[36:52])
    assert span["attributes"] == {
        "gen_ai.operation.name": "execute_tool",
        "gen_ai.tool.name": "refund",
        "gen_ai.tool.call.id": small_id,
        "gen_ai.tool.type": "function",
        "gen_ai.agent.name": "traced-bot",
        "gate.stage": "propose",
        "gate.replayed": False,
        "gate.decision": "auto_approved",
        "gate.policy_version": small.json()["policy_version"],
        "gate.risk_score": small.json()["risk_score"],
    }
    assert span["duration_ns"] > 0

    # One trace from the agent's call to the policy's decision: the evaluation continues the proposal.
    [evaluation] = _eventually(
        lambda: collector.matching(**{"gen_ai.tool.call.id": small_id, "gate.stage": "evaluate"})
    )
    assert (evaluation["trace_id"], evaluation["parent_span_id"]) == (span["trace_id"], span["span_id"])
    assert evaluation["attributes"]["gate.decision"] == "auto_approved"

    [span] = evaluated
    assert span["name"] == "gate.evaluate refund"
    held = httpx.get(f"{traced_stack}/api/v1/actions/{large_id}", headers=headers, timeout=10).json()
    assert held["status"] == "needs_review"
    assert span["attributes"] == {
        "gen_ai.operation.name": "execute_tool",
        "gen_ai.tool.name": "refund",
        "gen_ai.tool.call.id": large_id,
        "gen_ai.tool.type": "function",
        "gen_ai.agent.name": "traced-bot",
        "gate.stage": "evaluate",
        "gate.decision": "needs_review",
        "gate.policy_version": held["policy_version"],
        "gate.risk_score": held["risk_score"],
    }
    # Every proposal and every evaluation: two of each.
    assert len(collector.matching(**{"gate.stage": "propose"})) == 2
    assert _eventually(lambda: len(collector.matching(**{"gate.stage": "evaluate"})) == 2), collector.spans


def test_tracing_is_off_without_an_endpoint(policy_v1: int, propose: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Off, nothing is configured and the proposal path pays one ``if tracing.ENABLED`` per stage
    (the view, the queueing, the task and the evaluation): proposals go on as ever."""
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", raising=False)
    assert tracing.ENABLED is False
    assert tracing.configure() is False

    body = {"action_type": "refund", "params": {"order_id": "A-1", "amount": 20}, "trajectory": LOOKED_UP}
    assert propose(body).action["status"] == "auto_approved"
