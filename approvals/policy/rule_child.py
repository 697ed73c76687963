"""The child process that runs a policy's rules for approvals.policy.supervised.

    python -m approvals.policy.rule_child

Reads requests from stdin and writes answers to stdout, each a frame (approvals.policy.rule_frames).
A request is ``{"key", "rules": [CEL source, ...] | null, "variables": {...}}`` (the rules are sent
once per key, then remembered); the answer is one frame per rule as it finishes, ``{"i", "v":
bool}``, ``{"i", "t": type name}`` (not a boolean) or ``{"i", "e": error}``, then ``{"done":
true}``; ``{"unknown": key}`` asks for the rules again. A rule that runs on is never interrupted
here: the parent ends this process.
"""

from __future__ import annotations

import contextlib
import ctypes
import signal
import sys
from collections import OrderedDict
from collections.abc import Callable
from datetime import datetime
from typing import IO, Any

import cel

from approvals.policy.language import FUNCTIONS
from approvals.policy.rule_frames import frame_encode, frame_read

KEPT_POLICIES = 32  # compiled policies kept, least recently used dropped first


def _die_with_parent() -> None:
    """Linux: end this process when its parent ends, even while a rule runs on."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass  # elsewhere the closed stdin ends it once the rule returns


ANSWER = "_gate_answer"  # the function the combined program reports each rule's result through


def answer(index: int, result: Any) -> dict[str, Any]:
    if isinstance(result, bool):
        return {"i": index, "v": result}
    return {"i": index, "t": type(result).__name__}


class Policy:
    """A policy's rules, compiled one by one and as one list that reports each rule as it ends."""

    def __init__(self, sources: list[str]) -> None:
        self.programs = [cel.compile(source) for source in sources]
        marked = ", ".join(f"{ANSWER}({index}, ({source}\n))" for index, source in enumerate(sources))
        self.combined = cel.compile(f"[{marked}]")

    def run(self, variables: dict[str, Any], send: Callable[[dict[str, Any]], None]) -> None:
        """Every rule in one call (each CEL call sets its environment up anew, which costs more than
        a simple rule), each result sent as its rule ends, in order; when a rule raises, the list
        stops there, and that rule and the ones after it run one by one."""
        answered = 0

        def report(index: int, result: Any) -> Any:
            nonlocal answered
            send(answer(index, result))
            answered = index + 1
            return result

        context = cel.Context(variables, {**FUNCTIONS, ANSWER: report})
        with contextlib.suppress(Exception):  # a rule raised: it and the rest one by one, so that
            self.combined.execute(context)  # the error is its own
            return
        for index in range(answered, len(self.programs)):
            try:
                send(answer(index, self.programs[index].execute(context)))
            except Exception as exc:  # any error in a rule fails closed, in the parent
                send({"i": index, "e": f"{type(exc).__name__}: {exc}"})


def serve(requests: IO[bytes], answers: IO[bytes]) -> None:
    policies: OrderedDict[str, Policy] = OrderedDict()

    def send(value: dict[str, Any]) -> None:
        answers.write(frame_encode(value))
        answers.flush()  # the parent knows which rule runs if the budget runs out

    send({"ready": True})
    while (request := frame_read(requests)) is not None:
        key = request["key"]
        if request.get("rules") is not None:
            policies[key] = Policy(request["rules"])
            while len(policies) > KEPT_POLICIES:
                policies.popitem(last=False)
        if key not in policies:  # forgotten, or this process is new: the parent sends them again
            send({"unknown": key})
            continue
        policies.move_to_end(key)
        variables = request["variables"]
        if isinstance(variables.get("now"), str):
            variables["now"] = datetime.fromisoformat(variables["now"])
        policies[key].run(variables, send)
        send({"done": True})


def main() -> None:
    _die_with_parent()
    answers = sys.stdout.buffer
    sys.stdout = sys.stderr  # nothing but frames on the answers' stream
    with contextlib.suppress(BrokenPipeError):  # the parent is gone: so is the work
        serve(sys.stdin.buffer, answers)


if __name__ == "__main__":
    main()
