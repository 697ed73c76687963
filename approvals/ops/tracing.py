"""OpenTelemetry traces: each proposal (the web process) and each evaluation (the worker) as a span,
with the attributes of the GenAI semantic conventions for a tool call where they apply
(``gen_ai.operation.name`` = ``execute_tool``, ``gen_ai.tool.name`` = the action type,
``gen_ai.tool.call.id`` = the action's id, ``gen_ai.agent.name``) and the gate's own
(``gate.stage``, ``gate.decision``, ``gate.policy_version``, ``gate.risk_score``).

Exported over OTLP/HTTP (protobuf) when ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``) is set, with the SDK's other OTEL_* settings
(OTEL_SERVICE_NAME, OTEL_BSP_SCHEDULE_DELAY, OTEL_EXPORTER_OTLP_HEADERS, ...). Off otherwise: the
SDK is not even imported, and the hot path pays one test of ``ENABLED`` (callers check it before
calling anything here). A proposal's span continues the agent's trace when the request carries a
W3C ``traceparent`` header, and the evaluation's span continues the proposal's (the task message
carries its ``traceparent``): one trace from the agent's tool call to the policy's decision.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

ENABLED = False
SERVICE_NAME = "autonomy-gate"
_tracer: Any = None


def configure() -> bool:
    """Start exporting if an OTLP endpoint is configured (once per process; the SDK's batch
    processor starts its thread again in a forked child). Returns whether tracing is on."""
    global ENABLED, _tracer
    if ENABLED:
        return True
    if not (os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")):
        return False
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(
        resource=Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME") or SERVICE_NAME})
    )
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    _tracer = trace.get_tracer("approvals")
    ENABLED = True
    return True


def now_ns() -> int:
    return time.time_ns()


def _tool_call(action_type: str, action_id: str, agent: str, stage: str) -> dict[str, Any]:
    return {
        "gen_ai.operation.name": "execute_tool",
        "gen_ai.tool.name": action_type,
        "gen_ai.tool.call.id": action_id,
        "gen_ai.tool.type": "function",
        "gen_ai.agent.name": agent,
        "gate.stage": stage,
    }


def _decided(
    attributes: dict[str, Any], *, decision: str, policy_version: int | None, risk_score: float | None
) -> None:
    attributes["gate.decision"] = decision
    if policy_version is not None:
        attributes["gate.policy_version"] = policy_version
    if risk_score is not None:
        attributes["gate.risk_score"] = risk_score


@contextmanager
def proposal_span(headers: Mapping[str, str]) -> Iterator[Any]:
    """The span of a proposal, current while it is handled (so that the evaluation queued when it
    commits carries its context: ``carrier``); ended by ``proposal_answered``, never for a refused
    proposal."""
    from opentelemetry import propagate, trace
    from opentelemetry.trace import SpanKind

    parent = propagate.extract({"traceparent": headers["traceparent"]}) if "traceparent" in headers else None
    span = _tracer.start_span("execute_tool", context=parent, kind=SpanKind.SERVER)
    with trace.use_span(span, end_on_exit=False):
        yield span


def proposal_answered(span: Any, representation: Mapping[str, Any], *, created: bool) -> None:
    """Name the proposal's span after the tool and end it with what the agent was told:
    ``gate.decision`` is the status answered (pending, or the decision when it waited for one)."""
    attributes = _tool_call(representation["action_type"], representation["id"], representation["agent"], "propose")
    attributes["gate.replayed"] = not created
    _decided(
        attributes,
        decision=representation["status"],
        policy_version=representation.get("policy_version"),
        risk_score=representation.get("risk_score"),
    )
    span.update_name(f"execute_tool {representation['action_type']}")
    span.set_attributes(attributes)
    span.end()


def carrier() -> dict[str, str]:
    """The current span's context as message headers (W3C traceparent)."""
    from opentelemetry import propagate

    headers: dict[str, str] = {}
    propagate.inject(headers)
    return headers


@contextmanager
def continued(traceparent: str | None) -> Iterator[None]:
    """Spans started inside continue the trace ``traceparent`` names (a task's message header)."""
    from opentelemetry import context, propagate

    if not traceparent:
        yield
        return
    token = context.attach(propagate.extract({"traceparent": traceparent}))
    try:
        yield
    finally:
        context.detach(token)


def record_evaluation(
    *,
    action_type: str,
    action_id: str,
    agent: str,
    decision: str,
    policy_version: int | None,
    risk_score: float | None,
    started_ns: int,
) -> None:
    """The span of an evaluation: the policy's decision on the proposed tool call."""
    attributes = _tool_call(action_type, action_id, agent, "evaluate")
    _decided(attributes, decision=decision, policy_version=policy_version, risk_score=risk_score)
    span = _tracer.start_span(f"gate.evaluate {action_type}", start_time=started_ns, attributes=attributes)
    span.end()
