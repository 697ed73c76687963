from __future__ import annotations

import json
import math
import re
from typing import Any

from django.conf import settings
from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser

# \u0000 or a surrogate escape (\ud800-\udfff), perhaps preceded by an escaped backslash, which
# the walk then tells apart.
_UNSTORABLE_ESCAPE = re.compile(r"\\u(?:0000|[dD][89a-fA-F])")
_NOT_A_BRACKET = re.compile(r"[^\[\]{}]+")
_ONE_KIND = str.maketrans("{}", "[]")
# JSON's interoperable integers are those a 64-bit integer holds (CEL's int, PostgreSQL's bigint).
_INT64 = range(-(2**63), 2**63)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:40]} is out of range")
    return value


def _int64(text: str) -> int:
    value = int(text)
    if value not in _INT64:
        shown = text if len(text) <= 40 else f"{text[:20]}…({len(text)} digits)"
        raise ValueError(f"integer {shown} is out of range (a 64-bit integer at most)")
    return value


def nests_deeper_than(text: str, limit: int) -> bool:
    """Whether arrays and objects nest more than ``limit`` deep in a JSON text, found without
    parsing it (so without recursion) and at C speed: escaped backslashes and quotes are dropped, so
    that every other quote opens or closes a string; outside strings, each pass removes the
    innermost bracket pairs, so ``limit`` passes empty any text nested no deeper. (A text that is
    not JSON may be judged either way; json.loads refuses it then.)"""
    unescaped = text.replace("\\\\", "").replace('\\"', "")
    outside_strings = "".join(unescaped.split('"')[0::2])
    brackets = _NOT_A_BRACKET.sub("", outside_strings).translate(_ONE_KIND)
    for _ in range(limit):
        if not brackets:
            return False
        brackets = brackets.replace("[]", "")
    return bool(brackets)


def _path(parent: str, key: Any) -> str:
    if isinstance(key, int):
        return f"{parent}[{key}]"
    # Shown in the error, which must itself be storable and encodable: a key may hold the very
    # characters refused (a lone surrogate, a NUL), so they are written as escapes.
    shown = key[:40].encode("utf-8", "backslashreplace").decode("utf-8").replace("\x00", "\\u0000")
    return f"{parent}.{shown}" if parent else shown


def unstorable_string(value: Any, *, max_length: int, escapes: bool) -> str | None:
    """Why a parsed value cannot be stored, if it cannot: a string (or key) longer than
    ``max_length``; with ``escapes`` (the text had \\u escapes, the only way to write them), a NUL
    character, which PostgreSQL refuses, or a lone surrogate, which is not Unicode. Iterative, so
    that no nesting can overflow the stack here."""
    stack: list[tuple[Any, str]] = [(value, "")]
    while stack:
        item, path = stack.pop()
        if isinstance(item, dict):
            for key, child in item.items():
                stack.append((key, f"{_path(path, key)} (the key)"))
                stack.append((child, _path(path, key)))
        elif isinstance(item, list):
            stack.extend((child, _path(path, index)) for index, child in enumerate(item))
        elif isinstance(item, str):
            where = f" at {path}" if path else ""
            if len(item) > max_length:
                return f"a string{where} is {len(item)} characters long; the limit is {max_length}"
            if escapes:
                if "\x00" in item:
                    return f"a string{where} contains a NUL character (\\u0000)"
                try:
                    item.encode("utf-8")
                except UnicodeEncodeError:
                    return f"a string{where} contains an unpaired surrogate escape"
    return None


class StrictJSONParser(JSONParser):
    """JSON as RFC 8259 has it and PostgreSQL can store it: UTF-8, no NaN or Infinity, no number
    too large for a double or integer too large for 64 bits, no NUL characters or unpaired
    surrogates in strings; and within the gate's bounds: nesting (GATE_MAX_JSON_DEPTH, checked
    before anything recursive reads the text) and string length (GATE_MAX_STRING_LENGTH)."""

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        raw = stream.read() if stream is not None else b""
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ParseError(f"JSON parse error - body is not valid UTF-8 ({exc.reason} at byte {exc.start})") from exc
        max_depth = settings.GATE_MAX_JSON_DEPTH
        # Counting the opening brackets is cheap; only a text with enough of them can nest too deep.
        if text.count("[") + text.count("{") > max_depth and nests_deeper_than(text, max_depth):
            raise ParseError(f"JSON parse error - the body nests arrays and objects more than {max_depth} deep")
        try:
            value = json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float, parse_int=_int64)
        except RecursionError:
            raise ParseError("JSON parse error - the body is nested too deeply") from None
        except ValueError as exc:
            raise ParseError(f"JSON parse error - {exc}") from exc
        max_length = settings.GATE_MAX_STRING_LENGTH
        # Only a text longer than the limit can hold a string longer than it, and only an escape can
        # write a NUL or a surrogate: most bodies are never walked.
        escapes = _UNSTORABLE_ESCAPE.search(text) is not None
        if escapes or len(text) > max_length:
            problem = unstorable_string(value, max_length=max_length, escapes=escapes)
            if problem is not None:
                raise ParseError(f"JSON parse error - {problem}")
        return value
