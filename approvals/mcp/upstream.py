"""Clients of the upstream MCP servers a policy names: list their tools, call one.

One connection per listing or call (a stdio server is started for it and stopped after), bounded
by ``GATE_MCP_UPSTREAM_TIMEOUT_SECONDS``. What the upstream cannot answer is UpstreamError, never a
result.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import AsyncIterator
from typing import Any

import anyio
import httpx2
from django.conf import settings
from mcp import ClientSession, StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp_types import CallToolResult, PaginatedRequestParams, Tool

from approvals.policy import McpServerSpec
from approvals.policy.evidence import EvidenceError, headers_from_environment

# Each server's tools as last listed (name -> Tool), for the annotations of a call: a server is not
# asked for its list on every call.
TOOLS_TTL_SECONDS = 30.0
_tools: dict[str, tuple[float, dict[str, Tool]]] = {}


def _cache_key(server: McpServerSpec) -> str:
    return json.dumps(server.to_document(), sort_keys=True)


class UpstreamError(Exception):
    """The upstream server could not be reached or did not answer."""


def _timeout() -> float:
    return float(settings.GATE_MCP_UPSTREAM_TIMEOUT_SECONDS)


@contextlib.asynccontextmanager
async def _session(server: McpServerSpec) -> AsyncIterator[ClientSession]:
    async with contextlib.AsyncExitStack() as stack:
        if server.command:
            params = StdioServerParameters(command=server.command[0], args=list(server.command[1:]))
            errlog = stack.enter_context(open(os.devnull, "w"))  # noqa: SIM115
            streams = await stack.enter_async_context(stdio_client(params, errlog=errlog))
        else:
            try:
                headers = headers_from_environment(server.headers)
            except EvidenceError as exc:
                raise UpstreamError(f"server {server.name}: {exc}") from None
            client = await stack.enter_async_context(httpx2.AsyncClient(headers=headers, timeout=_timeout()))
            streams = await stack.enter_async_context(streamable_http_client(server.url, http_client=client))
        session = await stack.enter_async_context(
            ClientSession(streams[0], streams[1], read_timeout_seconds=_timeout())
        )
        await session.initialize()
        yield session


async def tools_list(server: McpServerSpec) -> dict[str, Tool]:
    """The server's tools by name; UpstreamError when it does not answer."""
    try:
        with anyio.fail_after(_timeout()):
            async with _session(server) as session:
                tools: dict[str, Tool] = {}
                cursor: str | None = None
                while True:
                    params = PaginatedRequestParams(cursor=cursor) if cursor else None
                    listed = await session.list_tools(params=params)
                    tools.update({tool.name: tool for tool in listed.tools})
                    cursor = listed.next_cursor
                    if not cursor:
                        break
    except UpstreamError:
        raise
    except Exception as exc:  # a refused connection, a crashed process, a timeout: all the same here
        raise UpstreamError(f"server {server.name} did not list its tools: {_describe(exc)}") from None
    _tools[_cache_key(server)] = (time.monotonic(), tools)
    return tools


async def tool_known(server: McpServerSpec, tool: str) -> Tool | None:
    """The tool as the server listed it lately (listing it again when that is stale), or None when
    the server does not list it or cannot be reached."""
    listed = _tools.get(_cache_key(server))
    if listed is None or time.monotonic() - listed[0] > TOOLS_TTL_SECONDS:
        try:
            return (await tools_list(server)).get(tool)
        except UpstreamError:
            return listed[1].get(tool) if listed else None
    return listed[1].get(tool)


async def tool_call(server: McpServerSpec, tool: str, arguments: dict[str, Any]) -> CallToolResult:
    """The upstream's result of calling ``tool``; UpstreamError when it could not be called."""
    try:
        with anyio.fail_after(_timeout()):
            async with _session(server) as session:
                return await session.call_tool(tool, arguments)
    except UpstreamError:
        raise
    except Exception as exc:
        raise UpstreamError(f"server {server.name} could not be called: {_describe(exc)}") from None


def _describe(exc: BaseException) -> str:
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    if isinstance(exc, TimeoutError):
        return "no answer in time"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
