"""``@requires_approval``: the function runs only once the gate approves the call it describes."""

from __future__ import annotations

import functools
import inspect
import json
from collections.abc import Callable, Mapping
from typing import Any, TypeVar, cast

from gate_client import errors
from gate_client.action import Action
from gate_client.client import AsyncGate, Gate

F = TypeVar("F", bound=Callable[..., Any])
Params = Callable[..., Mapping[str, Any]]

_REFUSALS: dict[str, type[errors.NotApproved]] = {
    "rejected": errors.ActionRejected,
    "blocked": errors.ActionBlocked,
    "expired": errors.ActionExpired,
    "cancelled": errors.ActionCancelled,
}


def raise_unless_approved(action: Action) -> Action:
    """The action when the agent may act on it; else the typed refusal, carrying the reason."""
    if action.approved:
        return action
    raise _REFUSALS.get(action.status, errors.NotApproved)(action)


def _arguments(function: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
    """The call's arguments by name (defaults applied): the params of the proposal."""
    bound = inspect.signature(function).bind(*args, **kwargs)
    bound.apply_defaults()
    params: dict[str, Any] = {}
    for name, value in bound.arguments.items():
        kind = inspect.signature(function).parameters[name].kind
        if kind is inspect.Parameter.VAR_KEYWORD:
            params.update(value)
        elif kind is not inspect.Parameter.VAR_POSITIONAL:
            params[name] = value
    json.dumps(params)  # TypeError now, with the function's name in the traceback, if not JSON
    return params


def requires_approval(
    gate: Gate | AsyncGate,
    *,
    action_type: str,
    params: Params | None = None,
    context: Mapping[str, Any] | Callable[[], Mapping[str, Any]] | None = None,
    trajectory: Any | Callable[[], Any] = None,
    confidence: float | None = None,
    timeout: float | None = 300.0,
    cancel_on_timeout: bool = True,
    report_outcome: bool = True,
) -> Callable[[F], F]:
    """Gate a function: each call is proposed as ``action_type`` with its arguments as params (or
    ``params(*args, **kwargs)``), the decision is awaited (long poll, up to ``timeout`` seconds),
    and the function runs only when the action is ``approved`` or ``auto_approved``.

    Refused: ActionRejected / ActionBlocked / ActionExpired / ActionCancelled, each with ``reason``.
    Undecided after ``timeout``: ApprovalTimeout (the action withdrawn first, unless
    ``cancel_on_timeout=False``). After running, the outcome is reported to the gate: executed with
    the return value when it is JSON, or not executed with the exception's text (then re-raised).
    ``context`` and ``trajectory`` may be callables, read at each call (the agent's current run).
    Works on ``def`` functions with a ``Gate`` and on ``async def`` functions with an ``AsyncGate``.
    """

    def proposal(function: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        return {
            "params": dict(params(*args, **kwargs)) if params else _arguments(function, args, kwargs),
            "context": context() if callable(context) else context,
            "trajectory": trajectory() if callable(trajectory) else trajectory,
            "confidence": confidence,
        }

    def decorate(function: F) -> F:
        if inspect.iscoroutinefunction(function):
            if not isinstance(gate, AsyncGate):
                raise TypeError(f"{function.__name__} is async: gate it with an AsyncGate")
            async_gate = gate

            @functools.wraps(function)
            async def run_async(*args: Any, **kwargs: Any) -> Any:
                action = await async_gate.propose(action_type, **proposal(function, args, kwargs))
                action = await async_gate.wait(action.id, timeout)
                if not action.final:
                    if cancel_on_timeout:
                        try:
                            action = await async_gate.cancel(action.id)
                        except errors.ConflictError:
                            action = await async_gate.get(action.id)  # decided between the wait and the cancel
                        if action.final and action.status != "cancelled":  # decided meanwhile
                            return await run_async_decided(action, args, kwargs)
                    raise errors.ApprovalTimeout(action, timeout or 0, cancelled=cancel_on_timeout)
                return await run_async_decided(action, args, kwargs)

            async def run_async_decided(action: Action, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
                raise_unless_approved(action)
                try:
                    result = await function(*args, **kwargs)
                except Exception as exc:
                    if report_outcome:
                        await async_gate.report(action.id, executed=False, error=f"{type(exc).__name__}: {exc}")
                    raise
                if report_outcome:
                    await async_gate.report(action.id, executed=True, result=_jsonable(result))
                return result

            return cast(F, run_async)

        if not isinstance(gate, Gate):
            raise TypeError(f"{function.__name__} is not async: gate it with a Gate")
        sync_gate = gate

        @functools.wraps(function)
        def run(*args: Any, **kwargs: Any) -> Any:
            action = sync_gate.propose(action_type, **proposal(function, args, kwargs))
            action = sync_gate.wait(action.id, timeout)
            if not action.final:
                if cancel_on_timeout:
                    try:
                        action = sync_gate.cancel(action.id)
                    except errors.ConflictError:
                        action = sync_gate.get(action.id)  # decided between the wait and the cancel
                    if action.final and action.status != "cancelled":
                        return run_decided(action, args, kwargs)
                raise errors.ApprovalTimeout(action, timeout or 0, cancelled=cancel_on_timeout)
            return run_decided(action, args, kwargs)

        def run_decided(action: Action, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
            raise_unless_approved(action)
            try:
                result = function(*args, **kwargs)
            except Exception as exc:
                if report_outcome:
                    sync_gate.report(action.id, executed=False, error=f"{type(exc).__name__}: {exc}")
                raise
            if report_outcome:
                sync_gate.report(action.id, executed=True, result=_jsonable(result))
            return result

        return cast(F, run)

    return decorate


def _jsonable(value: Any) -> Any:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return None
    return value
