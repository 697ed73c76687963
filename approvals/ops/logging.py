"""Structured logs: one JSON object a line, naming the action (and its agent) a line is about.

The code paths that handle an action (the propose view, the evaluation task, a decision, webhooks,
deadlines) put ``action_id`` and ``agent`` in a context variable with :func:`bind` or
:func:`bind_action`; :class:`ActionContextFilter`, on the handler, copies them onto every record
logged meanwhile, whichever logger logs it. :class:`RequestLogMiddleware` starts each request with
an empty context and logs its method, path, status and duration (never headers nor the query
string, so no token is ever written).

This module is loaded by ``LOGGING`` before Django is set up: it imports nothing of Django at the
top level.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from django.http import HttpRequest, HttpResponse

    from approvals.models import ProposedAction

CONTEXT_KEYS = ("action_id", "agent")

_context: ContextVar[Mapping[str, str] | None] = ContextVar("gate_log_context", default=None)


def current() -> Mapping[str, str]:
    """What the lines logged now are about (``action_id``, ``agent``)."""
    return _context.get() or {}


def bind(**values: object) -> None:
    """Add to the current context; ``None`` values are left out."""
    _context.set({**current(), **{key: str(value) for key, value in values.items() if value is not None}})


def bind_action(action: ProposedAction) -> None:
    """Name ``action`` (and its agent, when loaded or cheap to load) on the lines that follow."""
    # Only an agent already loaded (select_related, or just assigned): naming it costs no query.
    agent = action.agent.name if type(action).agent.is_cached(action) else None
    bind(action_id=action.pk, agent=agent)


def clear() -> None:
    _context.set(None)


@contextmanager
def log_context(**values: object) -> Iterator[None]:
    """The lines logged inside the block carry ``values``; the context before it comes back after."""
    token = _context.set({**current(), **{key: str(value) for key, value in values.items() if value is not None}})
    try:
        yield
    finally:
        _context.reset(token)


# Celery tasks that take an action's id (first argument or ``action_id``): their lines name it from
# the start, the task's own "succeeded" line included; the service adds the agent once loaded.
ACTION_TASKS = frozenset({"approvals.tasks.evaluate_action"})


def celery_task_started(task: Any = None, args: Any = None, kwargs: Any = None, **_: Any) -> None:
    """task_prerun: a task starts with an empty context, or its action's id."""
    clear()
    if getattr(task, "name", None) in ACTION_TASKS:
        action_id = (kwargs or {}).get("action_id") or (args[0] if args else None)
        bind(action_id=action_id)


def celery_task_finished(**_: Any) -> None:
    """task_postrun: nothing leaks into the next task of the same process."""
    clear()


_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


class ActionContextFilter(logging.Filter):
    """Copies the bound ``action_id`` and ``agent`` onto each record (set it on the handler).

    Celery's "Task ... received" line is logged by the worker's main process, outside any task: its
    action is read from the task's arguments, which Celery puts on the record as ``data``.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in current().items():
            if not hasattr(record, key):
                setattr(record, key, value)
        data = getattr(record, "data", None)
        if not hasattr(record, "action_id") and isinstance(data, dict) and data.get("name") in ACTION_TASKS:
            found = _UUID.search(str(data.get("kwargs", "")) + str(data.get("args", "")))
            if found:
                record.action_id = found.group()
        return True


# Attributes every LogRecord has; anything else on a record came from ``extra=`` or the filter.
_RECORD_ATTRIBUTES = frozenset(logging.makeLogRecord({}).__dict__) | {
    "message",
    "asctime",
    "taskName",
    "color_message",  # uvicorn's copy of the message with terminal colours
}


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {key: value for key, value in record.__dict__.items() if key not in _RECORD_ATTRIBUTES}


class JsonFormatter(logging.Formatter):
    """``{"time", "level", "logger", "message", ...extras}``, one object a line, UTC ISO 8601 times."""

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        payload.update(_extras(record))
        if record.exc_info:
            payload["exc_info"] = self.formatException(record.exc_info)
        if record.stack_info:
            payload["stack_info"] = self.formatStack(record.stack_info)
        return json.dumps(payload, default=str, ensure_ascii=False)


class PlainFormatter(logging.Formatter):
    """The classic line for people (tests, the embedded demo), with the context appended."""

    def __init__(self, fmt: str | None = None, datefmt: str | None = None, style: Any = "%", **kwargs: Any) -> None:
        super().__init__(fmt or "%(asctime)s %(levelname)s %(name)s %(message)s", datefmt, style, **kwargs)

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        context = " ".join(f"{key}={getattr(record, key)}" for key in CONTEXT_KEYS if hasattr(record, key))
        return f"{line} [{context}]" if context else line


request_logger = logging.getLogger("approvals.requests")

# Probes and scrapes come every few seconds: logged at DEBUG, so that INFO stays about real traffic.
QUIET_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})


class RequestLogMiddleware:
    """Outermost: a fresh log context per request, and one line per request when it is answered."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        token = _context.set(None)
        started = time.perf_counter()
        try:
            response = self.get_response(request)
            duration_ms = round((time.perf_counter() - started) * 1000, 2)
            request_logger.log(
                logging.DEBUG if request.path in QUIET_PATHS else logging.INFO,
                "%s %s %s %.1fms",
                request.method,
                request.path,
                response.status_code,
                duration_ms,
                extra={
                    "method": request.method,
                    "path": request.path,
                    "status": response.status_code,
                    "duration_ms": duration_ms,
                },
            )
            return response
        finally:
            _context.reset(token)
