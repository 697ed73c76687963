"""``@requires_approval``: the function runs only once the gate approves the call it describes.

The decorated function is a ``GatedFunction``: call it as before; ``.last_action`` is the gate's
action for the latest call (in this thread / task), and ``.resume(handle)`` picks up a call a human
had not decided yet, possibly in another process. ``on_refusal="return"`` turns refusals into
values (``Refusal``, ``PendingAction``) that an agent framework hands to its model as the tool's
result. Idempotency keys come from ``idempotency_key=`` or the framework's tool-call id
(``with tool_call(id):``), so a re-run of the same tool call finds the same action.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Generic, Literal, ParamSpec, TypeVar, cast, overload

from gate_client import errors
from gate_client.action import Action, params_hash
from gate_client.arguments import call_with_params, jsonable, named_arguments
from gate_client.client import AsyncGate, Gate
from gate_client.results import PendingAction, Refusal

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")
Params = Callable[..., Mapping[str, Any]]
OnRefusal = Literal["raise", "return"]
#: A per-call value: given as is, or computed from the call's arguments by name (defaults applied).
PerCall = Callable[..., Any]

_REFUSALS: dict[str, type[errors.NotApproved]] = {
    "rejected": errors.ActionRejected,
    "blocked": errors.ActionBlocked,
    "expired": errors.ActionExpired,
    "cancelled": errors.ActionCancelled,
}

_tool_call_id: ContextVar[str | None] = ContextVar("gate_client_tool_call_id", default=None)


@contextmanager
def tool_call(call_id: str | None) -> Iterator[None]:
    """Within this block, gated calls take their idempotency key from the framework's tool-call id
    (``tool-call/<action type>/<id>``, unless ``idempotency_key=`` says otherwise): the same tool
    call proposed again (a re-run after a crash) finds the same action instead of making a second."""
    token = _tool_call_id.set(call_id)
    try:
        yield
    finally:
        _tool_call_id.reset(token)


def current_tool_call_id() -> str | None:
    return _tool_call_id.get()


def raise_unless_approved(action: Action) -> Action:
    """The action when the agent may act on it; else the typed refusal, carrying the reason."""
    if action.approved:
        return action
    raise _REFUSALS.get(action.status, errors.NotApproved)(action)


@dataclass(frozen=True)
class _Spec:
    action_type: str
    params: Params | None
    context: Mapping[str, Any] | Callable[[], Mapping[str, Any]] | None
    trajectory: Any
    confidence: float | PerCall | None
    rationale: str | PerCall | None
    idempotency_key: str | PerCall | None
    timeout: float | None
    cancel_on_timeout: bool
    report_outcome: bool
    on_refusal: OnRefusal


def _per_call(value: Any, arguments: Mapping[str, Any]) -> Any:
    return value(**arguments) if callable(value) else value


class GatedFunction(Generic[P, R]):  # noqa: UP046 (the package supports Python 3.10)
    """A function gated by ``requires_approval``; calling it proposes, waits and runs (see there)."""

    def __init__(self, function: Callable[P, Any], gate: Gate | AsyncGate, spec: _Spec) -> None:
        self.function = function
        self.gate = gate
        self.spec = spec
        self.is_async = inspect.iscoroutinefunction(function)
        self._last: ContextVar[Action | None] = ContextVar(f"gate_client_last_{id(self)}", default=None)
        self._latest: Action | None = None  # across threads and tasks
        functools.update_wrapper(self, function)
        if self.is_async and not isinstance(gate, AsyncGate):
            raise TypeError(f"{function.__name__} is async: gate it with an AsyncGate")
        if not self.is_async and not isinstance(gate, Gate):
            raise TypeError(f"{function.__name__} is not async: gate it with a Gate")

    @property
    def last_action(self) -> Action | None:
        """The gate's action for the latest call (as last seen: proposed, decided, then with its
        outcome), or None before any call: the latest call made in this thread / asyncio task if
        there is one, else the latest anywhere (a framework may run tools in tasks of its own).
        Its ``id``, ``status`` and ``decision`` are the caller's to log or show."""
        return self._last.get() or self._latest

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        if self.is_async:
            return cast(R, self._call_async(args, kwargs))
        return cast(R, self._call_sync(args, kwargs))

    def resume(self, handle: PendingAction | Action | str, *, timeout: float | None = None) -> R:
        """Continue a call that was left undecided (``PendingAction`` from ``on_refusal="return"``
        or ``ApprovalTimeout.pending``, or the action's id), e.g. in a new process: wait up to
        ``timeout`` seconds (default: the decorator's; 0: just look) and, if approved, run the
        function once with the approved params (a reviewer's edit included) and report it. Already
        acted on: AlreadyExecuted. Refused or still undecided: as a call would (raise, or return
        the value); nothing is withdrawn."""
        wait = self.spec.timeout if timeout is None else timeout
        if self.is_async:
            return cast(R, self._resume_async(handle, wait))
        return cast(R, self._resume_sync(handle, wait))

    # --- shared steps ---------------------------------------------------------------------------

    def _seen(self, action: Action) -> Action:
        self._last.set(action)
        self._latest = action
        return action

    def _proposal(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        spec = self.spec
        arguments = named_arguments(self.function, args, kwargs)
        key = _per_call(spec.idempotency_key, arguments)
        if key is None and (call_id := _tool_call_id.get()):
            key = f"tool-call/{spec.action_type}/{call_id}"
        return {
            "params": dict(spec.params(*args, **kwargs)) if spec.params else arguments,
            "context": spec.context() if callable(spec.context) else spec.context,
            "trajectory": spec.trajectory() if callable(spec.trajectory) else spec.trajectory,
            "confidence": _per_call(spec.confidence, arguments),
            "rationale": _per_call(spec.rationale, arguments),
            "idempotency_key": key,
        }

    def _refused(self, action: Action) -> Any:
        if self.spec.on_refusal == "return":
            return Refusal(action, tool=self.function.__name__)
        raise_unless_approved(action)

    def _undecided(self, action: Action, waited: float, cancel_error: str | None = None) -> Any:
        timeout = errors.ApprovalTimeout(action, waited, cancel_error=cancel_error)
        if self.spec.on_refusal != "return":
            raise timeout
        if timeout.pending is None:
            return Refusal(action, tool=self.function.__name__)
        return PendingAction.from_action(action, tool_call_id=_tool_call_id.get())

    def _call_for(
        self, action: Action, args: tuple[Any, ...], kwargs: dict[str, Any], proposed: Mapping[str, Any] | None
    ) -> tuple[tuple[Any, ...], dict[str, Any], Mapping[str, Any]]:
        """The arguments to run the function with, and the params they are: the proposed call as
        made, or the action's params (a reviewer's edit, or a resumed call) mapped back onto it."""
        edited = action.approved_params
        if edited is None and proposed is not None:
            return args, kwargs, proposed
        wanted = action.params_to_execute
        if self.spec.params is not None:
            raise errors.ParamsNotApplicable(action, "params= maps the arguments: the params cannot be mapped back")
        try:
            new_args, new_kwargs = call_with_params(self.function, args, kwargs, wanted)
        except (TypeError, ValueError) as exc:
            raise errors.ParamsNotApplicable(action, str(exc)) from exc
        return new_args, new_kwargs, wanted

    # --- blocking ------------------------------------------------------------------------------------

    def _call_sync(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        gate = cast(Gate, self.gate)
        body = self._proposal(args, kwargs)
        action = self._seen(gate.propose(self.spec.action_type, **body))
        action = self._seen(gate.wait(action.id, self.spec.timeout))
        if not action.final:
            cancel_error = None
            if self.spec.cancel_on_timeout:
                try:
                    action = gate.cancel(action.id)
                except errors.ConflictError:
                    action = gate.get(action.id)  # decided between the wait and the cancel
                except errors.GateError as exc:
                    cancel_error = str(exc)
                self._seen(action)
            if not action.final or action.status == "cancelled":
                return self._undecided(action, self.spec.timeout or 0, cancel_error)
        return self._settle_sync(action, args, kwargs, body["params"])

    def _resume_sync(self, handle: PendingAction | Action | str, timeout: float | None) -> Any:
        action = self._seen(cast(Gate, self.gate).resume(handle, timeout=timeout))
        if not action.final:
            return self._undecided(action, timeout or 0)
        return self._settle_sync(action, (), {}, None)

    def _settle_sync(
        self, action: Action, args: tuple[Any, ...], kwargs: dict[str, Any], proposed: Mapping[str, Any] | None
    ) -> Any:
        gate = cast(Gate, self.gate)
        if not action.approved:
            return self._refused(action)
        if action.outcome is not None:
            raise errors.AlreadyExecuted(action)
        report = self.spec.report_outcome
        try:
            args, kwargs, executed = self._call_for(action, args, kwargs, proposed)
        except errors.ParamsNotApplicable as exc:
            if report:
                self._seen(gate.report(action.id, executed=False, error=str(exc)))
            raise
        hashed = params_hash(executed)
        try:
            result = self.function(*args, **kwargs)
        except Exception as exc:
            if report:
                error = f"{type(exc).__name__}: {exc}"
                self._seen(gate.report(action.id, executed=False, error=error, params_hash=hashed))
            raise
        if report:
            self._seen(gate.report(action.id, executed=True, result=jsonable(result), params_hash=hashed))
        return result

    # --- asyncio -------------------------------------------------------------------------------------

    async def _call_async(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        gate = cast(AsyncGate, self.gate)
        body = self._proposal(args, kwargs)
        action = self._seen(await gate.propose(self.spec.action_type, **body))
        action = self._seen(await gate.wait(action.id, self.spec.timeout))
        if not action.final:
            cancel_error = None
            if self.spec.cancel_on_timeout:
                try:
                    action = await gate.cancel(action.id)
                except errors.ConflictError:
                    action = await gate.get(action.id)
                except errors.GateError as exc:
                    cancel_error = str(exc)
                self._seen(action)
            if not action.final or action.status == "cancelled":
                return self._undecided(action, self.spec.timeout or 0, cancel_error)
        return await self._settle_async(action, args, kwargs, body["params"])

    async def _resume_async(self, handle: PendingAction | Action | str, timeout: float | None) -> Any:
        action = self._seen(await cast(AsyncGate, self.gate).resume(handle, timeout=timeout))
        if not action.final:
            return self._undecided(action, timeout or 0)
        return await self._settle_async(action, (), {}, None)

    async def _settle_async(
        self, action: Action, args: tuple[Any, ...], kwargs: dict[str, Any], proposed: Mapping[str, Any] | None
    ) -> Any:
        gate = cast(AsyncGate, self.gate)
        if not action.approved:
            return self._refused(action)
        if action.outcome is not None:
            raise errors.AlreadyExecuted(action)
        report = self.spec.report_outcome
        try:
            args, kwargs, executed = self._call_for(action, args, kwargs, proposed)
        except errors.ParamsNotApplicable as exc:
            if report:
                self._seen(await gate.report(action.id, executed=False, error=str(exc)))
            raise
        hashed = params_hash(executed)
        function = cast(Callable[..., Awaitable[Any]], self.function)
        try:
            result = await function(*args, **kwargs)
        except Exception as exc:
            if report:
                error = f"{type(exc).__name__}: {exc}"
                self._seen(await gate.report(action.id, executed=False, error=error, params_hash=hashed))
            raise
        if report:
            self._seen(await gate.report(action.id, executed=True, result=jsonable(result), params_hash=hashed))
        return result


class ReturningDecorator:
    """What ``requires_approval(..., on_refusal="return")`` returns: typed so that an ``async def``
    gives a coroutine of ``T | Refusal | PendingAction`` and a ``def`` that union itself."""

    def __init__(self, gate: Gate | AsyncGate, spec: _Spec) -> None:
        self.gate = gate
        self.spec = spec

    @overload
    def __call__(
        self, function: Callable[P, Coroutine[Any, Any, T]]
    ) -> GatedFunction[P, Coroutine[Any, Any, T | Refusal | PendingAction]]: ...

    @overload
    def __call__(self, function: Callable[P, T]) -> GatedFunction[P, T | Refusal | PendingAction]: ...

    def __call__(self, function: Callable[P, Any]) -> GatedFunction[P, Any]:
        return GatedFunction(function, self.gate, self.spec)


@overload
def requires_approval(
    gate: Gate | AsyncGate,
    *,
    action_type: str,
    params: Params | None = None,
    context: Mapping[str, Any] | Callable[[], Mapping[str, Any]] | None = None,
    trajectory: Any | Callable[[], Any] = None,
    confidence: float | PerCall | None = None,
    rationale: str | PerCall | None = None,
    idempotency_key: str | PerCall | None = None,
    timeout: float | None = 300.0,
    cancel_on_timeout: bool = True,
    report_outcome: bool = True,
    on_refusal: Literal["raise"] = "raise",
) -> Callable[[Callable[P, R]], GatedFunction[P, R]]: ...


@overload
def requires_approval(
    gate: Gate | AsyncGate,
    *,
    action_type: str,
    params: Params | None = None,
    context: Mapping[str, Any] | Callable[[], Mapping[str, Any]] | None = None,
    trajectory: Any | Callable[[], Any] = None,
    confidence: float | PerCall | None = None,
    rationale: str | PerCall | None = None,
    idempotency_key: str | PerCall | None = None,
    timeout: float | None = 300.0,
    cancel_on_timeout: bool = True,
    report_outcome: bool = True,
    on_refusal: Literal["return"],
) -> ReturningDecorator: ...


def requires_approval(
    gate: Gate | AsyncGate,
    *,
    action_type: str,
    params: Params | None = None,
    context: Mapping[str, Any] | Callable[[], Mapping[str, Any]] | None = None,
    trajectory: Any | Callable[[], Any] = None,
    confidence: float | PerCall | None = None,
    rationale: str | PerCall | None = None,
    idempotency_key: str | PerCall | None = None,
    timeout: float | None = 300.0,
    cancel_on_timeout: bool = True,
    report_outcome: bool = True,
    on_refusal: OnRefusal = "raise",
) -> Callable[[Callable[P, R]], GatedFunction[P, R]] | ReturningDecorator:
    """Gate a function: each call is proposed as ``action_type`` with its arguments as params (or
    ``params(*args, **kwargs)``), the decision is awaited (long poll, up to ``timeout`` seconds),
    and the function runs only when the action is ``approved`` or ``auto_approved``. When a reviewer
    edited the params (``approved_params``), the function runs with those instead (each argument by
    name; ParamsNotApplicable when they do not fit it, or when ``params=`` maps the arguments: the
    decorator cannot invert that), and the outcome names the params it ran with (``params_hash``).

    ``confidence``, ``rationale`` and ``idempotency_key`` are values, or callables receiving the
    call's arguments by name (defaults applied), e.g. ``rationale=lambda order_id, amount:
    f"refund {amount} on {order_id}"``. Without a key, the framework's tool-call id makes one
    (``with gate_client.tool_call(call_id):``), else a fresh key each call.
    ``context`` and ``trajectory`` may be callables, read at each call (the agent's current run).

    Refused (``on_refusal="raise"``, the default): ActionRejected / ActionBlocked / ActionExpired /
    ActionCancelled, each with ``reason``. Undecided after ``timeout``: ApprovalTimeout (the action
    withdrawn first, unless ``cancel_on_timeout=False``; then ``.pending`` is a handle to resume).
    With ``on_refusal="return"`` the call returns a ``Refusal`` instead of raising, or, undecided and
    not withdrawn, a ``PendingAction``: both falsy, both with a ``.message`` for the model.
    After running, the outcome is reported to the gate: executed with the return value when it is
    JSON, or not executed with the exception's text (then re-raised). An action already acted on
    (the same key re-run after the function ran) is not run again: AlreadyExecuted.
    Works on ``def`` functions with a ``Gate`` and on ``async def`` functions with an ``AsyncGate``.
    """
    if on_refusal not in ("raise", "return"):
        raise ValueError(f"on_refusal must be 'raise' or 'return', not {on_refusal!r}")
    spec = _Spec(
        action_type=action_type,
        params=params,
        context=context,
        trajectory=trajectory,
        confidence=confidence,
        rationale=rationale,
        idempotency_key=idempotency_key,
        timeout=timeout,
        cancel_on_timeout=cancel_on_timeout,
        report_outcome=report_outcome,
        on_refusal=on_refusal,
    )

    if on_refusal == "return":
        return ReturningDecorator(gate, spec)

    def decorate(function: Callable[P, R]) -> GatedFunction[P, R]:
        return GatedFunction(function, gate, spec)

    return decorate
