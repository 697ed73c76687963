"""Two policy documents (contract §5) side by side: which action types were added, removed or
changed, which of their fields changed, and which rules were added, removed or changed, with the
CEL text of each side. A pure function of the two documents (no ORM): the admin's "compare
versions" page and ``export_policies --diff A B`` show the same answer.

A field left out of a document has the format's default, so a version written before a field
existed compares equal to one that states its default. A snapshot is compared as it was stored,
without validating it again: a version that a later format would refuse can still be read.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
from dataclasses import dataclass
from typing import Any

from approvals.policy.spec import ActionTypeSpec, RuleSpec

ADDED, REMOVED, CHANGED, UNCHANGED = "added", "removed", "changed", "unchanged"


def _defaults(spec: type) -> dict[str, Any]:
    """The format's default of every field of a spec dataclass that has one (tuples as lists)."""
    values: dict[str, Any] = {}
    for item in dataclasses.fields(spec):
        if item.default is not dataclasses.MISSING:
            values[item.name] = item.default
        elif item.default_factory is not dataclasses.MISSING:
            values[item.name] = item.default_factory()
    return {name: list(value) if isinstance(value, tuple) else value for name, value in values.items()}


TYPE_DEFAULTS = {name: value for name, value in _defaults(ActionTypeSpec).items() if name != "rules"}
TYPE_FIELD_ORDER = [item.name for item in dataclasses.fields(ActionTypeSpec) if item.name not in ("name", "rules")]
RULE_DEFAULTS = _defaults(RuleSpec)
RULE_FIELD_ORDER = [item.name for item in dataclasses.fields(RuleSpec) if item.name != "name"]


def value_text(value: Any) -> str:
    """A field's value as the diff shows it: CEL and other text as written, the rest as JSON
    (objects and lists indented, keys sorted: jsonb keeps no key order)."""
    if isinstance(value, str):
        return value or '""'
    if isinstance(value, (dict, list)):
        return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False)
    return json.dumps(value, ensure_ascii=False)


def side_by_side(before: str, after: str) -> tuple[list[tuple[str, bool]], list[tuple[str, bool]]]:
    """Each side's lines, each marked True where it differs from the other side (difflib's line
    matching), so that a long CEL expression shows which of its lines changed."""
    old, new = before.splitlines(), after.splitlines()
    old_marks, new_marks = [True] * len(old), [True] * len(new)
    for block in difflib.SequenceMatcher(a=old, b=new, autojunk=False).get_matching_blocks():
        old_marks[block.a : block.a + block.size] = [False] * block.size
        new_marks[block.b : block.b + block.size] = [False] * block.size
    return list(zip(old, old_marks, strict=True)), list(zip(new, new_marks, strict=True))


@dataclass(frozen=True)
class FieldChange:
    name: str
    before: Any
    after: Any

    @property
    def before_text(self) -> str:
        return value_text(self.before)

    @property
    def after_text(self) -> str:
        return value_text(self.after)

    @property
    def lines(self) -> tuple[list[tuple[str, bool]], list[tuple[str, bool]]]:
        """(before, after): each side's lines of text, marked where they differ."""
        return side_by_side(self.before_text, self.after_text)

    @property
    def is_block(self) -> bool:
        """Shown as a block of lines (an object, a list or multi-line text), not inline."""
        return any(isinstance(v, (dict, list)) or (isinstance(v, str) and "\n" in v) for v in (self.before, self.after))


@dataclass(frozen=True)
class RuleChange:
    name: str
    change: str  # added | removed | changed | unchanged
    before: dict[str, Any] | None  # the rule's fields (defaults filled in), None when added
    after: dict[str, Any] | None  # None when removed
    fields: tuple[str, ...] = ()  # the fields that differ, when changed

    @property
    def require_lines(self) -> tuple[list[tuple[str, bool]], list[tuple[str, bool]]]:
        """(before, after): each side's CEL by line, marked where they differ (all of an added or
        removed rule's)."""
        return side_by_side((self.before or {}).get("require") or "", (self.after or {}).get("require") or "")


@dataclass(frozen=True)
class ActionTypeChange:
    name: str
    change: str  # added | removed | changed | unchanged
    fields: tuple[FieldChange, ...] = ()  # of an added or removed type: those not at their default
    rules: tuple[RuleChange, ...] = ()  # the after side's order, then the removed rules
    # The order of the rules both sides have, (before, after), when it changed.
    rule_order: tuple[tuple[str, ...], tuple[str, ...]] | None = None

    @property
    def changed_rules(self) -> tuple[RuleChange, ...]:
        return tuple(rule for rule in self.rules if rule.change != UNCHANGED)


@dataclass(frozen=True)
class PolicyDiff:
    action_types: tuple[ActionTypeChange, ...]

    @property
    def changed(self) -> tuple[ActionTypeChange, ...]:
        return tuple(t for t in self.action_types if t.change != UNCHANGED)

    @property
    def unchanged(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.action_types if t.change == UNCHANGED)


def _named(items: Any) -> dict[str, dict[str, Any]]:
    """The mappings of a list that have a string name, by name, in the list's order."""
    if not isinstance(items, list):
        return {}
    return {item["name"]: item for item in items if isinstance(item, dict) and isinstance(item.get("name"), str)}


def _normal(item: dict[str, Any], defaults: dict[str, Any]) -> dict[str, Any]:
    values = {**defaults, **{k: v for k, v in item.items() if k not in ("name", "rules")}}
    return {k: list(v) if isinstance(v, tuple) else v for k, v in values.items()}


def _field_order(names: set[str], order: list[str]) -> list[str]:
    return [name for name in order if name in names] + sorted(names - set(order))


def _rules_diff(before: dict[str, dict[str, Any]], after: dict[str, dict[str, Any]]) -> tuple[RuleChange, ...]:
    changes = []
    for name, rule in after.items():
        new = _normal(rule, RULE_DEFAULTS)
        if name not in before:
            changes.append(RuleChange(name, ADDED, None, new))
            continue
        old = _normal(before[name], RULE_DEFAULTS)
        differing = tuple(
            _field_order({k for k in old.keys() | new.keys() if old.get(k) != new.get(k)}, RULE_FIELD_ORDER)
        )
        changes.append(RuleChange(name, CHANGED if differing else UNCHANGED, old, new, differing))
    changes += [
        RuleChange(name, REMOVED, _normal(rule, RULE_DEFAULTS), None)
        for name, rule in before.items()
        if name not in after
    ]
    return tuple(changes)


def _type_diff(name: str, before: dict[str, Any] | None, after: dict[str, Any] | None) -> ActionTypeChange:
    old_rules = _named(before.get("rules")) if before else {}
    new_rules = _named(after.get("rules")) if after else {}
    old = _normal(before, TYPE_DEFAULTS) if before is not None else None
    new = _normal(after, TYPE_DEFAULTS) if after is not None else None
    if old is None or new is None:
        side = new if old is None else old
        assert side is not None
        # An added or removed type: the fields it states, those at their default left out.
        fields = tuple(
            FieldChange(key, None if old is None else side[key], side[key] if old is None else None)
            for key in _field_order(set(side), TYPE_FIELD_ORDER)
            if key == "params_schema" or key not in TYPE_DEFAULTS or side[key] != TYPE_DEFAULTS[key]
        )
        return ActionTypeChange(name, ADDED if old is None else REMOVED, fields, _rules_diff(old_rules, new_rules))
    fields = tuple(
        FieldChange(key, old.get(key), new.get(key))
        for key in _field_order(set(old) | set(new), TYPE_FIELD_ORDER)
        if old.get(key) != new.get(key)
    )
    rules = _rules_diff(old_rules, new_rules)
    common_before = tuple(n for n in old_rules if n in new_rules)
    common_after = tuple(n for n in new_rules if n in old_rules)
    order = (common_before, common_after) if common_before != common_after else None
    changed = fields or order or any(rule.change != UNCHANGED for rule in rules)
    return ActionTypeChange(name, CHANGED if changed else UNCHANGED, fields, rules, order)


def policy_diff(before: Any, after: Any) -> PolicyDiff:
    """What changed from the policy document ``before`` to ``after``: every action type of either,
    those of ``after`` in its order, then those only ``before`` has."""
    old_types = _named(before.get("action_types")) if isinstance(before, dict) else {}
    new_types = _named(after.get("action_types")) if isinstance(after, dict) else {}
    names = list(new_types) + [name for name in old_types if name not in new_types]
    return PolicyDiff(tuple(_type_diff(name, old_types.get(name), new_types.get(name)) for name in names))


# --- as text (export_policies --diff) --------------------------------------------------------------


def _indented(text: str, prefix: str) -> list[str]:
    return [prefix + line for line in text.splitlines() or [""]]


def _field_lines(change: FieldChange, before_label: str, after_label: str) -> list[str]:
    if not change.is_block:
        return [f"  {change.name}: {change.before_text} -> {change.after_text}"]
    lines = [f"  {change.name}:"]
    lines += [
        "    " + line.rstrip("\n")
        for line in difflib.unified_diff(
            change.before_text.splitlines(),
            change.after_text.splitlines(),
            fromfile=before_label,
            tofile=after_label,
            lineterm="",
        )
    ]
    return lines


def _rule_lines(rule: RuleChange, before_label: str, after_label: str) -> list[str]:
    if rule.change == ADDED and rule.after is not None:
        lines = [f"  + rule {rule.name} (added)"]
        for key in RULE_FIELD_ORDER:
            lines += _indented(f"{key}: {value_text(rule.after.get(key))}", "      ")
        return lines
    if rule.change == REMOVED and rule.before is not None:
        lines = [f"  - rule {rule.name} (removed)"]
        for key in RULE_FIELD_ORDER:
            lines += _indented(f"{key}: {value_text(rule.before.get(key))}", "      ")
        return lines
    assert rule.before is not None
    assert rule.after is not None
    lines = [f"  ~ rule {rule.name} (changed: {', '.join(rule.fields)})"]
    for key in rule.fields:
        old, new = value_text(rule.before.get(key)), value_text(rule.after.get(key))
        if "\n" not in old + new:
            lines += [f"      {key} {before_label}: {old}", f"      {key} {after_label}: {new}"]
            continue
        # Each side in full, its lines that differ from the other side marked - and +.
        old_lines, new_lines = side_by_side(old, new)
        lines.append(f"      {key} {before_label}:")
        lines += [f"      {'-' if differs else ' '} {line}" for line, differs in old_lines]
        lines.append(f"      {key} {after_label}:")
        lines += [f"      {'+' if differs else ' '} {line}" for line, differs in new_lines]
    return lines


def policy_diff_text(diff: PolicyDiff, *, before_label: str = "A", after_label: str = "B") -> str:
    """The diff as plain text: each changed type, its fields ``before -> after`` (objects and
    multi-line text as a unified diff), its rules (+ added, - removed, ~ changed, with each side's
    CEL in full, multi-line CEL with its differing lines marked), then the unchanged types."""
    lines = [f"--- {before_label}", f"+++ {after_label}"]
    if not diff.changed:
        lines.append("no difference")
    for change in diff.changed:
        lines.append(f"action type {change.name}: {change.change}")
        if change.change in (ADDED, REMOVED):
            side = after_label if change.change == ADDED else before_label
            for item in change.fields:
                value = item.after if change.change == ADDED else item.before
                lines += _indented(f"{item.name} {side}: {value_text(value)}", "  ")
        else:
            for item in change.fields:
                lines += _field_lines(item, before_label, after_label)
        for rule in change.changed_rules:
            lines += _rule_lines(rule, before_label, after_label)
        if change.rule_order:
            lines.append(f"  rule order: {', '.join(change.rule_order[0])} -> {', '.join(change.rule_order[1])}")
    if diff.unchanged:
        lines.append(f"unchanged: {', '.join(diff.unchanged)}")
    return "\n".join(lines) + "\n"
