"""Edit, then approve (contract §6.3) on the desk: an action's params as form fields typed by its
type's ``params_schema``, the params read back from a submitted form, and what changed.

Pure functions of the schema, the params and the form: the schema itself is enforced by the
decision (``approvals.review.services.action_decide``), not here. Here a field only has to read as
its type (a number is a number), so that the schema's answer is about the value the reviewer meant.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

FIELD_PREFIX = "param:"
SCALAR_TYPES = ("string", "number", "integer", "boolean")


@dataclass(frozen=True)
class ParamField:
    """One param as the desk's edit form shows it."""

    name: str
    kind: str  # string | number | integer | boolean | json
    value: str  # as the input holds it ("" when absent)
    present: bool
    required: bool
    choices: tuple[str, ...] = ()  # the schema's enum, for a select
    description: str = ""
    original: str = ""  # the proposed value as the input would hold it: what the diff compares with

    @property
    def input_name(self) -> str:
        return FIELD_PREFIX + self.name


@dataclass(frozen=True)
class ParamChange:
    name: str
    before: Any
    after: Any
    added: bool = False
    removed: bool = False


class ParamsFormError(ValueError):
    """Fields that do not read as their type, each as ``name: problem``."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("; ".join(errors))
        self.errors = errors


def _kind(schema: Mapping[str, Any]) -> str:
    declared = schema.get("type")
    if isinstance(declared, list):  # ["string", "null"]: the one that is not null, if one
        declared = next(iter([t for t in declared if t != "null"]), None) if len(declared) <= 2 else None
    return declared if declared in SCALAR_TYPES else "json"


def _as_input(kind: str, value: Any) -> str:
    if kind == "string" and isinstance(value, str):
        return value
    if kind == "boolean":
        return "true" if value is True else "false"
    return json.dumps(value, ensure_ascii=False)


def params_fields(
    schema: Mapping[str, Any],
    params: Mapping[str, Any],
    *,
    current: Mapping[str, Any] | None = None,
    form: Mapping[str, str] | None = None,
) -> list[ParamField]:
    """The schema's properties in its order, then any other param the action carries (as JSON).

    ``params``: the proposed ones (each field's ``original``). The inputs start from ``current``
    (the params already under approval, when an earlier reviewer edited them), else ``params``; a
    submitted ``form`` that was refused is shown again as it was typed.
    """
    declared = schema.get("properties")
    properties: Mapping[str, Any] = declared if isinstance(declared, Mapping) else {}
    required = set(schema.get("required") or [])
    start = params if current is None else current
    names = [*properties, *(name for name in {**params, **start} if name not in properties)]
    fields = []
    for name in names:
        found = properties.get(name)
        prop: Mapping[str, Any] = found if isinstance(found, Mapping) else {}
        kind = _kind(prop) if name in properties else "json"
        enum = prop.get("enum")
        present = name in start
        value = _as_input(kind, start[name]) if present else ""
        if form is not None and FIELD_PREFIX + name in form:
            value = form[FIELD_PREFIX + name]
        fields.append(
            ParamField(
                name=name,
                kind=kind,
                value=value,
                present=present,
                required=name in required,
                choices=tuple(str(choice) for choice in enum) if kind == "string" and isinstance(enum, list) else (),
                description=str(prop.get("description") or ""),
                original=_as_input(kind, params[name]) if name in params else "",
            )
        )
    return fields


def _read(kind: str, text: str) -> Any:
    if kind == "string":
        return text
    if kind == "boolean":
        if text not in ("true", "false"):
            raise ValueError("must be true or false")
        return text == "true"
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        expected = {"number": "must be a number", "integer": "must be a whole number"}
        raise ValueError(expected.get(kind) or f"is not JSON ({error.msg})") from None
    if kind == "integer" and (isinstance(value, bool) or not isinstance(value, int)):
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ValueError("must be a whole number")
    if kind == "number" and (isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value)):
        raise ValueError("must be a number")
    return value


def params_from_form(
    schema: Mapping[str, Any],
    params: Mapping[str, Any],
    form: Mapping[str, str],
    *,
    current: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The params a submitted edit form stands for: each field read as its type; a field left empty
    drops a param that is not required (an empty required string stays an empty string, for the
    schema to judge). Raises ParamsFormError naming each field that does not read."""
    start = params if current is None else current
    edited: dict[str, Any] = {}
    errors = []
    for field in params_fields(schema, params, current=current):
        if field.input_name not in form:
            if field.present:  # not in the form at all (a client that sends a part): unchanged
                edited[field.name] = start[field.name]
            continue
        text = form[field.input_name]
        if text == "" and field.kind != "string":
            if field.required:
                errors.append(f"{field.name}: is required")
            continue
        if text == "" and not field.required and not field.present:
            continue
        try:
            edited[field.name] = _read(field.kind, text)
        except ValueError as error:
            errors.append(f"{field.name}: {error}")
    if errors:
        raise ParamsFormError(errors)
    return edited


def _same(a: Any, b: Any) -> bool:
    """Equal as JSON values: 20 and 20.0 are, true and 1 are not."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return a.keys() == b.keys() and all(_same(a[key], b[key]) for key in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def params_changes(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[ParamChange]:
    """What an edit changed, key by key, in the order of the proposal then of the new keys."""
    changes = []
    for name, value in before.items():
        if name not in after:
            changes.append(ParamChange(name, value, None, removed=True))
        elif not _same(after[name], value):
            changes.append(ParamChange(name, value, after[name]))
    changes += [ParamChange(name, None, value, added=True) for name, value in after.items() if name not in before]
    return changes
