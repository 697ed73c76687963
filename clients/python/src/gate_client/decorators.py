"""``@requires_approval``: the function runs only once the gate approves the call it describes."""

from __future__ import annotations

import functools
import inspect
import json
from collections.abc import Callable, Mapping
from typing import Any, TypeVar, cast

from gate_client import errors
from gate_client.action import Action, params_hash
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


def _edited_call(
    function: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], edited: Mapping[str, Any]
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """The call's arguments with a reviewer's edited params in place of the proposed ones (the
    inverse of ``_arguments``): each named argument from the edit, else its default; keys the
    function does not name go to its ``**kwargs``. ValueError when the edit does not fit."""
    signature = inspect.signature(function)
    bound = signature.bind(*args, **kwargs)
    rest = dict(edited)
    var_keyword = None
    for name, parameter in signature.parameters.items():
        if parameter.kind is inspect.Parameter.VAR_POSITIONAL:
            continue  # not part of the params: passed as called
        if parameter.kind is inspect.Parameter.VAR_KEYWORD:
            var_keyword = name
        elif name in rest:
            bound.arguments[name] = rest.pop(name)
        elif parameter.default is not inspect.Parameter.empty:
            bound.arguments[name] = parameter.default
        else:
            raise ValueError(f"the approved params have no {name!r}, which {function.__name__} requires")
    if var_keyword is not None:
        bound.arguments[var_keyword] = rest
    elif rest:
        raise ValueError(f"{function.__name__} takes no argument {', '.join(sorted(rest))}")
    return bound.args, bound.kwargs


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
    and the function runs only when the action is ``approved`` or ``auto_approved``. When a reviewer
    edited the params (``approved_params``), the function runs with those instead (each argument by
    name; ParamsNotApplicable when they do not fit it, or when ``params=`` maps the arguments: the
    decorator cannot invert that), and the outcome names the params it ran with (``params_hash``).

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

    def call_for(
        function: Callable[..., Any], action: Action, args: tuple[Any, ...], kwargs: dict[str, Any], proposed: Any
    ) -> tuple[tuple[Any, ...], dict[str, Any], Mapping[str, Any]]:
        """The arguments to run the function with, and the params they are (the edit, if any)."""
        edited = action.approved_params
        if edited is None:
            return args, kwargs, proposed
        if params is not None:
            raise errors.ParamsNotApplicable(action, "params= maps the arguments: an edit cannot be mapped back")
        try:
            edited_args, edited_kwargs = _edited_call(function, args, kwargs, edited)
        except (TypeError, ValueError) as exc:
            raise errors.ParamsNotApplicable(action, str(exc)) from exc
        return edited_args, edited_kwargs, edited

    def decorate(function: F) -> F:
        if inspect.iscoroutinefunction(function):
            if not isinstance(gate, AsyncGate):
                raise TypeError(f"{function.__name__} is async: gate it with an AsyncGate")
            async_gate = gate

            @functools.wraps(function)
            async def run_async(*args: Any, **kwargs: Any) -> Any:
                body = proposal(function, args, kwargs)
                action = await async_gate.propose(action_type, **body)
                action = await async_gate.wait(action.id, timeout)
                if not action.final:
                    if cancel_on_timeout:
                        try:
                            action = await async_gate.cancel(action.id)
                        except errors.ConflictError:
                            action = await async_gate.get(action.id)  # decided between the wait and the cancel
                        if action.final and action.status != "cancelled":  # decided meanwhile
                            return await run_async_decided(action, args, kwargs, body["params"])
                    raise errors.ApprovalTimeout(action, timeout or 0, cancelled=cancel_on_timeout)
                return await run_async_decided(action, args, kwargs, body["params"])

            async def run_async_decided(
                action: Action, args: tuple[Any, ...], kwargs: dict[str, Any], proposed: Any
            ) -> Any:
                raise_unless_approved(action)
                try:
                    args, kwargs, executed = call_for(function, action, args, kwargs, proposed)
                except errors.ParamsNotApplicable as exc:
                    if report_outcome:
                        await async_gate.report(action.id, executed=False, error=str(exc))
                    raise
                hashed = params_hash(executed)
                try:
                    result = await function(*args, **kwargs)
                except Exception as exc:
                    if report_outcome:
                        await async_gate.report(
                            action.id, executed=False, error=f"{type(exc).__name__}: {exc}", params_hash=hashed
                        )
                    raise
                if report_outcome:
                    await async_gate.report(action.id, executed=True, result=_jsonable(result), params_hash=hashed)
                return result

            return cast(F, run_async)

        if not isinstance(gate, Gate):
            raise TypeError(f"{function.__name__} is not async: gate it with a Gate")
        sync_gate = gate

        @functools.wraps(function)
        def run(*args: Any, **kwargs: Any) -> Any:
            body = proposal(function, args, kwargs)
            action = sync_gate.propose(action_type, **body)
            action = sync_gate.wait(action.id, timeout)
            if not action.final:
                if cancel_on_timeout:
                    try:
                        action = sync_gate.cancel(action.id)
                    except errors.ConflictError:
                        action = sync_gate.get(action.id)  # decided between the wait and the cancel
                    if action.final and action.status != "cancelled":
                        return run_decided(action, args, kwargs, body["params"])
                raise errors.ApprovalTimeout(action, timeout or 0, cancelled=cancel_on_timeout)
            return run_decided(action, args, kwargs, body["params"])

        def run_decided(action: Action, args: tuple[Any, ...], kwargs: dict[str, Any], proposed: Any) -> Any:
            raise_unless_approved(action)
            try:
                args, kwargs, executed = call_for(function, action, args, kwargs, proposed)
            except errors.ParamsNotApplicable as exc:
                if report_outcome:
                    sync_gate.report(action.id, executed=False, error=str(exc))
                raise
            hashed = params_hash(executed)
            try:
                result = function(*args, **kwargs)
            except Exception as exc:
                if report_outcome:
                    sync_gate.report(
                        action.id, executed=False, error=f"{type(exc).__name__}: {exc}", params_hash=hashed
                    )
                raise
            if report_outcome:
                sync_gate.report(action.id, executed=True, result=_jsonable(result), params_hash=hashed)
            return result

        return cast(F, run)

    return decorate


def _jsonable(value: Any) -> Any:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return None
    return value
