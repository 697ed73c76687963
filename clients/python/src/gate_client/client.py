"""``Gate`` (blocking) and ``AsyncGate``: propose, wait, cancel, report.

Every proposal carries an idempotency key (a fresh one unless given), so a retried POST after a
network error can never create a second action; connection errors, timeouts, 502/503/504 and 429
are retried with exponential backoff (429 after its Retry-After). Waiting uses the API's long poll
(``?wait=``, at most 30 s a request), so an agent is told as soon as the decision is made without
polling every few seconds.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import Mapping
from typing import Any

import httpx

from gate_client import errors
from gate_client.action import Action
from gate_client.results import PendingAction

MAX_LONG_POLL = 30.0
RETRIED_STATUSES = frozenset({429, 502, 503, 504})
_ERRORS: dict[int, type[errors.GateError]] = {
    400: errors.InvalidRequestError,
    401: errors.AuthenticationError,
    403: errors.PermissionDeniedError,
    404: errors.NotFoundError,
    409: errors.ConflictError,
    413: errors.InvalidRequestError,
}


def new_idempotency_key() -> str:
    return f"gate-client/{uuid.uuid4().hex}"


def _proposal(
    action_type: str,
    params: Mapping[str, Any],
    *,
    trajectory: Any,
    context: Mapping[str, Any] | None,
    confidence: float | None,
    rationale: str | None,
    callback_url: str | None,
    idempotency_key: str | None,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "action_type": action_type,
        "params": dict(params),
        "idempotency_key": idempotency_key or new_idempotency_key(),
    }
    optional = {
        "trajectory": trajectory,
        "context": dict(context) if context is not None else None,
        "confidence": confidence,
        "rationale": rationale,
        "callback_url": callback_url,
    }
    body.update({name: value for name, value in optional.items() if value is not None})
    return body


def _report_body(executed: bool, result: Any, error: str | None, params_hash: str | None) -> dict[str, Any]:
    body: dict[str, Any] = {"executed": executed}
    if result is not None:
        body["result"] = result
    if error:
        body["error"] = error
    if params_hash is not None:
        body["params_hash"] = params_hash
    return body


def _cancel_was_done(action: Action) -> bool:
    """After a 409 on cancel: a retried cancel whose first try went through."""
    return action.status == "cancelled"


def _report_was_done(action: Action, executed: bool) -> bool:
    """After a 409 on report: a retried report whose first try went through."""
    outcome = action.data.get("outcome")
    return outcome is not None and outcome.get("executed") == executed


def _action_id(handle: PendingAction | Action | str) -> str:
    if isinstance(handle, PendingAction):
        return handle.action_id
    return handle.id if isinstance(handle, Action) else handle


def _wait_param(seconds: float | None) -> dict[str, str]:
    if seconds is None or seconds <= 0:
        return {}
    return {"wait": f"{min(seconds, MAX_LONG_POLL):g}"}


def _raise_for(response: httpx.Response) -> None:
    if response.status_code < 400:
        return
    try:
        body: Any = response.json()
    except ValueError:
        body = response.text
    detail = body.get("detail") if isinstance(body, dict) else None
    message = f"HTTP {response.status_code}: {detail or body}"
    if response.status_code == 429:
        raise errors.RateLimitedError(
            message, retry_after=_retry_after(response), status_code=response.status_code, body=body
        )
    raise _ERRORS.get(response.status_code, errors.GateError)(message, status_code=response.status_code, body=body)


def _retry_after(response: httpx.Response) -> float | None:
    try:
        return float(response.headers["Retry-After"])
    except (KeyError, ValueError):
        return None


class _Base:
    def __init__(self, base_url: str, token: str, *, timeout: float, retries: int, backoff: float) -> None:
        self.base_url = base_url.rstrip("/")
        self.retries = retries
        self.backoff = backoff
        self.timeout = timeout
        self.headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}

    def _delay(self, attempt: int, response: httpx.Response | None) -> float:
        if response is not None and response.status_code == 429 and (after := _retry_after(response)) is not None:
            return after
        return self.backoff * 2**attempt * (0.5 + random.random() / 2)

    def _request_timeout(self, params: Mapping[str, str] | None) -> httpx.Timeout:
        extra = float((params or {}).get("wait", 0))
        return httpx.Timeout(self.timeout, read=self.timeout + extra)


class Gate(_Base):
    """A blocking client. ``Gate(base_url, token)``; close it, or use it as a context manager."""

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        timeout: float = 10.0,
        retries: int = 4,
        backoff: float = 0.25,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        super().__init__(base_url, token, timeout=timeout, retries=retries, backoff=backoff)
        self._http = httpx.Client(base_url=self.base_url, headers=self.headers, transport=transport)

    def __enter__(self) -> Gate:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _call(self, method: str, path: str, *, json: Any = None, params: dict[str, str] | None = None) -> Any:
        for attempt in range(self.retries + 1):
            response: httpx.Response | None = None
            try:
                response = self._http.request(
                    method, path, json=json, params=params, timeout=self._request_timeout(params)
                )
            except httpx.TransportError:
                if attempt == self.retries:
                    raise errors.GateError(f"cannot reach the gate at {self.base_url}") from None
            else:
                if response.status_code not in RETRIED_STATUSES or attempt == self.retries:
                    _raise_for(response)
                    return response.json()
            time.sleep(self._delay(attempt, response))
        raise AssertionError("unreachable")

    def propose(
        self,
        action_type: str,
        params: Mapping[str, Any],
        *,
        trajectory: Any = None,
        context: Mapping[str, Any] | None = None,
        confidence: float | None = None,
        rationale: str | None = None,
        callback_url: str | None = None,
        idempotency_key: str | None = None,
        wait: float | None = None,
    ) -> Action:
        """Propose an action; with ``wait``, held until it is evaluated (at most 30 s)."""
        body = _proposal(
            action_type,
            params,
            trajectory=trajectory,
            context=context,
            confidence=confidence,
            rationale=rationale,
            callback_url=callback_url,
            idempotency_key=idempotency_key,
        )
        return Action(self._call("POST", "/api/v1/actions", json=body, params=_wait_param(wait)))

    def get(self, action_id: str, *, wait: float | None = None) -> Action:
        return Action(self._call("GET", f"/api/v1/actions/{action_id}", params=_wait_param(wait)))

    def wait(self, action_id: str, timeout: float | None = None) -> Action:
        """The action once final, or as it stands when ``timeout`` seconds have passed (None: forever)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = MAX_LONG_POLL if deadline is None else deadline - time.monotonic()
            action = self.get(action_id, wait=max(left, 0))
            if action.final or left <= 0:
                return action

    def resume(self, handle: PendingAction | Action | str, *, timeout: float | None = 0) -> Action:
        """Pick an action up again after a restart (a ``PendingAction`` handle, or its id): the action
        as it stands now, or once final when ``timeout`` is given (seconds; None: until final). A
        poll-driven agent calls it with ``timeout=0`` now and then; a webhook-driven one when the
        ``action.decided`` webhook arrives."""
        action_id = _action_id(handle)
        return self.get(action_id) if timeout == 0 else self.wait(action_id, timeout)

    def cancel(self, action_id: str) -> Action:
        """Withdraw a pending or held action; already cancelled counts as done."""
        try:
            return Action(self._call("POST", f"/api/v1/actions/{action_id}/cancel"))
        except errors.ConflictError:
            if _cancel_was_done(action := self.get(action_id)):
                return action
            raise

    def report(
        self,
        action_id: str,
        *,
        executed: bool,
        result: Any = None,
        error: str | None = None,
        params_hash: str | None = None,
    ) -> Action:
        """Say once what happened when the agent acted (contract §2); a retried report counts once.
        ``params_hash``: ``gate_client.params_hash`` of the params executed (contract §6.3)."""
        body = _report_body(executed, result, error, params_hash)
        try:
            return Action(self._call("POST", f"/api/v1/actions/{action_id}/outcome", json=body))
        except errors.ConflictError:
            if _report_was_done(action := self.get(action_id), executed):
                return action
            raise


class AsyncGate(_Base):
    """The same client for asyncio code: every method is a coroutine."""

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        timeout: float = 10.0,
        retries: int = 4,
        backoff: float = 0.25,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        super().__init__(base_url, token, timeout=timeout, retries=retries, backoff=backoff)
        self._http = httpx.AsyncClient(base_url=self.base_url, headers=self.headers, transport=transport)

    async def __aenter__(self) -> AsyncGate:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _call(self, method: str, path: str, *, json: Any = None, params: dict[str, str] | None = None) -> Any:
        for attempt in range(self.retries + 1):
            response: httpx.Response | None = None
            try:
                response = await self._http.request(
                    method, path, json=json, params=params, timeout=self._request_timeout(params)
                )
            except httpx.TransportError:
                if attempt == self.retries:
                    raise errors.GateError(f"cannot reach the gate at {self.base_url}") from None
            else:
                if response.status_code not in RETRIED_STATUSES or attempt == self.retries:
                    _raise_for(response)
                    return response.json()
            await asyncio.sleep(self._delay(attempt, response))
        raise AssertionError("unreachable")

    async def propose(
        self,
        action_type: str,
        params: Mapping[str, Any],
        *,
        trajectory: Any = None,
        context: Mapping[str, Any] | None = None,
        confidence: float | None = None,
        rationale: str | None = None,
        callback_url: str | None = None,
        idempotency_key: str | None = None,
        wait: float | None = None,
    ) -> Action:
        body = _proposal(
            action_type,
            params,
            trajectory=trajectory,
            context=context,
            confidence=confidence,
            rationale=rationale,
            callback_url=callback_url,
            idempotency_key=idempotency_key,
        )
        return Action(await self._call("POST", "/api/v1/actions", json=body, params=_wait_param(wait)))

    async def get(self, action_id: str, *, wait: float | None = None) -> Action:
        return Action(await self._call("GET", f"/api/v1/actions/{action_id}", params=_wait_param(wait)))

    async def wait(self, action_id: str, timeout: float | None = None) -> Action:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = MAX_LONG_POLL if deadline is None else deadline - time.monotonic()
            action = await self.get(action_id, wait=max(left, 0))
            if action.final or left <= 0:
                return action

    async def resume(self, handle: PendingAction | Action | str, *, timeout: float | None = 0) -> Action:
        """See ``Gate.resume``."""
        action_id = _action_id(handle)
        return await (self.get(action_id) if timeout == 0 else self.wait(action_id, timeout))

    async def cancel(self, action_id: str) -> Action:
        try:
            return Action(await self._call("POST", f"/api/v1/actions/{action_id}/cancel"))
        except errors.ConflictError:
            if _cancel_was_done(action := await self.get(action_id)):
                return action
            raise

    async def report(
        self,
        action_id: str,
        *,
        executed: bool,
        result: Any = None,
        error: str | None = None,
        params_hash: str | None = None,
    ) -> Action:
        body = _report_body(executed, result, error, params_hash)
        try:
            return Action(await self._call("POST", f"/api/v1/actions/{action_id}/outcome", json=body))
        except errors.ConflictError:
            if _report_was_done(action := await self.get(action_id), executed):
                return action
            raise
