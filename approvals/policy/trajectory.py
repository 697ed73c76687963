"""Trajectories in the two accepted forms, normalised to the rule model (contract §2, §5).

Every normalised step has all of kind, tool, args, result, role and content, so that rules can
read any field of any step without first testing for its presence.
"""

from __future__ import annotations

import json
from typing import Any

ROLES = ("user", "assistant", "system", "tool")
# OpenAI's newer and older names for two of those roles.
OPENAI_ROLE_ALIASES = {"developer": "system", "function": "tool"}


class TrajectoryError(ValueError):
    """The trajectory is not in either accepted form; ``path`` says where."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path
        self.message = message


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _parse_json_text(value: Any) -> Any:
    """A tool result given as a JSON string becomes the value it encodes; other text stays text."""
    if isinstance(value, str):
        try:
            return json.loads(value, parse_constant=_reject_constant)
        except (ValueError, RecursionError):  # nesting deeper than the parser's limit stays text too
            return value
    return value


def _content_text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # OpenAI content parts
        return "".join(str(part.get("text", "")) if isinstance(part, dict) else str(part) for part in content)
    return json.dumps(content, sort_keys=True)


def _step(kind: str, *, tool: str = "", args: Any = None, result: Any = None, role: str, content: str = "") -> dict:
    return {
        "kind": kind,
        "tool": tool,
        "args": args if isinstance(args, dict) else {},
        "result": result,
        "role": role,
        "content": content,
    }


def normalize_native(steps: list[Any]) -> list[dict]:
    normalised: list[dict] = []
    for index, step in enumerate(steps):
        path = f"trajectory[{index}]"
        if not isinstance(step, dict):
            raise TrajectoryError(path, "a step must be an object")
        kind = step.get("kind")
        if kind == "tool_call":
            tool = step.get("tool")
            if not isinstance(tool, str) or not tool:
                raise TrajectoryError(f"{path}.tool", "a tool_call step needs a non-empty string 'tool'")
            args = step.get("args", {})
            if isinstance(args, str):
                args = _parse_json_text(args)
            if args is None:
                args = {}
            if not isinstance(args, dict):
                raise TrajectoryError(f"{path}.args", "args must be an object")
            normalised.append(
                _step("tool_call", tool=tool, args=args, result=_parse_json_text(step.get("result")), role="assistant")
            )
        elif kind == "message":
            role = step.get("role", "assistant")
            if role not in ROLES:
                raise TrajectoryError(f"{path}.role", f"role must be one of {', '.join(ROLES)}")
            normalised.append(_step("message", role=role, content=_content_text(step.get("content"))))
        else:
            raise TrajectoryError(f"{path}.kind", "kind must be 'tool_call' or 'message'")
    return normalised


def normalize_openai(messages: list[Any]) -> list[dict]:
    normalised: list[dict] = []
    # Calls still waiting for their tool message, oldest first: (tool_call_id, step).
    open_calls: list[tuple[str | None, dict]] = []
    for index, message in enumerate(messages):
        path = f"trajectory.messages[{index}]"
        if not isinstance(message, dict):
            raise TrajectoryError(path, "a message must be an object")
        role = message.get("role")
        role = OPENAI_ROLE_ALIASES.get(role, role) if isinstance(role, str) else role
        if role not in ROLES:
            raise TrajectoryError(f"{path}.role", f"role must be one of {', '.join(ROLES)}")
        if role == "tool":
            call_id = message.get("tool_call_id")
            match = next((i for i, (cid, _) in enumerate(open_calls) if cid == call_id), None)
            if match is None and open_calls:
                match = 0
            if match is not None:
                _, step = open_calls.pop(match)
                content = message.get("content")
                step["result"] = _parse_json_text(_content_text(content) if isinstance(content, list) else content)
            continue
        tool_calls = message.get("tool_calls") or []
        if not isinstance(tool_calls, list):
            raise TrajectoryError(f"{path}.tool_calls", "tool_calls must be a list")
        content = _content_text(message.get("content"))
        if content or not tool_calls:
            normalised.append(_step("message", role=role, content=content))
        for call_index, call in enumerate(tool_calls):
            call_path = f"{path}.tool_calls[{call_index}]"
            if not isinstance(call, dict) or not isinstance(call.get("function"), dict):
                raise TrajectoryError(call_path, "a tool call needs a 'function' object")
            name = call["function"].get("name")
            if not isinstance(name, str) or not name:
                raise TrajectoryError(f"{call_path}.function.name", "a tool call needs a function name")
            args = _parse_json_text(call["function"].get("arguments") or {})
            step = _step("tool_call", tool=name, args=args if isinstance(args, dict) else {}, role="assistant")
            normalised.append(step)
            open_calls.append((call.get("id"), step))
    return normalised


def normalize_trajectory(raw: Any) -> list[dict]:
    """Normalise a trajectory as an agent sent it; raise TrajectoryError when it has neither form."""
    if raw is None:
        return []
    if isinstance(raw, list):
        return normalize_native(raw)
    if isinstance(raw, dict):
        if raw.get("format") != "openai":
            raise TrajectoryError("trajectory.format", "an object trajectory must have format 'openai'")
        messages = raw.get("messages")
        if not isinstance(messages, list):
            raise TrajectoryError("trajectory.messages", "must be a list of chat messages")
        return normalize_openai(messages)
    raise TrajectoryError("trajectory", "must be a list of steps or {'format': 'openai', 'messages': [...]}")
