"""The gateway's MCP sessions: which agent opened each, its earlier calls and results (the
trajectory of its next proposal), and how often each call was forwarded (so that a retried held
call is forwarded once, and a repeat after that is a new proposal).

The SDK serves the gateway statelessly and the gateway issues the session ids itself, keeping
them here: in Redis when the gate has one (any web process then serves any session: uvicorn's
``--workers``), in this process otherwise (the embedded demo). A session answers only the agent
that opened it. Whether an action was forwarded is also in the database (its outcome), and a
forward is claimed before it is made, so no approved call is forwarded twice.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import OrderedDict
from typing import Any

import redis.asyncio as aioredis
from django.conf import settings

MAX_STEPS = 200
MAX_LOCAL_SESSIONS = 10_000


def call_key(tool: str, arguments: dict[str, Any]) -> str:
    return json.dumps([tool, arguments], sort_keys=True, separators=(",", ":"))


class _LocalSession:
    def __init__(self, agent_id: int) -> None:
        self.agent_id = agent_id
        self.steps: list[dict[str, Any]] = []
        self.forwarded: dict[str, int] = {}


class SessionStore:
    """Sessions in Redis (``redis_url``) or, without one, in this process."""

    def __init__(self) -> None:
        self._client: aioredis.Redis | None = None
        self._local: OrderedDict[str, _LocalSession] = OrderedDict()
        self._claims: set[str] = set()
        self._locks: OrderedDict[str, asyncio.Lock] = OrderedDict()

    def _redis(self) -> Any:
        """The client, or None without Redis (typed Any: redis.asyncio's stubs type each command
        as sync-or-async)."""
        if not settings.REDIS_URL:
            return None
        if self._client is None:
            self._client = aioredis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=2, socket_timeout=5)
        return self._client

    @staticmethod
    def _key(session_id: str, part: str = "") -> str:
        return f"{settings.GATE_MCP_REDIS_PREFIX}session:{session_id}{':' + part if part else ''}"

    def lock(self, session_id: str) -> asyncio.Lock:
        """One call of a session at a time in this process."""
        found = self._locks.get(session_id)
        if found is None:
            found = self._locks[session_id] = asyncio.Lock()
            while len(self._locks) > MAX_LOCAL_SESSIONS:
                self._locks.popitem(last=False)
        self._locks.move_to_end(session_id)
        return found

    async def open(self, agent_id: int) -> str:
        session_id = uuid.uuid4().hex
        client = self._redis()
        if client is None:
            self._local[session_id] = _LocalSession(agent_id)
            while len(self._local) > MAX_LOCAL_SESSIONS:
                self._local.popitem(last=False)
        else:
            await client.set(self._key(session_id), str(agent_id), ex=settings.GATE_MCP_SESSION_IDLE_SECONDS)
        return session_id

    async def owner(self, session_id: str) -> int | None:
        """The agent that opened the session (its idle time starts again), or None."""
        client = self._redis()
        if client is None:
            local = self._local.get(session_id)
            return local.agent_id if local else None
        key, idle = self._key(session_id), settings.GATE_MCP_SESSION_IDLE_SECONDS
        async with client.pipeline(transaction=False) as pipe:
            pipe.get(key)
            for part in ("", "steps", "forwarded"):
                pipe.expire(self._key(session_id, part), idle)
            owner, *_ = await pipe.execute()
        return int(owner) if owner is not None else None

    async def close(self, session_id: str) -> None:
        client = self._redis()
        if client is None:
            self._local.pop(session_id, None)
        else:
            parts = ("", "steps", "forwarded")
            await client.delete(*(self._key(session_id, part) for part in parts))

    async def steps(self, session_id: str) -> list[dict[str, Any]]:
        client = self._redis()
        if client is None:
            local = self._local.get(session_id)
            return list(local.steps) if local else []
        return [json.loads(step) for step in await client.lrange(self._key(session_id, "steps"), 0, -1)]

    async def occurrence(self, session_id: str, tool: str, arguments: dict[str, Any]) -> int:
        client = self._redis()
        if client is None:
            local = self._local.get(session_id)
            return local.forwarded.get(call_key(tool, arguments), 0) if local else 0
        found = await client.hget(self._key(session_id, "forwarded"), call_key(tool, arguments))
        return int(found) if found is not None else 0

    async def record(
        self, session_id: str, tool: str, arguments: dict[str, Any], result: Any, *, forwarded: bool
    ) -> None:
        """A call and its result, as a tool_call step of the contract's trajectory format (a result
        longer than GATE_MAX_STRING_LENGTH as JSON is kept as the start of its text)."""
        text, limit = json.dumps(result, default=str), settings.GATE_MAX_STRING_LENGTH
        if len(text) > limit:
            result = {"truncated": True, "text": text[:limit]}
        step = {"kind": "tool_call", "tool": tool, "args": arguments, "result": result}
        client = self._redis()
        if client is None:
            local = self._local.get(session_id)
            if local is not None:
                local.steps.append(step)
                del local.steps[:-MAX_STEPS]
                if forwarded:
                    key = call_key(tool, arguments)
                    local.forwarded[key] = local.forwarded.get(key, 0) + 1
            return
        steps_key, idle = self._key(session_id, "steps"), settings.GATE_MCP_SESSION_IDLE_SECONDS
        async with client.pipeline(transaction=True) as pipe:
            pipe.rpush(steps_key, json.dumps(step, default=str))
            pipe.ltrim(steps_key, -MAX_STEPS, -1)
            pipe.expire(steps_key, idle)
            if forwarded:
                forwarded_key = self._key(session_id, "forwarded")
                pipe.hincrby(forwarded_key, call_key(tool, arguments), 1)
                pipe.expire(forwarded_key, idle)
            await pipe.execute()

    async def claim_forward(self, action_id: str) -> bool:
        """True once per action: the caller then forwards it (no other request, in any process)."""
        client = self._redis()
        if client is None:
            if action_id in self._claims:
                return False
            self._claims.add(action_id)
            return True
        key = f"{settings.GATE_MCP_REDIS_PREFIX}forwarding:{action_id}"
        return bool(await client.set(key, "1", nx=True, ex=settings.GATE_MCP_SESSION_IDLE_SECONDS))


sessions = SessionStore()
