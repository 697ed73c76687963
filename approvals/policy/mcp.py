"""The upstream MCP servers a policy file names (contract §6.4): ``mcp_servers: [{name, url,
headers}]`` (streamable HTTP) or ``{name, command: [...]}`` (stdio), checked with their place.

Header values may hold ``${VAR}``, taken from the gate's environment when the gateway connects
(as lookups' headers are), so a secret never sits in the policy file or its stored versions.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

# A server's name prefixes its tools' names (``<server>__<tool>``), which are action type names:
# letters, digits and '-', no '__' of its own so that the split is unambiguous.
SERVER_NAME_PATTERN = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]|_(?!_)){0,39}$")
SERVER_FIELDS = frozenset({"name", "url", "headers", "command"})
MAX_SERVERS = 50
TOOL_SEPARATOR = "__"


@dataclass(frozen=True)
class McpServerSpec:
    name: str
    url: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    command: tuple[str, ...] = ()

    def to_document(self) -> dict[str, Any]:
        if self.command:
            return {"name": self.name, "command": list(self.command)}
        data: dict[str, Any] = {"name": self.name, "url": self.url}
        if self.headers:
            data["headers"] = dict(self.headers)
        return data


def _parse_server(data: Any, place: str, errors: list[str]) -> McpServerSpec | None:
    if not isinstance(data, dict):
        errors.append(f"{place}: a server must be a mapping with name and url or command")
        return None
    before = len(errors)
    for key in sorted(set(data) - SERVER_FIELDS):
        errors.append(f"{place}.{key}: unknown field")
    name = data.get("name")
    if not isinstance(name, str) or not SERVER_NAME_PATTERN.match(name):
        errors.append(f"{place}.name: must be letters, digits, '-' or single '_' (at most 40)")
    url, command, headers = data.get("url"), data.get("command"), data.get("headers", {})
    if (url is None) == (command is None):
        errors.append(f"{place}: give exactly one of url (streamable HTTP) or command (stdio)")
    if url is not None:
        parts = urlsplit(url) if isinstance(url, str) else None
        if parts is None or parts.scheme not in ("http", "https") or not parts.netloc:
            errors.append(f"{place}.url: must be an http(s) URL")
    if command is not None and (
        not isinstance(command, list) or not command or not all(isinstance(p, str) and p for p in command)
    ):
        errors.append(f"{place}.command: must be a non-empty list of strings (the program and its arguments)")
    if not isinstance(headers, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in headers.items()):
        errors.append(f"{place}.headers: must map header names to strings")
    elif headers and command is not None:
        errors.append(f"{place}.headers: only a url server sends headers")
    if len(errors) > before:
        return None
    return McpServerSpec(name=str(name), url=url or "", headers=dict(headers), command=tuple(command or ()))


def parse_mcp_servers(data: Any, place: str = "mcp_servers") -> tuple[list[McpServerSpec], list[str]]:
    """The servers of a document's ``mcp_servers`` (None: none), and the problems found."""
    errors: list[str] = []
    if data is None:
        return [], errors
    if not isinstance(data, list):
        return [], [f"{place}: must be a list of servers"]
    if len(data) > MAX_SERVERS:
        return [], [f"{place}: at most {MAX_SERVERS} servers"]
    servers: list[McpServerSpec] = []
    for index, item in enumerate(data):
        server = _parse_server(item, f"{place}[{index}]", errors)
        if server is None:
            continue
        if any(s.name == server.name for s in servers):
            errors.append(f"{place}[{index}].name: duplicate server {server.name!r}")
            continue
        servers.append(server)
    return servers, errors


def tool_name(server: str, tool: str) -> str:
    """The name the gateway lists an upstream tool under, and its action type's name."""
    return f"{server}{TOOL_SEPARATOR}{tool}"


def split_tool_name(name: str) -> tuple[str, str] | None:
    server, separator, tool = name.partition(TOOL_SEPARATOR)
    return (server, tool) if separator and server and tool else None


def mcp_servers_document(document: Any) -> list[dict[str, Any]] | None:
    """The ``mcp_servers`` of a valid policy document in canonical form; None when it has none (the
    stored servers then stay as they are)."""
    if not isinstance(document, dict) or "mcp_servers" not in document:
        return None
    servers, _ = parse_mcp_servers(document["mcp_servers"])
    return [server.to_document() for server in servers]
