"""The MCP server agents connect to at /mcp (contract §6.4), on the official SDK's low-level
Server and its streamable-HTTP session manager.

``tools/list`` lists every upstream tool as ``<server>__<tool>``; ``tools/call`` proposes the call
(approvals.mcp.services), waits for the decision and forwards it to the upstream or answers with
``isError: true`` and the reason. Every request carries an agent's bearer token, checked before any
MCP traffic (401 otherwise); the SDK ties each session to the token's agent.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import anyio
import mcp_types as types
from django.conf import settings
from django.db import close_old_connections
from django.http.request import split_domain_port, validate_host
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel import Server
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from redis import RedisError
from starlette.types import Receive, Scope, Send

from approvals import policy
from approvals.api.throttling import agent_rate_hit
from approvals.errors import ServiceError
from approvals.gate.agents import agent_authenticate
from approvals.mcp import selectors, services, upstream
from approvals.mcp.sessions import sessions
from approvals.models import Agent, Status

logger = logging.getLogger(__name__)

AGENT_SCOPE_KEY = "gate.agent_id"
SESSION_SCOPE_KEY = "gate.session_id"
SESSION_HEADER = b"mcp-session-id"


async def _db(function: Any, *args: Any, **kwargs: Any) -> Any:
    """Run ORM work in a worker thread (it blocks), with Django's connection hygiene."""

    def run() -> Any:
        close_old_connections()
        try:
            return function(*args, **kwargs)
        finally:
            close_old_connections()

    return await anyio.to_thread.run_sync(run, abandon_on_cancel=True)


def _text_result(text: str, *, error: bool) -> types.CallToolResult:
    return types.CallToolResult(content=[types.TextContent(text=text)], is_error=error)


def _result_data(result: types.CallToolResult) -> Any:
    """What a forwarded call answered, as stored in the outcome and the trajectory."""
    if result.structured_content is not None:
        return result.structured_content
    texts = [block.text for block in result.content if isinstance(block, types.TextContent)]
    return "\n".join(texts) if texts else result.model_dump(mode="json", by_alias=True, exclude_none=True)


def _caller(ctx: ServerRequestContext[Any, Any]) -> tuple[int, str]:
    """The agent and the session of a request, as McpGatewayApp put them in its scope."""
    scope = getattr(ctx.request, "scope", None) or {}
    return int(scope[AGENT_SCOPE_KEY]), str(scope[SESSION_SCOPE_KEY])


async def list_tools(
    ctx: ServerRequestContext[Any, Any], params: types.PaginatedRequestParams | None
) -> types.ListToolsResult:
    servers = await _db(selectors.mcp_servers_current)
    tools: list[types.Tool] = []
    for server in servers.values():
        try:
            listed = await upstream.tools_list(server)
        except upstream.UpstreamError as exc:
            logger.warning("MCP upstream left out of tools/list: %s", exc)
            continue
        for tool in listed.values():
            tools.append(
                types.Tool(
                    name=policy.tool_name(server.name, tool.name),
                    title=tool.title,
                    description=tool.description,
                    input_schema=tool.input_schema,
                    annotations=tool.annotations,
                )
            )
    return types.ListToolsResult(tools=tools)


async def call_tool(ctx: ServerRequestContext[Any, Any], params: types.CallToolRequestParams) -> types.CallToolResult:
    agent_id, session_id = _caller(ctx)
    name, arguments = params.name, dict(params.arguments or {})
    split = policy.split_tool_name(name)
    servers = await _db(selectors.mcp_servers_current)
    server = servers.get(split[0]) if split else None
    if split is None or server is None:
        return _text_result(f"No tool {name!r}: the gate lists tools as <server>__<tool>.", error=True)
    tool = await upstream.tool_known(server, split[1])
    annotations = tool.annotations.model_dump(by_alias=True, exclude_none=True) if tool and tool.annotations else {}
    async with sessions.lock(session_id):  # one call of a session at a time (in this process)
        has_type = await _db(selectors.action_type_named, name) is not None
        if not has_type and annotations.get("readOnlyHint") is True:
            # Contract §6.4: a read-only tool without an action type is forwarded unevaluated.
            return await _forward(session_id, server, split[1], name, arguments, action=None)
        call = services.ToolCall(
            agent_id=agent_id,
            session_id=session_id,
            tool=name,
            arguments=arguments,
            annotations=annotations,
            trajectory=await sessions.steps(session_id),
            occurrence=await sessions.occurrence(session_id, name, arguments),
        )
        try:
            action = await _db(services.tool_call_propose, call)
        except ServiceError as exc:  # not permitted, or the key of this call taken by another body
            return _text_result(exc.message, error=True)
        action = await _db(services.tool_call_wait, str(action.pk), float(settings.GATE_MCP_HOLD_SECONDS))
        if action.status in services.FORWARDED_STATUSES:
            if action.outcome_at is not None or not await sessions.claim_forward(str(action.pk)):
                return await _forwarded_before(session_id, name, arguments, str(action.pk))
            return await _forward(
                session_id, server, split[1], name, services.forwarded_arguments(action), action=action
            )
        if action.status in (Status.PENDING, Status.NEEDS_REVIEW):
            review_url = f"{settings.GATE_PUBLIC_URL}/review/{action.pk}"
            return _text_result(
                f"Held for review: action {action.pk} waits for a reviewer at {review_url}. "
                "Call the tool again with the same arguments once it is approved.",
                error=True,
            )
        reason = services.refusal_reason(action)
        await sessions.record(session_id, name, arguments, {"error": reason}, forwarded=False)
        return _text_result(reason, error=True)


async def _forwarded_before(
    session_id: str, name: str, arguments: dict[str, Any], action_id: str
) -> types.CallToolResult:
    """An approved call another request forwarded (or is forwarding): its outcome, never a second
    forward."""
    action = await _db(selectors.action_decided, action_id)
    if action.outcome_at is None:
        return _text_result(f"Action {action_id} is being forwarded by another request.", error=True)
    await sessions.record(session_id, name, arguments, action.outcome_result, forwarded=True)
    if not action.outcome_executed:
        return _text_result(f"Not forwarded: {action.outcome_error}", error=True)
    return _text_result(json.dumps(action.outcome_result), error=False)


async def _forward(
    session_id: str,
    server: policy.McpServerSpec,
    tool: str,
    name: str,
    arguments: dict[str, Any],
    *,
    action: Any,
) -> types.CallToolResult:
    try:
        result = await upstream.tool_call(server, tool, arguments)
    except upstream.UpstreamError as exc:
        if action is not None:
            await _db(services.tool_call_forwarded, action=action, result=None, error=str(exc))
        await sessions.record(session_id, name, arguments, {"error": str(exc)}, forwarded=False)
        return _text_result(f"Not forwarded: {exc}", error=True)
    data = _result_data(result)
    if action is not None:
        await _db(services.tool_call_forwarded, action=action, result=data)
    await sessions.record(session_id, name, arguments, data, forwarded=True)
    return result


server: Server[Any] = Server(
    "autonomy-gate",
    instructions="Every tool call is checked by the Autonomy Gate and may be held for a human reviewer.",
    on_list_tools=list_tools,
    on_call_tool=call_tool,
)


class McpGatewayApp:
    """The ASGI app mounted at /mcp: the agent's token checked, the session it names checked to be
    its own (or a new one issued), then the SDK's session manager, serving statelessly (the
    sessions are the gateway's: approvals.mcp.sessions), started on the first request in a task
    of its own (so it needs no lifespan support)."""

    def __init__(self) -> None:
        self._manager: StreamableHTTPSessionManager | None = None
        self._started: asyncio.Event | None = None
        self._runner: asyncio.Task[None] | None = None

    async def _ensure_started(self) -> StreamableHTTPSessionManager:
        if self._started is None:
            self._started = asyncio.Event()
            self._manager = StreamableHTTPSessionManager(app=server, stateless=True)
            self._runner = asyncio.create_task(self._run(self._manager, self._started))
        await self._started.wait()
        assert self._manager is not None
        return self._manager

    @staticmethod
    async def _run(manager: StreamableHTTPSessionManager, started: asyncio.Event) -> None:
        async with manager.run():
            started.set()
            await asyncio.Event().wait()  # until the process ends

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # What Django's middleware does for every other path: the Host checked against
        # ALLOWED_HOSTS, and no body over GATE_MAX_BODY_BYTES read (contract §1 limits).
        domain, _ = split_domain_port(_header(scope, b"host"))
        if not domain or not validate_host(domain, settings.ALLOWED_HOSTS):
            await _respond(send, 400, {"error": "bad_request", "detail": "Invalid Host header."})
            return
        if scope["method"] == "POST":
            body = await _bounded_body(receive, settings.GATE_MAX_BODY_BYTES)
            if body is None:
                detail = f"Request body is larger than {settings.GATE_MAX_BODY_BYTES} bytes."
                await _respond(send, 413, {"error": "too_large", "detail": detail})
                return
            receive = _replaying(body, receive)
        token = _header(scope, b"authorization")
        scheme, _, token = token.partition(" ")
        agent = await _db(agent_authenticate, token.strip()) if scheme.lower() == "bearer" and token else None
        if agent is None or not agent.enabled:
            await _respond(send, 401, {"error": "unauthorized", "detail": "Authorization: Bearer <agent token>."})
            return
        retry_after = await _db(_rate_limited, agent)
        if retry_after:  # the agent's rate limit, counted with its API requests
            await _respond(send, 429, {"error": "throttled", "detail": "Rate limit reached."}, retry_after=retry_after)
            return
        method, session_id = scope["method"], _header(scope, SESSION_HEADER)
        if session_id:
            if await sessions.owner(session_id) != agent.pk:  # unknown, expired, or another agent's
                await _respond(send, 404, {"error": "not_found", "detail": "Session not found."})
                return
            if method == "DELETE":
                await sessions.close(session_id)
                await _respond(send, 200, {})
                return
        if method != "POST":  # no stream of the server's own: every answer comes with its request
            await _respond(send, 405, {"error": "method_not_allowed", "detail": "POST only."})
            return
        if not session_id:
            session_id = await sessions.open(agent.pk)
            send = _with_session_header(send, session_id)
        scope = {**scope, AGENT_SCOPE_KEY: agent.pk, SESSION_SCOPE_KEY: session_id}
        manager = await self._ensure_started()
        await manager.handle_request(scope, receive, send)


async def _bounded_body(receive: Receive, limit: int) -> bytes | None:
    """The request's whole body, or None once it is over ``limit`` bytes (read no further)."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":  # the client left: nothing to answer
            return b"".join(chunks)
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body"):
            return b"".join(chunks)


def _replaying(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that hands the SDK the body already read, then whatever comes next."""
    pending = [{"type": "http.request", "body": body, "more_body": False}]

    async def replay() -> Any:
        return pending.pop() if pending else await receive()

    return replay


def _header(scope: Scope, name: bytes) -> str:
    for key, value in scope.get("headers", []):
        if key == name:
            return str(value.decode("latin-1"))
    return ""


def _with_session_header(send: Send, session_id: str) -> Send:
    async def sending(message: Any) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", []), (SESSION_HEADER, session_id.encode())]}
        await send(message)

    return sending


def _rate_limited(agent: Agent) -> int:
    """Seconds until the agent may call again, 0 when it may now (or the cache is down: a limit
    on load, not a safety check, as for the API)."""
    try:
        allowed, retry_after = agent_rate_hit(agent)
    except RedisError:
        logger.warning("agent %s not rate-counted: the cache is unavailable", agent.pk, exc_info=True)
        return 0
    return 0 if allowed else retry_after


async def _respond(send: Send, status: int, body: dict[str, Any], *, retry_after: int = 0) -> None:
    data = json.dumps(body).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
    if status == 401:
        headers.append((b"www-authenticate", b'Bearer realm="mcp"'))
    if retry_after:
        headers.append((b"retry-after", str(retry_after).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": data})


mcp_gateway_app = McpGatewayApp()
