"""Evidence the gate gathers itself (contract §6.1), as policy: the ``lookups``, ``history`` and
``identity_params`` of an action type, parsed and checked at the door, and the pure parts of using
them (a lookup's URL and headers, the values a history aggregate matches on, the identity of a
proposal's effect). Fetching and counting happen in approvals.evidence; nothing here does I/O.

A lookup's URL is a template: each ``{…}`` is a CEL expression over the proposal's variables
(``params``, ``context``, ``agent``, ``action_type``, ``confidence``, ``now``, ``trajectory``) whose
value is URL-encoded into the URL (a string, a number or a boolean; a list of those is its items,
each encoded, joined by commas; anything else is an error).
Header values take ``${VAR}`` from the gate's environment.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlsplit

import cel

from approvals.policy.expressions import NAME_PATTERN, check_cel_expression

HISTORY_STATUSES = (
    "pending",
    "auto_approved",
    "needs_review",
    "approved",
    "rejected",
    "blocked",
    "expired",
    "cancelled",
)
HISTORY_DEFAULT_STATUSES = ("auto_approved", "approved")
HISTORY_AGGREGATES = ("count", "sum")
# Stored fields a history aggregate may match on: a dotted path into params or context, or the agent.
HISTORY_FIELD_ROOTS = ("params", "context")
HISTORY_AGENT_FIELD = "agent.name"
MAX_LOOKUPS = 10
MAX_HISTORY = 10
MAX_TIMEOUT_MS = 30_000
MAX_WINDOW_MINUTES = 366 * 24 * 60
_ENV_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_PATH_PART = re.compile(r"^[A-Za-z0-9_-]{1,100}$")


class EvidenceError(ValueError):
    """A lookup or history aggregate could not be computed for this proposal (held, never passed)."""


@dataclass(frozen=True)
class LookupSpec:
    name: str
    url: str
    headers: dict[str, str] = field(default_factory=dict)
    timeout_ms: int = 2000
    cache_seconds: int = 0


@dataclass(frozen=True)
class HistorySpec:
    name: str
    window_minutes: int
    match: dict[str, str] = field(default_factory=dict)
    action_type: str = ""  # "": the proposal's own type
    statuses: tuple[str, ...] = HISTORY_DEFAULT_STATUSES
    aggregate: str = "count"
    path: str = ""  # what ``sum`` adds up: a dotted path into params


@dataclass(frozen=True)
class UrlTemplate:
    """A lookup URL split into literal text and compiled CEL expressions, in order."""

    parts: tuple[str | Any, ...]  # str: literal text; otherwise a cel.Program

    def programs(self) -> list[Any]:
        return [part for part in self.parts if not isinstance(part, str)]

    def render(self, context: cel.Context) -> str:
        out: list[str] = []
        for part in self.parts:
            if isinstance(part, str):
                out.append(part)
            else:
                value = part.execute(context)
                if isinstance(value, list):  # a list: its items, each encoded, joined by commas
                    out.append(",".join(quote(url_value(item), safe="") for item in value))
                else:
                    out.append(quote(url_value(value), safe=""))
        return "".join(out)


def url_value(value: Any) -> str:
    """How a CEL value stands in a URL: strings as they are, integers and finite numbers as
    written, booleans as true/false; null, lists and maps are errors (the lookup is not sent)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float) and math.isfinite(value):
        return str(int(value)) if value.is_integer() else repr(value)
    shown = "null" if value is None else type(value).__name__
    raise EvidenceError(
        f"a URL expression gave {shown}; only strings, numbers and booleans (or a list of them) go into a URL"
    )


def split_template(url: str) -> list[str | tuple[str]]:
    """The URL's literal text and its ``{…}`` expressions (as 1-tuples), in order. Braces inside an
    expression's string literals or maps are matched; an unclosed ``{`` is an error."""
    parts: list[str | tuple[str]] = []
    literal: list[str] = []
    index = 0
    while index < len(url):
        char = url[index]
        if char == "}":
            raise ValueError(f"unmatched '}}' at {index}")
        if char != "{":
            literal.append(char)
            index += 1
            continue
        depth, quote_char, end = 0, "", index
        while end < len(url):
            c = url[end]
            if quote_char:
                if c == "\\":
                    end += 1
                elif c == quote_char:
                    quote_char = ""
            elif c in "'\"":
                quote_char = c
            elif c == "{":
                depth += 1
            elif c == "}":
                depth -= 1
                if depth == 0:
                    break
            end += 1
        if depth:
            raise ValueError(f"unclosed '{{' at {index}")
        expression = url[index + 1 : end].strip()
        if not expression:
            raise ValueError(f"empty expression at {index}")
        if literal:
            parts.append("".join(literal))
            literal = []
        parts.append((expression,))
        index = end + 1
    if literal:
        parts.append("".join(literal))
    return parts


def compile_url(url: str) -> UrlTemplate:
    return UrlTemplate(tuple(part if isinstance(part, str) else cel.compile(part[0]) for part in split_template(url)))


def headers_from_environment(headers: dict[str, str]) -> dict[str, str]:
    """Header values with ``${VAR}`` taken from the environment; a missing variable is an error."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in os.environ:
            raise EvidenceError(f"environment variable {name} is not set")
        return os.environ[name]

    return {key: _ENV_VAR.sub(value, text) for key, text in headers.items()}


def value_at(data: Any, path: str) -> Any:
    """The value at a dotted path (list indexes as digits), or None."""
    value = data
    for part in path.split("."):
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return None
    return value


def identity_of(params: Any, identity_params: tuple[str, ...] | None) -> Any:
    """What makes two proposals the same effect: the params kept to ``identity_params`` (dotted
    paths; a missing one counts as null), or all params when the type names none."""
    if identity_params is None or not isinstance(params, dict):
        return params
    return {path: value_at(params, path) for path in identity_params}


# --- parsing ----------------------------------------------------------------------------------


def _dotted_path(path: Any) -> bool:
    return isinstance(path, str) and all(_PATH_PART.match(part) for part in path.split("."))


def _named_items(
    data: Any, place: str, errors: list[str], *, what: str, most: int, fields: Any
) -> list[tuple[str, dict[str, Any], str, bool]]:
    """The mappings of a list of named evidence items, as (where, item, name, sound so far), with the
    list's and each item's shape, unknown fields and name checked (problems appended to ``errors``)."""
    if data is None:
        return []
    if not isinstance(data, list):
        errors.append(f"{place}: must be a list")
        return []
    if len(data) > most:
        errors.append(f"{place}: at most {most} {what}s per action type")
        return []
    items: list[tuple[str, dict[str, Any], str, bool]] = []
    names: set[str] = set()
    for index, item in enumerate(data):
        where = f"{place}[{index}]"
        if not isinstance(item, dict):
            errors.append(f"{where}: a {what} must be a mapping")
            continue
        before = len(errors)
        for key in sorted(set(item) - set(fields)):
            errors.append(f"{where}.{key}: unknown field")
        name = item.get("name")
        if not isinstance(name, str) or not NAME_PATTERN.match(name) or "-" in name:
            errors.append(f"{where}.name: must be an identifier (letters, digits, _)")
        elif name in names:
            errors.append(f"{where}.name: duplicate {what} {name!r}")
        names.add(str(name))
        items.append((where, item, str(name), len(errors) == before))
    return items


def parse_lookups(data: Any, place: str, errors: list[str]) -> tuple[LookupSpec, ...]:
    specs: list[LookupSpec] = []
    items = _named_items(data, place, errors, what="lookup", most=MAX_LOOKUPS, fields=LookupSpec.__dataclass_fields__)
    for where, item, name, sound in items:
        before = len(errors)
        url = item.get("url")
        if not isinstance(url, str) or not url:
            errors.append(f"{where}.url: must be a URL template")
        else:
            errors.extend(f"{where}.url: {problem}" for problem in _url_problems(url))
        headers = item.get("headers", {})
        if not isinstance(headers, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in headers.items()
        ):
            errors.append(f"{where}.headers: must map header names to strings")
            headers = {}
        timeout = item.get("timeout_ms", 2000)
        if isinstance(timeout, bool) or not isinstance(timeout, int) or not 1 <= timeout <= MAX_TIMEOUT_MS:
            errors.append(f"{where}.timeout_ms: must be an integer from 1 to {MAX_TIMEOUT_MS}")
        cache = item.get("cache_seconds", 0)
        if isinstance(cache, bool) or not isinstance(cache, int) or cache < 0:
            errors.append(f"{where}.cache_seconds: must be an integer, 0 or more")
        if sound and len(errors) == before:
            specs.append(
                LookupSpec(name=name, url=url, headers=dict(headers), timeout_ms=timeout, cache_seconds=cache)  # type: ignore[arg-type]
            )
    return tuple(specs)


def _url_problems(url: str) -> list[str]:
    try:
        parts = split_template(url)
    except ValueError as exc:
        return [f"bad template: {exc}"]
    problems = [
        f"{{{part[0]}}} {reason}"
        for part in parts
        if isinstance(part, tuple)
        if (reason := check_cel_expression(part[0]))
    ]
    head = parts[0] if parts and isinstance(parts[0], str) else ""
    scheme_and_host = urlsplit(head)
    if scheme_and_host.scheme not in ("http", "https") or not scheme_and_host.hostname:
        problems.append("must start with http:// or https:// and a host written out (no expression in the host)")
    elif "/" not in head[len(scheme_and_host.scheme) + 3 :] and len(parts) > 1:
        problems.append("the host must be followed by '/' before the first expression")
    return problems


def parse_history(data: Any, place: str, errors: list[str]) -> tuple[HistorySpec, ...]:
    specs: list[HistorySpec] = []
    items = _named_items(
        data, place, errors, what="history aggregate", most=MAX_HISTORY, fields=HistorySpec.__dataclass_fields__
    )
    for where, item, name, sound in items:
        before = len(errors)
        window = item.get("window_minutes")
        if isinstance(window, bool) or not isinstance(window, int) or not 1 <= window <= MAX_WINDOW_MINUTES:
            errors.append(f"{where}.window_minutes: is required, an integer from 1 to {MAX_WINDOW_MINUTES}")
        action_type = item.get("action_type", "")
        if not isinstance(action_type, str) or (action_type and not NAME_PATTERN.match(action_type)):
            errors.append(f"{where}.action_type: must be an action type's name")
        match = item.get("match", {})
        if not isinstance(match, dict):
            errors.append(f"{where}.match: must map stored field paths to CEL expressions")
            match = {}
        for stored, expression in match.items():
            if not history_field_ok(stored):
                errors.append(
                    f"{where}.match: {stored!r} is not a stored field path (params.<path>, context.<path> "
                    f"or {HISTORY_AGENT_FIELD})"
                )
            if reason := check_cel_expression(expression):
                errors.append(f"{where}.match[{stored!r}]: {reason}")
        statuses = item.get("statuses", list(HISTORY_DEFAULT_STATUSES))
        if not isinstance(statuses, list) or not statuses or any(s not in HISTORY_STATUSES for s in statuses):
            errors.append(f"{where}.statuses: must be a non-empty list of {', '.join(HISTORY_STATUSES)}")
            statuses = []
        aggregate = item.get("aggregate", "count")
        if aggregate not in HISTORY_AGGREGATES:
            errors.append(f"{where}.aggregate: must be one of {', '.join(HISTORY_AGGREGATES)}")
        path = item.get("path", "")
        if aggregate == "sum" and not (isinstance(path, str) and path.startswith("params.") and _dotted_path(path)):
            errors.append(f"{where}.path: sum needs the path of a number in params (params.<path>)")
        elif aggregate == "count" and path:
            errors.append(f"{where}.path: only sum takes a path")
        if sound and len(errors) == before:
            specs.append(
                HistorySpec(
                    name=name,
                    window_minutes=window,  # type: ignore[arg-type]
                    match=dict(match),
                    action_type=action_type,
                    statuses=tuple(dict.fromkeys(statuses)),
                    aggregate=aggregate,
                    path=path,
                )
            )
    return tuple(specs)


def history_field_ok(stored: Any) -> bool:
    if stored == HISTORY_AGENT_FIELD:
        return True
    if not isinstance(stored, str) or "." not in stored:
        return False
    root, _, rest = stored.partition(".")
    return root in HISTORY_FIELD_ROOTS and _dotted_path(rest)


def parse_identity_params(data: Any, place: str, errors: list[str]) -> tuple[str, ...] | None:
    if data is None:
        return None
    if not isinstance(data, list) or not data or not all(_dotted_path(p) for p in data):
        errors.append(f"{place}: must be a non-empty list of params paths (dotted), or left out for all params")
        return None
    return tuple(dict.fromkeys(data))


def evidence_fields(lookups: Any, history: Any, identity_params: Any) -> dict[str, Any]:
    """The evidence fields of an ActionTypeSpec from their stored form (validated when saved)."""
    errors: list[str] = []
    fields = {
        "lookups": parse_lookups(lookups or None, "lookups", errors),
        "history": parse_history(history or None, "history", errors),
        "identity_params": parse_identity_params(identity_params, "identity_params", errors),
    }
    if errors:
        raise ValueError("; ".join(errors))
    return fields
