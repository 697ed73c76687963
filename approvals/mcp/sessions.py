"""What the gateway remembers of each agent's MCP session: its earlier calls and results (the
trajectory of the next proposal) and how often each call was forwarded (so that a retried held
call is forwarded once, and a repeat after that is a new proposal).

Keyed by (agent, session id): a session id presented with another agent's token is another
session (the SDK refuses it first: a session answers only the credential that opened it). Held
in this process, as the SDK's sessions are; whether an action was forwarded is also in the
database (its outcome), so a restart never forwards a call twice.
"""

from __future__ import annotations

import asyncio
import json
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

MAX_SESSIONS = 10_000
MAX_STEPS = 200


@dataclass
class SessionState:
    steps: list[dict[str, Any]] = field(default_factory=list)
    forwarded: dict[str, int] = field(default_factory=dict)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @staticmethod
    def call_key(tool: str, arguments: dict[str, Any]) -> str:
        return json.dumps([tool, arguments], sort_keys=True, separators=(",", ":"))

    def occurrence(self, tool: str, arguments: dict[str, Any]) -> int:
        return self.forwarded.get(self.call_key(tool, arguments), 0)

    def record(self, tool: str, arguments: dict[str, Any], result: Any, *, forwarded: bool) -> None:
        """A call and its result, as a tool_call step of the contract's trajectory format."""
        self.steps.append({"kind": "tool_call", "tool": tool, "args": arguments, "result": result})
        del self.steps[:-MAX_STEPS]
        if forwarded:
            key = self.call_key(tool, arguments)
            self.forwarded[key] = self.forwarded.get(key, 0) + 1


_sessions: OrderedDict[tuple[int, str], SessionState] = OrderedDict()


def session_state(agent_id: int, session_id: str) -> SessionState:
    key = (agent_id, session_id)
    state = _sessions.get(key)
    if state is None:
        state = _sessions[key] = SessionState()
        while len(_sessions) > MAX_SESSIONS:
            _sessions.popitem(last=False)
    _sessions.move_to_end(key)
    return state
