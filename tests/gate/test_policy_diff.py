"""Two policy versions side by side: the pure diff on crafted documents, and
`export_policies --diff A B` on recorded versions."""

from __future__ import annotations

import copy
import io
import os
import subprocess
import sys
from typing import Any

import pytest
from django.core.management import CommandError, call_command

from approvals.gate.policies import policies_import
from approvals.gate.policy_diff import policy_diff, policy_diff_text, side_by_side
from tests.conftest import ROOT, TEST_POLICY, subprocess_database_url

LOOKED_UP = "trajectory.exists(s, s.tool == 'get_order' && s.args.order_id == params.order_id)"
LOOKED_UP_AND_DELIVERED = (
    "trajectory.exists(s, s.tool == 'get_order' && s.args.order_id == params.order_id\n"
    "  && s.result.status == 'delivered')"
)

BEFORE: dict[str, Any] = {
    "version": 1,
    "action_types": [
        {
            "name": "refund",
            "params_schema": {"type": "object", "properties": {"amount": {"type": "number"}}},
            "base_risk": 0.1,
            "amount_path": "amount",
            "max_auto_amount": 100,
            "rules": [
                {"name": "looked_up", "require": LOOKED_UP, "message": "never looked up"},
                {"name": "customer_asked", "require": "size(trajectory) > 0", "on_fail": "risk", "risk": 0.3},
                {"name": "old_limit", "require": "params.amount < 500", "on_fail": "block"},
            ],
        },
        {"name": "wipe", "params_schema": {}, "mode": "block"},
        {"name": "escalate", "params_schema": {"type": "object"}, "rules": [{"name": "r", "require": "true"}]},
    ],
}


def after_document() -> dict[str, Any]:
    after = copy.deepcopy(BEFORE)
    refund, _, escalate = after["action_types"]
    refund["max_auto_amount"] = 200
    refund["params_schema"]["properties"]["amount"]["minimum"] = 0
    looked_up, customer_asked, _ = refund["rules"]
    looked_up["require"] = LOOKED_UP_AND_DELIVERED
    refund["rules"] = [
        customer_asked,
        looked_up,
        {"name": "no_refund_twice", "require": "!trajectory.exists(s, s.tool == 'refund')", "on_fail": "block"},
    ]
    # the defaults spelled out change nothing
    escalate.update(enabled=True, mode="gate", base_risk=0, lookups=[])
    escalate["rules"][0]["on_fail"] = "review"
    after["action_types"] = [refund, escalate, {"name": "close", "params_schema": {}, "mode": "review"}]
    return after


def test_the_diff_names_each_change_of_types_fields_and_rules() -> None:
    diff = policy_diff(BEFORE, after_document())

    assert [(t.name, t.change) for t in diff.action_types] == [
        ("refund", "changed"),
        ("escalate", "unchanged"),
        ("close", "added"),
        ("wipe", "removed"),
    ]
    refund = diff.action_types[0]
    assert [(f.name, f.before, f.after) for f in refund.fields if f.name != "params_schema"] == [
        ("max_auto_amount", 100, 200)
    ]
    schema = next(f for f in refund.fields if f.name == "params_schema")
    assert schema.before["properties"]["amount"] == {"type": "number"}
    assert schema.after["properties"]["amount"] == {"type": "number", "minimum": 0}
    assert schema.is_block
    rules = {rule.name: rule for rule in refund.rules}
    assert {name: rule.change for name, rule in rules.items()} == {
        "customer_asked": "unchanged",
        "looked_up": "changed",
        "no_refund_twice": "added",
        "old_limit": "removed",
    }
    changed = rules["looked_up"]
    assert changed.fields == ("require",)
    assert changed.before is not None
    assert changed.after is not None
    assert (changed.before["require"], changed.after["require"]) == (LOOKED_UP, LOOKED_UP_AND_DELIVERED)
    assert changed.after["message"] == "never looked up"
    added = rules["no_refund_twice"]
    assert added.before is None
    assert added.after == {
        "require": "!trajectory.exists(s, s.tool == 'refund')",
        "on_fail": "block",
        "risk": 0.0,
        "message": "",
    }
    assert rules["old_limit"].after is None
    assert rules["old_limit"].before["on_fail"] == "block"
    assert refund.rule_order == (("looked_up", "customer_asked"), ("customer_asked", "looked_up"))
    # an added type shows what it states beyond the defaults
    close = diff.action_types[2]
    assert [(f.name, f.before, f.after) for f in close.fields] == [
        ("params_schema", None, {}),
        ("mode", None, "review"),
    ]
    assert diff.unchanged == ("escalate",)


def test_the_same_document_or_its_defaults_spelled_out_is_no_difference() -> None:
    assert policy_diff(BEFORE, copy.deepcopy(BEFORE)).changed == ()
    text = policy_diff_text(policy_diff(BEFORE, BEFORE), before_label="v1", after_label="v2")
    assert text == "--- v1\n+++ v2\nno difference\nunchanged: refund, wipe, escalate\n"


def test_the_diff_as_text_shows_the_cel_of_each_side() -> None:
    text = policy_diff_text(policy_diff(BEFORE, after_document()), before_label="v1", after_label="v2")

    assert "action type refund: changed\n" in text
    assert "  max_auto_amount: 100 -> 200\n" in text
    assert '    +      "minimum": 0,\n' in text  # the schema as a unified diff of its indented JSON
    assert (
        "  ~ rule looked_up (changed: require)\n"
        "      require v1:\n"
        f"      - {LOOKED_UP}\n"
        "      require v2:\n"
        "      + trajectory.exists(s, s.tool == 'get_order' && s.args.order_id == params.order_id\n"
        "      +   && s.result.status == 'delivered')\n"
    ) in text
    assert "  + rule no_refund_twice (added)\n      require: !trajectory.exists(s, s.tool == 'refund')\n" in text
    assert "  - rule old_limit (removed)\n      require: params.amount < 500\n      on_fail: block\n" in text
    assert "  rule order: looked_up, customer_asked -> customer_asked, looked_up\n" in text
    assert "action type close: added\n" in text
    assert "  mode v2: review\n" in text
    assert "action type wipe: removed\n" in text
    assert text.endswith("unchanged: escalate\n")


def test_side_by_side_marks_only_the_lines_that_differ() -> None:
    before = "trajectory.exists(s,\n  s.tool == 'get_order'\n  && s.result.total <= 5000.0)"
    after = "trajectory.exists(s,\n  s.tool == 'get_order'\n  && s.result.total <= 2000.0\n  && s.result.paid)"

    old, new = side_by_side(before, after)

    assert old == [
        ("trajectory.exists(s,", False),
        ("  s.tool == 'get_order'", False),
        ("  && s.result.total <= 5000.0)", True),
    ]
    assert new == [
        ("trajectory.exists(s,", False),
        ("  s.tool == 'get_order'", False),
        ("  && s.result.total <= 2000.0", True),
        ("  && s.result.paid)", True),
    ]
    assert side_by_side("", "true") == ([], [("true", True)])


def test_documents_that_are_not_policies_give_an_empty_diff() -> None:
    assert policy_diff(None, {"action_types": "nope"}).action_types == ()
    odd = {"action_types": [{"name": "t", "params_schema": {}, "rules": [{"require": "true"}, "x"]}, 7]}
    assert [(t.name, t.change, t.rules) for t in policy_diff({}, odd).action_types] == [("t", "added", ())]


# --- export_policies --diff -------------------------------------------------------------------------


def export(*args: str) -> str:
    out = io.StringIO()
    call_command("export_policies", *args, stdout=out)
    return out.getvalue()


@pytest.mark.django_db
def test_export_policies_diff_prints_what_changed_between_two_versions() -> None:
    first = policies_import(document=BEFORE, actor="test")
    second = policies_import(document=after_document(), actor="test")

    text = export("--diff", str(first), str(second))

    lines = text.splitlines()
    assert lines[0].startswith(f"from policy_version {first} (import by test, ")
    assert lines[1].startswith(f"to   policy_version {second} (import by test, ")
    assert lines[2:4] == [f"--- v{first}", f"+++ v{second}"]
    assert "action type refund: changed" in lines
    assert "  max_auto_amount: 100.0 -> 200.0" in lines  # as the policy store keeps it
    assert f"      require v{second}:" in lines
    assert "      + trajectory.exists(s, s.tool == 'get_order' && s.args.order_id == params.order_id" in lines
    # an import replaces only the types it names: wipe is still there, and close was added
    assert "action type close: added" in lines
    assert "action type wipe: removed" not in lines
    assert export("--diff", str(second), str(second)).splitlines()[4] == "no difference"


@pytest.mark.django_db
def test_export_policies_diff_refuses_unknown_versions() -> None:
    first = policies_import(document=TEST_POLICY, actor="test")

    with pytest.raises(CommandError, match=rf"no policy_version 9 \(recorded: {first} to {first}\)"):
        export("--diff", str(first), "9")
    with pytest.raises(CommandError, match="leave out --policy-version"):
        export("--diff", str(first), str(first), "--policy-version", str(first))


@pytest.mark.django_db(transaction=True)
def test_export_policies_diff_exits_non_zero_from_the_shell() -> None:
    first = policies_import(document=TEST_POLICY, actor="test")

    result = subprocess.run(
        [sys.executable, "manage.py", "export_policies", "--diff", str(first), str(first + 4)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "DATABASE_URL": subprocess_database_url()},
    )

    assert result.returncode != 0
    assert f"no policy_version {first + 4} (recorded: {first} to {first})" in result.stderr
    assert result.stdout == ""
