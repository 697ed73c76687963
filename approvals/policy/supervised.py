"""Rules that might run past the budget run in a child process, which is ended when they do.

A CEL call cannot be interrupted: the binding holds the interpreter lock while it runs, so neither
a signal nor a watching thread gets a word in. So an evaluation that the estimate at its own size
does not keep well within the budget (approvals.policy.rule_run) runs in a child of the evaluating
process (approvals.policy.rule_child), which answers rule by rule as each ends. The parent waits for the answers until
the budget is spent, then ends the child: the rule still running is named, the evaluating
process (a Celery worker) carries on, and a fresh child is started for the next evaluation.

One child per thread of the evaluating process, started on first use and kept; its start (about
half a second, the binding's own imports) is not counted against any evaluation's budget.
"""

from __future__ import annotations

import hashlib
import os
import select
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from approvals.policy.rule_frames import HEADER, frame_decode, json_encode

PROJECT_ROOT = str(Path(__file__).resolve().parents[2])
STARTUP_SECONDS = 30.0  # a child that is not ready by then is a fault (the action is held)

# What happened to each rule: a boolean result, a result of another type, an error, or
STOPPED = "stopped"  # still running when the budget ran out; the child was ended
NOT_RUN = "not_run"  # after the stopped rule: never started
LOST = "lost"  # the child ended by itself while it ran (killed, out of memory)


@dataclass(frozen=True)
class Outcome:
    kind: str  # value, type, error, stopped, not_run, lost
    value: Any = None  # the boolean, the type's name or the error's text


class ChildFault(RuntimeError):
    """The child could not be started or spoke out of turn: the evaluation fails (held)."""


class _Child:
    def __init__(self) -> None:
        # This interpreter, and this project's module wherever the evaluating process runs from.
        path = os.pathsep.join(filter(None, [PROJECT_ROOT, os.environ.get("PYTHONPATH")]))
        self.process = subprocess.Popen(  # noqa: S603 - no input of anyone's in the command
            [sys.executable, "-m", "approvals.policy.rule_child"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            close_fds=True,
            env={**os.environ, "PYTHONPATH": path},
        )
        self.known: set[str] = set()
        self.buffer = bytearray()
        self.ready = False

    def end(self) -> None:
        """SIGKILL and reap: the rule it runs cannot be stopped any other way."""
        self.process.kill()
        self.process.wait()
        for stream in (self.process.stdin, self.process.stdout):
            if stream is not None:
                stream.close()

    def send(self, key: str, rules: list[str] | None, variables: bytes) -> None:
        """A request, written out around the variables already encoded (they are not decoded here)."""
        assert self.process.stdin is not None
        payload = b'{"key":"' + key.encode() + b'","rules":' + json_encode(rules) + b',"variables":' + variables + b"}"
        self.process.stdin.write(HEADER.pack(len(payload)) + payload)
        self.process.stdin.flush()

    def receive(self, deadline: float) -> Any:
        """The next answer; None when the deadline passed first. EOFError when the child ended."""
        assert self.process.stdout is not None
        fd = self.process.stdout.fileno()
        while True:
            if len(self.buffer) >= HEADER.size:
                (size,) = HEADER.unpack_from(self.buffer)
                if len(self.buffer) >= HEADER.size + size:
                    data = bytes(self.buffer[HEADER.size : HEADER.size + size])
                    del self.buffer[: HEADER.size + size]
                    return frame_decode(data)
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            readable, _, _ = select.select([fd], [], [], left)
            if readable:
                chunk = os.read(fd, 1 << 16)
                if not chunk:
                    raise EOFError("the rules' process ended")
                self.buffer += chunk

    def wait_ready(self) -> None:
        if not self.ready:
            try:
                answer = self.receive(time.monotonic() + STARTUP_SECONDS)
            except EOFError as exc:
                raise ChildFault("the rules' process ended as it started") from exc
            if answer != {"ready": True}:
                raise ChildFault(f"the rules' process did not start in {STARTUP_SECONDS:g} s")
            self.ready = True


_local = threading.local()


def _child() -> _Child:
    child: _Child | None = getattr(_local, "child", None)
    if child is None or child.process.poll() is not None:
        child = _local.child = _Child()
    return child


def child_start() -> None:
    """Start this thread's child now (a worker process at its start), not at its first use."""
    _child()


def _restart(child: _Child) -> None:
    """End a child that overran (or broke), and start the next one now, so that its start overlaps
    with the rest of this evaluation."""
    child.end()
    _local.child = _Child()


def policy_key(sources: tuple[str, ...]) -> str:
    """What names a policy's rules to the child (hex: written into a request as it is)."""
    return hashlib.sha256("\0".join(sources).encode()).hexdigest()


def rules_run(key: str, sources: tuple[str, ...], variables: bytes, *, budget_seconds: float) -> list[Outcome]:
    """Run the rules (their CEL sources) over ``variables`` (a JSON object, encoded) in the child,
    for at most ``budget_seconds``. Always one outcome per rule, in order."""
    child = _child()
    child.wait_ready()  # the budget counts from here: a start is not an evaluation's cost
    deadline = time.monotonic() + budget_seconds
    outcomes: list[Outcome] = []
    try:
        while True:
            child.send(key, None if key in child.known else list(sources), variables)
            child.known.add(key)
            answer = child.receive(deadline)
            if isinstance(answer, dict) and "unknown" in answer:
                child.known.discard(key)
                continue
            break
        while answer is not None and "done" not in answer:
            outcomes.append(_outcome(answer))
            answer = child.receive(deadline)
    except (EOFError, BrokenPipeError):
        _restart(child)
        return _rest(outcomes, len(sources), LOST)
    if answer is None:
        _restart(child)
        return _rest(outcomes, len(sources), STOPPED)
    if len(outcomes) != len(sources):
        _restart(child)
        raise ChildFault(f"the rules' process answered {len(outcomes)} of {len(sources)} rules")
    return outcomes


def _outcome(answer: dict[str, Any]) -> Outcome:
    if "v" in answer:
        return Outcome("value", answer["v"])
    if "t" in answer:
        return Outcome("type", answer["t"])
    return Outcome("error", answer.get("e", "no answer"))


def _rest(outcomes: list[Outcome], count: int, what: str) -> list[Outcome]:
    """The first rule without an answer is the one ``what`` befell; the rest never ran."""
    if len(outcomes) < count:
        outcomes.append(Outcome(what))
    return outcomes + [Outcome(NOT_RUN)] * (count - len(outcomes))
