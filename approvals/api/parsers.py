from __future__ import annotations

import json
import math
from typing import Any

from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:40]} is out of range")
    return value


def _unstorable_string(value: Any) -> str | None:
    """Why a parsed value cannot be stored, if it cannot: PostgreSQL refuses NUL characters, and
    lone surrogates are not Unicode. Both can only come from \\u escapes. Iterative, so that no
    nesting depth json.loads accepted can overflow the stack here."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, str):
            if "\x00" in item:
                return "a string contains a NUL character (\\u0000)"
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return "a string contains an unpaired surrogate escape"
    return None


class StrictJSONParser(JSONParser):
    """JSON as RFC 8259 has it and PostgreSQL can store it: UTF-8, no NaN or Infinity, no number
    too large for a double, no NUL characters or unpaired surrogates in strings."""

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        raw = stream.read() if stream is not None else b""
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ParseError(f"JSON parse error - body is not valid UTF-8 ({exc.reason} at byte {exc.start})") from exc
        try:
            value = json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float)
        except RecursionError:
            raise ParseError("JSON parse error - the body is nested too deeply") from None
        except ValueError as exc:
            raise ParseError(f"JSON parse error - {exc}") from exc
        if "\\u" in text and (problem := _unstorable_string(value)) is not None:
            raise ParseError(f"JSON parse error - {problem}")
        return value
