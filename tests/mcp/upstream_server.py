"""A real upstream MCP server for the gateway's tests, on the SDK's MCPServer: over stdio
(``python upstream_server.py stdio CALLS_LOG``) or streamable HTTP (``... http PORT CALLS_LOG``).

Each tool call it serves appends a JSON line to CALLS_LOG, so a test sees what was forwarded.
"""

from __future__ import annotations

import json
import sys

from mcp.server.mcpserver import MCPServer
from mcp_types import ToolAnnotations

CALLS_LOG = sys.argv[-1]
server = MCPServer("crm-test")


def _served(tool: str, **arguments: str) -> None:
    with open(CALLS_LOG, "a", encoding="utf-8") as log:
        log.write(json.dumps({"tool": tool, "arguments": arguments}) + "\n")


@server.tool(annotations=ToolAnnotations(destructive_hint=False))
def send_email(to: str, body: str) -> str:
    """Send an e-mail."""
    _served("send_email", to=to, body=body)
    return f"sent to {to}"


@server.tool(annotations=ToolAnnotations(read_only_hint=True))
def read_note(name: str) -> str:
    """Read a note."""
    _served("read_note", name=name)
    return f"note {name}: remember the milk"


@server.tool(annotations=ToolAnnotations(destructive_hint=True))
def delete_note(name: str) -> str:
    """Delete a note."""
    _served("delete_note", name=name)
    return f"deleted {name}"


if __name__ == "__main__":
    if sys.argv[1] == "stdio":
        server.run("stdio")
    else:
        server.run("streamable-http", host="127.0.0.1", port=int(sys.argv[2]))
