"""The MCP gateway (contract §6.4) on the real stack: uvicorn serving /mcp, the Celery worker
deciding, PostgreSQL and Redis; a real upstream MCP server (tests/mcp/upstream_server.py) over
streamable HTTP and over stdio, and the SDK's own client as the agent."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import httpx2
import pytest
from django.db import connection
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp_types import CallToolResult, TextContent
from rest_framework.authtoken.models import Token

from approvals.gate.policies import policies_import
from approvals.mcp.services import UNLISTED_TOOL_TYPE
from approvals.models import AuditEvent, ProposedAction, Status
from tests.conftest import free_port, stop, uvicorn_server
from tests.factories import AgentFactory, ReviewerFactory

pytestmark = [pytest.mark.server, pytest.mark.worker, pytest.mark.django_db(transaction=True)]

HERE = Path(__file__).resolve().parent
HOLD_SECONDS = 4
EMAIL_SCHEMA = {
    "type": "object",
    "required": ["to", "body"],
    "properties": {"to": {"type": "string"}, "body": {"type": "string"}},
}
EMAIL_RULES = [
    {"name": "no_evil", "require": "!params.to.endsWith('@evil.test')", "on_fail": "block", "message": "evil"},
    {"name": "known_domain", "require": "params.to.endsWith('@example.com')", "message": "unknown domain"},
]


@pytest.fixture(scope="module")
def calls_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("upstream") / "calls.jsonl"
    path.touch()
    return path


@pytest.fixture(scope="module")
def upstream_url(calls_log: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    log = tmp_path_factory.mktemp("upstream-log") / "upstream.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, str(HERE / "upstream_server.py"), "http", str(port), str(calls_log)],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            httpx.get(f"http://127.0.0.1:{port}/mcp", timeout=1)
            break
        except httpx.HTTPError:
            time.sleep(0.2)
    try:
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        stop(process)


@pytest.fixture(scope="module")
def gate_url(celery_worker_process: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One uvicorn for the module, with the README's two worker processes: a session's requests
    reach either (the gateway keeps its sessions in Redis)."""
    log = tmp_path_factory.mktemp("gate") / "uvicorn.log"
    with uvicorn_server(log, env={"GATE_MCP_HOLD_SECONDS": str(HOLD_SECONDS)}, args=("--workers", "2")) as base:
        yield base


@pytest.fixture
def gate(gate_url: str, upstream_url: str, calls_log: Path) -> dict[str, Any]:
    """The policy (with its upstream servers) imported, two agents and a reviewer's API token."""
    closed_port = free_port()
    policies_import(
        document={
            "version": 1,
            "mcp_servers": [
                {"name": "crm", "url": upstream_url, "headers": {"X-Test": "yes"}},
                {
                    "name": "files",
                    "command": [sys.executable, str(HERE / "upstream_server.py"), "stdio", str(calls_log)],
                },
                {"name": "down", "url": f"http://127.0.0.1:{closed_port}/mcp"},
            ],
            "action_types": [
                {"name": f"{server}__send_email", "params_schema": EMAIL_SCHEMA, "rules": EMAIL_RULES}
                for server in ("crm", "files", "down")
            ],
        },
        actor="test",
    )
    reviewer = ReviewerFactory()
    return {
        "url": f"{gate_url}/mcp",
        "base": gate_url,
        "alice": AgentFactory(name="alice"),
        "bob": AgentFactory(name="bob"),
        "reviewer": reviewer,
        "reviewer_token": Token.objects.create(user=reviewer).key,
    }


@asynccontextmanager
async def mcp_session(url: str, token: str) -> AsyncIterator[ClientSession]:
    async with (
        httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=60) as client,
        streamable_http_client(url, http_client=client) as (read, write),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        yield session


def run(function: Callable[[], Any]) -> Any:
    return anyio.run(function)


async def in_thread(function: Callable[..., Any], *args: Any) -> Any:
    """``function`` (database work) in a worker thread, which closes its connection afterwards."""

    def call() -> Any:
        try:
            return function(*args)
        finally:
            connection.close()

    return await anyio.to_thread.run_sync(call)


def text_of(result: CallToolResult) -> str:
    return "\n".join(block.text for block in result.content if isinstance(block, TextContent))


def forwarded(calls_log: Path, tool: str) -> list[dict[str, Any]]:
    lines = calls_log.read_text().splitlines()
    return [call["arguments"] for call in map(json.loads, lines) if call["tool"] == tool]


def decide(gate: dict[str, Any], action_id: str, verdict: str, reason: str) -> None:
    response = httpx.post(
        f"{gate['base']}/api/v1/actions/{action_id}/decision",
        json={"verdict": verdict, "reason": reason},
        headers={"Authorization": f"Token {gate['reviewer_token']}"},
        timeout=10,
    )
    assert response.status_code == 200, response.text


def test_tools_listed_with_schema_and_annotations_and_an_allowed_call_forwarded(
    gate: dict[str, Any], calls_log: Path
) -> None:
    async def scenario() -> tuple[dict[str, Any], CallToolResult, CallToolResult]:
        async with mcp_session(gate["url"], gate["alice"].token) as session:
            listed = {tool.name: tool for tool in (await session.list_tools()).tools}
            note = await session.call_tool("crm__read_note", {"name": "groceries"})
            sent = await session.call_tool("crm__send_email", {"to": "ann@example.com", "body": "hi"})
            return listed, note, sent

    listed, note, sent = run(scenario)
    # every upstream's tools (the one that is down left out), under <server>__<tool>
    assert {"crm__send_email", "crm__read_note", "crm__delete_note", "files__send_email"} <= set(listed)
    assert not any(name.startswith("down__") for name in listed)
    assert listed["crm__send_email"].input_schema["required"] == ["to", "body"]
    assert listed["crm__read_note"].annotations is not None
    assert listed["crm__read_note"].annotations.read_only_hint
    # a read-only tool without an action type: forwarded unevaluated, no action
    assert not note.is_error
    assert "remember the milk" in text_of(note)
    assert not sent.is_error
    assert text_of(sent) == "sent to ann@example.com"
    assert forwarded(calls_log, "send_email")[-1] == {"to": "ann@example.com", "body": "hi"}

    action = ProposedAction.objects.get(agent=gate["alice"], action_type__name="crm__send_email")
    assert action.status == Status.AUTO_APPROVED
    assert action.params == {"to": "ann@example.com", "body": "hi"}
    assert action.context["mcp"]["destructiveHint"] is False
    assert action.context["session_id"]
    # the session's earlier call and its result are the trajectory
    assert [(s["kind"], s["tool"], s["args"]) for s in action.trajectory] == [
        ("tool_call", "crm__read_note", {"name": "groceries"})
    ]
    assert "remember the milk" in json.dumps(action.trajectory[0]["result"])
    assert action.outcome_executed is True
    assert action.outcome_result == {"result": "sent to ann@example.com"}
    assert ProposedAction.objects.count() == 1


def test_blocked_call_is_an_error_result_and_never_forwarded(gate: dict[str, Any], calls_log: Path) -> None:
    async def scenario() -> CallToolResult:
        async with mcp_session(gate["url"], gate["alice"].token) as session:
            return await session.call_tool("crm__send_email", {"to": "eve@evil.test", "body": "x"})

    result = run(scenario)
    assert result.is_error
    assert text_of(result).startswith("Blocked by the policy: no_evil: evil")
    assert {"to": "eve@evil.test", "body": "x"} not in forwarded(calls_log, "send_email")
    assert ProposedAction.objects.get().status == Status.BLOCKED


def test_held_call_approved_then_retried_is_forwarded_once(gate: dict[str, Any], calls_log: Path) -> None:
    arguments = {"to": "bo@other.test", "body": "held"}

    async def scenario() -> tuple[CallToolResult, CallToolResult, CallToolResult]:
        async with mcp_session(gate["url"], gate["alice"].token) as session:
            held = await session.call_tool("crm__send_email", arguments)
            action_id = re.search(r"action ([0-9a-f-]{36})", text_of(held)).group(1)  # type: ignore[union-attr]
            await in_thread(decide, gate, action_id, "approve", "fine")
            retried = await session.call_tool("crm__send_email", arguments)
            again = await session.call_tool("crm__send_email", arguments)
            return held, retried, again

    held, retried, again = run(scenario)
    assert held.is_error
    assert "Held for review" in text_of(held)
    assert "/review/" in text_of(held)
    assert not retried.is_error
    assert text_of(retried) == "sent to bo@other.test"
    # forwarded once; the same call made again after that is a new proposal, held again
    assert forwarded(calls_log, "send_email").count(arguments) == 1
    assert again.is_error
    assert "Held for review" in text_of(again)
    first, second = ProposedAction.objects.order_by("created_at")
    assert (first.status, first.outcome_executed) == (Status.APPROVED, True)
    assert (second.status, second.outcome_at) == (Status.NEEDS_REVIEW, None)
    assert second.trajectory[-1]["tool"] == "crm__send_email"


def test_held_call_rejected_while_waiting_answers_with_the_reason(gate: dict[str, Any], calls_log: Path) -> None:
    arguments = {"to": "cy@other.test", "body": "no"}

    def reject_when_held() -> None:
        deadline = time.monotonic() + HOLD_SECONDS
        while time.monotonic() < deadline:
            held = ProposedAction.objects.filter(status=Status.NEEDS_REVIEW).first()
            if held is not None:
                decide(gate, str(held.pk), "reject", "not this customer")
                return
            time.sleep(0.1)

    async def scenario() -> CallToolResult:
        async with mcp_session(gate["url"], gate["alice"].token) as session, anyio.create_task_group() as tasks:
            tasks.start_soon(in_thread, reject_when_held)
            return await session.call_tool("crm__send_email", arguments)

    result = run(scenario)
    assert result.is_error
    assert text_of(result) == f"Rejected by {gate['reviewer'].username}: not this customer"
    assert arguments not in forwarded(calls_log, "send_email")


def test_unknown_tool_that_may_write_is_held_under_the_unlisted_type(gate: dict[str, Any], calls_log: Path) -> None:
    async def scenario() -> CallToolResult:
        async with mcp_session(gate["url"], gate["alice"].token) as session:
            return await session.call_tool("crm__delete_note", {"name": "groceries"})

    result = run(scenario)
    assert result.is_error
    assert "Held for review" in text_of(result)
    assert forwarded(calls_log, "delete_note") == []
    action = ProposedAction.objects.get()
    assert action.action_type.name == UNLISTED_TOOL_TYPE
    assert action.status == Status.NEEDS_REVIEW
    assert action.params == {"tool": "crm__delete_note", "arguments": {"name": "groceries"}}
    assert action.context["mcp"]["destructiveHint"] is True
    created = AuditEvent.objects.get(event="action_type_created")
    assert created.actor == "mcp-gateway"
    assert created.data["action_type"] == UNLISTED_TOOL_TYPE


def test_stdio_upstream_forwarded(gate: dict[str, Any], calls_log: Path) -> None:
    async def scenario() -> CallToolResult:
        async with mcp_session(gate["url"], gate["alice"].token) as session:
            return await session.call_tool("files__send_email", {"to": "di@example.com", "body": "stdio"})

    result = run(scenario)
    assert not result.is_error
    assert text_of(result) == "sent to di@example.com"
    assert {"to": "di@example.com", "body": "stdio"} in forwarded(calls_log, "send_email")
    assert ProposedAction.objects.get().outcome_executed is True


def test_upstream_down_is_an_error_result_and_the_action_is_recorded(gate: dict[str, Any]) -> None:
    async def scenario() -> CallToolResult:
        async with mcp_session(gate["url"], gate["alice"].token) as session:
            return await session.call_tool("down__send_email", {"to": "ed@example.com", "body": "x"})

    result = run(scenario)
    assert result.is_error
    assert text_of(result).startswith("Not forwarded: server down could not be called")
    action = ProposedAction.objects.get()
    assert action.status == Status.AUTO_APPROVED
    assert action.outcome_executed is False
    assert "could not be called" in action.outcome_error


def test_a_second_agent_never_sees_the_first_agents_session(gate: dict[str, Any]) -> None:
    async def alice_then_bob() -> None:
        async with mcp_session(gate["url"], gate["alice"].token) as session:
            await session.call_tool("crm__send_email", {"to": "fi@example.com", "body": "a"})
            alices = await in_thread(lambda: ProposedAction.objects.get(agent=gate["alice"]).context["session_id"])
            ping = {"jsonrpc": "2.0", "id": 9, "method": "ping"}
            headers = {"mcp-session-id": alices, "accept": "application/json, text/event-stream"}
            async with httpx.AsyncClient(timeout=10) as raw:
                as_bob = await raw.post(
                    gate["url"], json=ping, headers={**headers, "Authorization": f"Bearer {gate['bob'].token}"}
                )
                unsigned = await raw.post(gate["url"], json=ping, headers=headers)
                forged = await raw.post(gate["url"], json=ping, headers={**headers, "Authorization": "Bearer nope"})
            assert as_bob.status_code == 404
            assert (unsigned.status_code, forged.status_code) == (401, 401)
        async with mcp_session(gate["url"], gate["bob"].token) as session:
            await session.call_tool("crm__send_email", {"to": "gu@example.com", "body": "b"})

    run(alice_then_bob)
    alices = ProposedAction.objects.get(agent=gate["alice"])
    bobs = ProposedAction.objects.get(agent=gate["bob"])
    assert bobs.trajectory == []
    assert bobs.context["session_id"] != alices.context["session_id"]


def test_a_session_is_one_trajectory_whichever_process_serves_each_call(gate: dict[str, Any]) -> None:
    async def scenario() -> None:
        async with mcp_session(gate["url"], gate["alice"].token) as session:
            for index in range(8):
                note = await session.call_tool("crm__read_note", {"name": f"n{index}"})
                assert not note.is_error
            await session.call_tool("crm__send_email", {"to": "hu@example.com", "body": "after notes"})

    run(scenario)
    action = ProposedAction.objects.get()
    assert [step["args"]["name"] for step in action.trajectory] == [f"n{index}" for index in range(8)]


def test_a_tool_the_agent_may_not_propose_or_that_does_not_exist_is_an_error_result(
    gate: dict[str, Any], calls_log: Path
) -> None:
    limited = AgentFactory(name="limited", all_action_types=False)
    before = len(forwarded(calls_log, "send_email"))

    async def scenario() -> tuple[CallToolResult, CallToolResult]:
        async with mcp_session(gate["url"], limited.token) as session:
            refused = await session.call_tool("crm__send_email", {"to": "io@example.com", "body": "x"})
            unknown = await session.call_tool("nowhere__send_email", {"to": "io@example.com", "body": "x"})
            return refused, unknown

    refused, unknown = run(scenario)
    assert refused.is_error
    assert text_of(refused) == "Agent limited may not propose crm__send_email actions."
    assert unknown.is_error
    assert text_of(unknown).startswith("No tool 'nowhere__send_email'")
    assert len(forwarded(calls_log, "send_email")) == before
    assert not ProposedAction.objects.exists()


def test_the_agents_rate_limit_counts_its_mcp_requests(gate: dict[str, Any]) -> None:
    agent = AgentFactory(name="chatty", rate_limit_per_minute=2)
    headers = {"Authorization": f"Bearer {agent.token}", "accept": "application/json, text/event-stream"}
    ping = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
    answers = [httpx.post(gate["url"], json=ping, headers=headers, timeout=10) for _ in range(3)]
    assert [answer.status_code for answer in answers] == [200, 200, 429]
    assert int(answers[2].headers["retry-after"]) >= 1


def test_the_gateway_keeps_the_limits_of_every_other_path(gate: dict[str, Any]) -> None:
    """Django's middleware does not see /mcp: the gateway checks the Host against ALLOWED_HOSTS and
    reads no body over GATE_MAX_BODY_BYTES (1 MiB by default) itself, before the token."""
    auth = {"Authorization": f"Bearer {gate['alice'].token}", "accept": "application/json, text/event-stream"}
    call = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/call",
        "params": {"name": "crm__send_email", "arguments": {"to": "a@example.com", "body": "x" * (1 << 20)}},
    }
    with httpx.Client(timeout=20) as raw:
        too_large = raw.post(gate["url"], json=call, headers=auth)
        forged_host = raw.post(
            gate["url"], json={"jsonrpc": "2.0", "id": 2, "method": "ping"}, headers={**auth, "Host": "evil.example"}
        )
    assert too_large.status_code == 413
    assert "larger than" in too_large.json()["detail"]
    assert forged_host.status_code == 400
    assert forged_host.json()["detail"] == "Invalid Host header."
    assert not ProposedAction.objects.exists()
