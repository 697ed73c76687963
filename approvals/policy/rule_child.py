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


def answer(program: Any, context: cel.Context, index: int) -> dict[str, Any]:
    try:
        result = program.execute(context)
    except Exception as exc:  # any error in a rule fails closed, in the parent
        return {"i": index, "e": f"{type(exc).__name__}: {exc}"}
    if isinstance(result, bool):
        return {"i": index, "v": result}
    return {"i": index, "t": type(result).__name__}


def serve(requests: IO[bytes], answers: IO[bytes]) -> None:
    policies: OrderedDict[str, list[Any]] = OrderedDict()
    answers.write(frame_encode({"ready": True}))
    answers.flush()
    while (request := frame_read(requests)) is not None:
        key = request["key"]
        if request.get("rules") is not None:
            policies[key] = [cel.compile(source) for source in request["rules"]]
            while len(policies) > KEPT_POLICIES:
                policies.popitem(last=False)
        if key not in policies:  # forgotten, or this process is new: the parent sends them again
            answers.write(frame_encode({"unknown": key}))
            answers.flush()
            continue
        policies.move_to_end(key)
        variables = request["variables"]
        if isinstance(variables.get("now"), str):
            variables["now"] = datetime.fromisoformat(variables["now"])
        context = cel.Context(variables, FUNCTIONS)
        for index, program in enumerate(policies[key]):
            answers.write(frame_encode(answer(program, context, index)))
            answers.flush()
        answers.write(frame_encode({"done": True}))
        answers.flush()


def main() -> None:
    _die_with_parent()
    answers = sys.stdout.buffer
    sys.stdout = sys.stderr  # nothing but frames on the answers' stream
    with contextlib.suppress(BrokenPipeError):  # the parent is gone: so is the work
        serve(sys.stdin.buffer, answers)


if __name__ == "__main__":
    main()
