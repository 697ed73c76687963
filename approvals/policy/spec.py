"""The policy document (contract §5): parsing, defaults and validation at the door.

Everything a policy file, the admin or an export holds passes through ``parse_document`` or
``parse_action_type``, so an invalid schema or rule is refused with its place before anything
is saved.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import jsonschema_rs
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from approvals.policy.evidence import (
    HistorySpec,
    LookupSpec,
    parse_history,
    parse_identity_params,
    parse_lookups,
)
from approvals.policy.expressions import (
    NAME_PATTERN,
    check_cel_expression,
)
from approvals.policy.mcp import parse_mcp_servers
from approvals.policy.notify import parse_notify_emails
from approvals.policy.tests_spec import PolicyTestSpec, is_finite_number, parse_tests

FORMAT_VERSION = 1
MODES = ("gate", "review", "block")
ON_FAIL = ("review", "block", "risk")
MAX_RULES = 200
# The two-person rule (contract §6.3): how many distinct reviewers a held action may need.
MAX_APPROVALS_REQUIRED = 5
MAX_GROUP_NAME = 150
# Findings the engine itself writes; a rule may not take one of these names.
RESERVED_RULE_NAMES = frozenset(
    {
        "params_schema",
        "mode",
        "risk",
        "remembered_approval",
        "confidence",
        "amount",
        "evaluation",
        "repeat_of_refused",
        "repeat_of_executed",
        "looping_trajectory",
    }
)


class PolicyError(ValueError):
    """One or more problems in a policy, each as ``place: message``."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("; ".join(errors))
        self.errors = errors


@dataclass(frozen=True)
class RuleSpec:
    name: str
    require: str
    on_fail: str = "review"
    risk: float = 0.0
    message: str = ""


@dataclass(frozen=True)
class ActionTypeSpec:
    name: str
    params_schema: dict
    description: str = ""
    enabled: bool = True
    mode: str = "gate"
    base_risk: float = 0.0
    auto_approve_max_risk: float = 0.5
    block_min_risk: float | None = None
    min_confidence: float | None = None
    amount_path: str = ""
    max_auto_amount: float | None = None
    audit_sample_rate: float = 0.0
    builtin_checks: bool = True
    review_sla_minutes: int | None = None
    expire_after_minutes: int | None = None
    # Who reviews the type's held actions (contract §6.3): the Django group's name (None: every
    # reviewer), and the group that joins once an action is past its review SLA (a project addition).
    review_group: str | None = None
    escalation_group: str | None = None
    approvals_required: int = 1
    rules: tuple[RuleSpec, ...] = field(default_factory=tuple)
    # Evidence the gate gathers itself (contract §6.1; approvals.policy.evidence).
    lookups: tuple[LookupSpec, ...] = field(default_factory=tuple)
    history: tuple[HistorySpec, ...] = field(default_factory=tuple)
    identity_params: tuple[str, ...] | None = None
    # Example proposals and their expected decisions (contract §6.2).
    tests: tuple[PolicyTestSpec, ...] = field(default_factory=tuple)
    # Who is told of a held action (contract §6.3; approvals.policy.notify).
    notify_emails: tuple[str, ...] = field(default_factory=tuple)
    notify_slack: bool = True

    def to_document(self) -> dict[str, Any]:
        """The action type as it stands in a policy file (export_policies); the evidence fields, the
        tests, the review groups and the notifications only when set, so that a policy without them
        exports as it always did."""
        data = asdict(self)
        data["rules"] = [asdict(rule) for rule in self.rules]
        for name in (*EVIDENCE_FIELDS, "tests", "notify_emails", "notify_slack"):
            del data[name]
        for name in GROUP_FIELDS:
            if data[name] is None:
                del data[name]
        data.update(self.evidence_document())
        if self.tests:
            data["tests"] = self.tests_document()
        if self.notify_emails:
            data["notify_emails"] = list(self.notify_emails)
        if not self.notify_slack:
            data["notify_slack"] = False
        return data

    def tests_document(self) -> list[dict[str, Any]]:
        return [test.to_document() for test in self.tests]

    def evidence_document(self) -> dict[str, Any]:
        data: dict[str, Any] = {}
        if self.lookups:
            data["lookups"] = [asdict(lookup) for lookup in self.lookups]
        if self.history:
            data["history"] = [{**asdict(h), "statuses": list(h.statuses)} for h in self.history]
        if self.identity_params is not None:
            data["identity_params"] = list(self.identity_params)
        return data


ACTION_TYPE_FIELDS = {f for f in ActionTypeSpec.__dataclass_fields__}
EVIDENCE_FIELDS = ("lookups", "history", "identity_params")
GROUP_FIELDS = ("review_group", "escalation_group")
RULE_FIELDS = {f for f in RuleSpec.__dataclass_fields__}


def _is_number(value: Any) -> bool:
    return is_finite_number(value)


class _Checker:
    def __init__(self, place: str) -> None:
        self.place = place
        self.errors: list[str] = []

    def error(self, key: str, message: str) -> None:
        self.errors.append(f"{self.place}.{key}: {message}" if key else f"{self.place}: {message}")

    def number(
        self, data: dict, key: str, default: float | None, *, low: float, high: float | None, nullable: bool
    ) -> float | None:
        value = data.get(key, default)
        if value is None:
            if not nullable:
                self.error(key, "is required")
            return None
        if not _is_number(value):
            self.error(key, "must be a number")
            return default
        if value < low or (high is not None and value > high):
            self.error(key, f"must be between {low} and {high}" if high is not None else f"must be >= {low}")
        return float(value)

    def name(self, data: dict) -> str:
        name = data.get("name")
        if not isinstance(name, str) or not name.strip():
            self.error("name", "is required")
            return ""
        if not NAME_PATTERN.match(name):
            self.error("name", "must be letters, digits, '_' or '-' (at most 100)")
        return name

    def integer(self, data: dict, key: str) -> int | None:
        value = data.get(key)
        if value is None:
            return None
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            self.error(key, "must be a positive whole number of minutes")
            return None
        return value

    def count(self, data: dict, key: str, default: int, *, high: int) -> int:
        value = data.get(key, default)
        if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= high:
            self.error(key, f"must be a whole number between 1 and {high}")
            return default
        return value

    def boolean(self, data: dict, key: str, default: bool) -> bool:
        value = data.get(key, default)
        if not isinstance(value, bool):
            self.error(key, "must be true or false")
            return default
        return value

    def group(self, data: dict, key: str) -> str | None:
        """A Django group's name, or None; whether the group exists is checked where the policy is
        stored (approvals.gate.policies), this package having no database."""
        value = data.get(key)
        if value is None:
            return None
        if not isinstance(value, str) or not value.strip() or len(value) > MAX_GROUP_NAME:
            self.error(key, f"must be the name of a Django group (a text of at most {MAX_GROUP_NAME} characters)")
            return None
        return value

    def text(self, data: dict, key: str, default: str = "") -> str:
        value = data.get(key, default)
        if value is None:
            return default
        if not isinstance(value, str):
            self.error(key, "must be a string")
            return default
        return value


def check_json_schema(schema: Any) -> str | None:
    """The reason a params schema is not a valid JSON Schema (draft 2020-12), or None."""
    if not isinstance(schema, dict):
        return "must be a JSON Schema object"
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        where = "/".join(str(p) for p in exc.absolute_path)
        return f"invalid JSON Schema{' at ' + where if where else ''}: {exc.message}"
    try:
        # The engine validates with this compiled validator: what it cannot build (a pattern its
        # regex engine refuses, a $ref it may not fetch) is refused here, not at evaluation.
        jsonschema_rs.Draft202012Validator(schema, offline=True)
    except (jsonschema_rs.ValidationError, ValueError) as exc:
        return f"invalid JSON Schema: {str(exc).splitlines()[0]}"
    return None


def parse_rule(data: Any, place: str) -> tuple[RuleSpec | None, list[str]]:
    check = _Checker(place)
    if not isinstance(data, dict):
        check.error("", "a rule must be a mapping")
        return None, check.errors
    for key in sorted(set(data) - RULE_FIELDS):
        check.error(key, "unknown field")
    name = check.name(data)
    if name in RESERVED_RULE_NAMES:
        check.error("name", f"{name!r} is reserved for the gate's own findings")
    reason = check_cel_expression(data.get("require"), subject=f"rule {name!r}", rule=True)
    if reason:
        check.error("require", reason)
    on_fail = data.get("on_fail", "review")
    if on_fail not in ON_FAIL:
        check.error("on_fail", f"must be one of {', '.join(ON_FAIL)}")
    risk = check.number(data, "risk", 0.0, low=0.0, high=1.0, nullable=False)
    message = check.text(data, "message")
    if check.errors:
        return None, check.errors
    return RuleSpec(name=name, require=data["require"], on_fail=on_fail, risk=risk or 0.0, message=message), []


def parse_action_type(data: Any, place: str = "action_type") -> ActionTypeSpec:
    """Validate one action type of a policy document and fill in its defaults."""
    check = _Checker(place)
    if not isinstance(data, dict):
        raise PolicyError([f"{place}: an action type must be a mapping"])
    for key in sorted(set(data) - ACTION_TYPE_FIELDS):
        check.error(key, "unknown field")
    name = check.name(data)
    if "params_schema" not in data:
        check.error("params_schema", "is required")
    else:
        reason = check_json_schema(data["params_schema"])
        if reason:
            check.error("params_schema", reason)
    mode = data.get("mode", "gate")
    if mode not in MODES:
        check.error("mode", f"must be one of {', '.join(MODES)}")
    values = {
        "base_risk": check.number(data, "base_risk", 0.0, low=0, high=1, nullable=False),
        "auto_approve_max_risk": check.number(data, "auto_approve_max_risk", 0.5, low=0, high=1, nullable=False),
        "block_min_risk": check.number(data, "block_min_risk", None, low=0, high=1, nullable=True),
        "min_confidence": check.number(data, "min_confidence", None, low=0, high=1, nullable=True),
        "max_auto_amount": check.number(data, "max_auto_amount", None, low=0, high=None, nullable=True),
        "audit_sample_rate": check.number(data, "audit_sample_rate", 0.0, low=0, high=1, nullable=False),
    }
    rules_data = data.get("rules", [])
    rules: list[RuleSpec] = []
    if not isinstance(rules_data, list):
        check.error("rules", "must be a list")
    elif len(rules_data) > MAX_RULES:
        check.error("rules", f"has {len(rules_data)} rules; at most {MAX_RULES} are allowed per action type")
    else:
        seen: set[str] = set()
        for index, rule_data in enumerate(rules_data):
            rule, errors = parse_rule(rule_data, f"{place}.rules[{index}]")
            check.errors.extend(errors)
            if rule is not None:
                if rule.name in seen:
                    check.error(f"rules[{index}].name", f"duplicate rule name {rule.name!r}")
                seen.add(rule.name)
                rules.append(rule)
    spec_kwargs: dict[str, Any] = {
        "name": name,
        "params_schema": data.get("params_schema"),
        "description": check.text(data, "description"),
        "enabled": check.boolean(data, "enabled", True),
        "mode": mode,
        "amount_path": check.text(data, "amount_path"),
        "builtin_checks": check.boolean(data, "builtin_checks", True),
        "review_sla_minutes": check.integer(data, "review_sla_minutes"),
        "expire_after_minutes": check.integer(data, "expire_after_minutes"),
        "review_group": check.group(data, "review_group"),
        "escalation_group": check.group(data, "escalation_group"),
        "approvals_required": check.count(data, "approvals_required", 1, high=MAX_APPROVALS_REQUIRED),
        "rules": tuple(rules),
        "lookups": parse_lookups(data.get("lookups"), f"{place}.lookups", check.errors),
        "history": parse_history(data.get("history"), f"{place}.history", check.errors),
        "identity_params": parse_identity_params(data.get("identity_params"), f"{place}.identity_params", check.errors),
        "notify_emails": parse_notify_emails(data.get("notify_emails"), f"{place}.notify_emails", check.errors),
        "notify_slack": check.boolean(data, "notify_slack", True),
    }
    spec_kwargs["tests"] = parse_tests(
        data.get("tests"),
        f"{place}.tests",
        check.errors,
        lookups=spec_kwargs["lookups"],
        history=spec_kwargs["history"],
    )
    if spec_kwargs["escalation_group"] is not None:
        # Refused rather than ignored: a group that would never be asked to review is a mistake.
        # (A review_group or review_sla_minutes given but invalid has its own error already.)
        if data.get("review_group") is None:
            check.error("escalation_group", "needs review_group (without one every reviewer sees the type already)")
        if data.get("review_sla_minutes") is None:
            check.error("escalation_group", "needs review_sla_minutes (the group joins once the review SLA passes)")
    if values["max_auto_amount"] is not None and not spec_kwargs["amount_path"]:
        check.error("amount_path", "is required when max_auto_amount is set (where is the amount in params?)")
    if check.errors:
        raise PolicyError(check.errors)
    return ActionTypeSpec(**spec_kwargs, **{k: v for k, v in values.items()})  # type: ignore[arg-type]


def parse_document(document: Any) -> list[ActionTypeSpec]:
    """Validate a whole policy document; raise PolicyError listing every problem."""
    if not isinstance(document, dict):
        raise PolicyError(["document: must be a mapping with 'version' and 'action_types'"])
    errors: list[str] = []
    for key in sorted(set(document) - {"version", "action_types", "mcp_servers"}):
        errors.append(f"{key}: unknown field")
    errors.extend(parse_mcp_servers(document.get("mcp_servers"))[1])  # the MCP gateway's (approvals.mcp)
    version = document.get("version")
    # ``true == 1`` in Python; a YAML ``version: true`` is not the format's version.
    if isinstance(version, bool) or version != FORMAT_VERSION:
        errors.append(f"version: must be {FORMAT_VERSION}")
    items = document.get("action_types")
    if not isinstance(items, list):
        errors.append("action_types: must be a list")
        raise PolicyError(errors)
    specs: list[ActionTypeSpec] = []
    names: set[str] = set()
    for index, item in enumerate(items):
        label = item.get("name") if isinstance(item, dict) else None
        place = f"action_types[{index}]" + (f" ({label})" if isinstance(label, str) else "")
        try:
            spec = parse_action_type(item, place)
        except PolicyError as exc:
            errors.extend(exc.errors)
            continue
        if spec.name in names:
            errors.append(f"{place}.name: duplicate action type {spec.name!r}")
        names.add(spec.name)
        specs.append(spec)
    if errors:
        raise PolicyError(errors)
    return specs


def build_document(specs: list[ActionTypeSpec]) -> dict[str, Any]:
    return {"version": FORMAT_VERSION, "action_types": [spec.to_document() for spec in specs]}
