"""Operator commands: create_agent, import_policies / export_policies (contract §5), seed_demo."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from django.core.management import CommandError, call_command

from approvals.gate.agents import agent_authenticate, token_hash
from approvals.models import ActionType, Agent, AuditEvent, PolicyVersion, ProposedAction, Rule
from tests.conftest import TEST_POLICY

pytestmark = pytest.mark.django_db
ROOT = Path(__file__).resolve().parent.parent


def run(*args: Any) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def write(tmp_path: Path, document: Any, name: str = "policy.yaml") -> str:
    path = tmp_path / name
    path.write_text(json.dumps(document) if name.endswith(".json") else yaml.safe_dump(document))
    return str(path)


def test_create_agent_prints_token_once_and_stores_only_its_hash() -> None:
    output = run("create_agent", "billing-bot")

    lines = dict(line.split(": ", 1) for line in output.strip().splitlines())
    agent = Agent.objects.get(name="billing-bot")
    assert lines["token"].startswith("gat_")
    assert lines["webhook_secret"] == agent.webhook_secret
    assert agent.token_hash == token_hash(lines["token"])
    assert lines["token"] not in agent.token_hash
    assert agent.all_action_types
    assert agent_authenticate(lines["token"]) == agent


def test_create_agent_limited_to_action_types(policy_v1: int) -> None:
    run("create_agent", "refunder", "--action-types", "refund,escalate_ticket")

    agent = Agent.objects.get(name="refunder")
    assert not agent.all_action_types
    assert sorted(agent.action_types.values_list("name", flat=True)) == ["escalate_ticket", "refund"]


def test_create_agent_refuses_unknown_types_and_duplicates(policy_v1: int) -> None:
    with pytest.raises(CommandError, match="unknown action types: nope"):
        run("create_agent", "x", "--action-types", "refund,nope")
    run("create_agent", "once")
    with pytest.raises(CommandError, match="already exists"):
        run("create_agent", "once")
    assert not Agent.objects.filter(name="x").exists()


def test_import_creates_types_rules_and_a_version(tmp_path: Path) -> None:
    output = run("import_policies", write(tmp_path, TEST_POLICY))

    assert "policy_version 1" in output
    refund = ActionType.objects.get(name="refund")
    assert refund.policy_version == 1
    assert refund.max_auto_amount == 100
    assert list(refund.rules.values_list("name", flat=True)) == ["order_was_looked_up"]
    assert PolicyVersion.objects.get(number=1).source == "import"
    assert AuditEvent.objects.filter(event="policy_changed").count() == 1


def test_import_replaces_named_types_and_leaves_others(tmp_path: Path) -> None:
    run("import_policies", write(tmp_path, TEST_POLICY))
    update = {
        "version": 1,
        "action_types": [{"name": "refund", "params_schema": {"type": "object"}, "auto_approve_max_risk": 0.2}],
    }

    run("import_policies", write(tmp_path, update, "update.json"))

    refund = ActionType.objects.get(name="refund")
    assert refund.auto_approve_max_risk == 0.2
    assert refund.max_auto_amount is None  # replaced: fields not given take their defaults
    assert not refund.rules.exists()
    assert refund.policy_version == 2
    assert ActionType.objects.get(name="delete_account").policy_version == 1


@pytest.mark.parametrize(
    ("broken", "message"),
    [
        ({"params_schema": {"type": "objekt"}}, "params_schema: invalid JSON Schema"),
        ({"rules": [{"name": "r", "require": "params.("}]}, "rules[0].require: invalid CEL"),
        ({"rules": [{"name": "r", "require": "true", "on_fail": "shrug"}]}, "rules[0].on_fail"),
        ({"base_risk": 2}, "base_risk: must be between"),
        ({"colour": "red"}, "colour: unknown field"),
    ],
)
def test_invalid_import_changes_nothing_and_says_why(tmp_path: Path, broken: dict, message: str) -> None:
    # given: a valid policy already in place, and a file whose second type is broken
    run("import_policies", write(tmp_path, TEST_POLICY))
    before = run("export_policies")
    document = {
        "version": 1,
        "action_types": [
            {"name": "refund", "params_schema": {"type": "object"}, "base_risk": 0.9},
            {"name": "new_type", "params_schema": {"type": "object"}, **broken},
        ],
    }

    # when
    with pytest.raises(CommandError) as raised:
        run("import_policies", write(tmp_path, document, "broken.yaml"))

    # then: the place and the reason, and nothing changed
    assert message in str(raised.value)
    assert "action_types[1] (new_type)" in str(raised.value)
    assert run("export_policies") == before
    assert not ActionType.objects.filter(name="new_type").exists()
    assert PolicyVersion.objects.count() == 1


def test_import_refuses_unreadable_files(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\naction_types: [\n")
    with pytest.raises(CommandError, match="not valid YAML"):
        run("import_policies", str(bad))
    with pytest.raises(CommandError, match="cannot read"):
        run("import_policies", str(tmp_path / "missing.yaml"))


def test_import_exits_non_zero_from_the_shell(tmp_path: Path) -> None:
    import subprocess
    import sys

    path = write(tmp_path, {"version": 2, "action_types": []})
    result = subprocess.run(
        [sys.executable, "manage.py", "import_policies", path], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode != 0
    assert "version: must be 1" in result.stderr


def test_export_round_trips_through_import(tmp_path: Path) -> None:
    run("import_policies", write(tmp_path, TEST_POLICY))
    exported = run("export_policies")

    run("import_policies", write(tmp_path, yaml.safe_load(exported), "exported.yaml"))

    assert run("export_policies") == exported
    types = {item["name"]: item for item in yaml.safe_load(exported)["action_types"]}
    assert types["refund"]["rules"][0]["name"] == "order_was_looked_up"


def test_export_of_an_earlier_version(tmp_path: Path) -> None:
    run("import_policies", write(tmp_path, TEST_POLICY))
    first = run("export_policies", "--format", "json")
    run("import_policies", write(tmp_path, {"version": 1, "action_types": [{"name": "x", "params_schema": {}}]}))

    assert run("export_policies", "--policy-version", "1", "--format", "json") == first
    assert json.loads(run("export_policies", "--format", "json"))["action_types"][-1]["name"] == "x"
    with pytest.raises(CommandError, match="no policy_version 9"):
        run("export_policies", "--policy-version", "9")


def test_demo_policy_file_is_valid_and_seed_demo_is_repeatable() -> None:
    first = run("seed_demo")
    second = run("seed_demo")

    tokens = [line.split(": ")[1] for line in (first + second).splitlines() if line.startswith("token: ")]
    assert len(tokens) == 2
    assert agent_authenticate(tokens[0]) is None  # rotated by the second run
    assert agent_authenticate(tokens[1]).name == "demo-agent"
    assert ActionType.objects.filter(name="refund").exists()
    assert Rule.objects.filter(action_type__name="refund").count() == 3
    assert ProposedAction.objects.filter(agent__name="demo-agent").count() == 6
