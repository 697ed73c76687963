"""The gateway's session store, in Redis and in one process (approvals/mcp/sessions.py)."""

from __future__ import annotations

import anyio
import pytest
from pytest_django.fixtures import SettingsWrapper

from approvals.mcp.sessions import SessionStore


@pytest.mark.parametrize("backend", ["redis", "local"])
def test_a_session_keeps_its_agent_calls_and_forwards(backend: str, settings: SettingsWrapper) -> None:
    if backend == "local":
        settings.REDIS_URL = ""
    elif not settings.REDIS_URL:
        pytest.skip("no Redis")
    settings.GATE_MAX_STRING_LENGTH = 40

    async def scenario() -> None:
        store = SessionStore()
        session = await store.open(7)
        assert await store.owner(session) == 7
        assert await store.owner("no-such-session") is None
        await store.record(session, "crm__read", {"a": 1}, "short", forwarded=True)
        await store.record(session, "crm__read", {"a": 1}, "x" * 100, forwarded=True)
        await store.record(session, "crm__send", {"b": 2}, {"error": "no"}, forwarded=False)
        steps = await store.steps(session)
        assert [step["tool"] for step in steps] == ["crm__read", "crm__read", "crm__send"]
        assert steps[0] == {"kind": "tool_call", "tool": "crm__read", "args": {"a": 1}, "result": "short"}
        assert steps[1]["result"]["truncated"] is True
        assert len(steps[1]["result"]["text"]) == 40
        assert await store.occurrence(session, "crm__read", {"a": 1}) == 2
        assert await store.occurrence(session, "crm__send", {"b": 2}) == 0
        action_id = f"action-{session}"
        assert [await store.claim_forward(action_id), await store.claim_forward(action_id)] == [True, False]
        await store.close(session)
        assert await store.owner(session) is None
        assert await store.steps(session) == []

    anyio.run(scenario)
