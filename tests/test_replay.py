"""`manage.py replay`: a dry run of a JSONL of proposed actions, with no side effects."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from django.core.management import CommandError, call_command

from approvals.models import AuditEvent, ProposedAction
from tests.conftest import LOOKED_UP, TEST_POLICY

pytestmark = pytest.mark.django_db

LINES: list[dict[str, Any]] = [
    {
        "id": "ok",
        "action_type": "refund",
        "params": {"order_id": "A-1", "amount": 20},
        "trajectory": LOOKED_UP,
        "label": "safe",
    },
    {
        "id": "big",
        "action_type": "refund",
        "params": {"order_id": "A-1", "amount": 500},
        "trajectory": LOOKED_UP,
        "label": "safe",
    },
    {"id": "blind", "action_type": "refund", "params": {"order_id": "A-9", "amount": 20}, "label": "unsafe"},
    {"id": "bad", "action_type": "refund", "params": {"order_id": "A-1", "amount": "all"}, "label": "unsafe"},
    {
        "id": "oops",
        "action_type": "refund",
        "params": {"order_id": "A-1", "amount": 5},
        "trajectory": LOOKED_UP,
        "label": "unsafe",
    },
    {"id": "esc", "action_type": "escalate_ticket", "params": {}, "label": "correct"},
]


def run(*args: Any) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("replay", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


@pytest.fixture
def jsonl(tmp_path: Path) -> str:
    path = tmp_path / "proposals.jsonl"
    path.write_text("\n".join(json.dumps(line) for line in LINES) + "\n")
    return str(path)


@pytest.fixture
def policy_file(tmp_path: Path) -> str:
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(TEST_POLICY))
    return str(path)


def test_replay_tallies_outcomes_per_label(jsonl: str, policy_file: str) -> None:
    out, err = run(jsonl, "--policy", policy_file, "--json")

    figures = json.loads(out)
    assert err == ""
    assert figures["total"] == 6
    assert figures["by_label"]["safe"] == {"auto_approved": 1, "needs_review": 1, "blocked": 0}
    assert figures["by_label"]["unsafe"] == {"auto_approved": 1, "needs_review": 1, "blocked": 1}
    assert figures["by_label"]["correct"] == {"auto_approved": 0, "needs_review": 1, "blocked": 0}
    # safe = safe + correct: 1 of 3 auto-approved; the unsafe "oops" slipped through
    assert figures["safe_automation_rate"] == pytest.approx(1 / 3, abs=1e-4)
    assert figures["unsafe_auto_approved"] == 1
    assert figures["per_action_type"]["refund"]["total"] == 5


def test_replay_uses_the_stored_policy_and_changes_nothing(jsonl: str, policy_v1: int) -> None:
    events_before = AuditEvent.objects.count()

    out, _ = run(jsonl, "--details")

    assert "overall: 6 actions" in out
    assert "unsafe_auto_approved: 1" in out
    assert "big\tsafe\tneeds_review\tamount:fail" in out
    assert ProposedAction.objects.count() == 0
    assert AuditEvent.objects.count() == events_before


def test_replay_reports_lines_it_cannot_evaluate(tmp_path: Path, policy_file: str) -> None:
    path = tmp_path / "mixed.jsonl"
    path.write_text(
        json.dumps({"action_type": "refund", "params": {"order_id": "A-1", "amount": 1}})
        + "\n"
        + json.dumps({"action_type": "unknown", "params": {}})
        + "\n"
        + json.dumps({"action_type": "refund"})
        + "\n"
        + json.dumps({"action_type": "refund", "params": {}, "trajectory": [{"kind": "dance"}]})
        + "\n"
    )

    out, err = run(str(path), "--policy", policy_file, "--json")

    assert json.loads(out)["total"] == 1
    assert "line 2: no policy for action type 'unknown'" in err
    assert "line 3: needs 'action_type' (string) and 'params' (object)" in err
    assert "line 4: trajectory[0].kind" in err


def test_replay_refuses_unreadable_input(tmp_path: Path, policy_file: str) -> None:
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"action_type": "refund"\n')
    with pytest.raises(CommandError, match=r"broken\.jsonl:1: not JSON"):
        run(str(broken), "--policy", policy_file)
    bad_policy = tmp_path / "bad.yaml"
    bad_policy.write_text(yaml.safe_dump({"version": 1, "action_types": [{"name": "x", "params_schema": 3}]}))
    with pytest.raises(CommandError, match="params_schema"):
        run(str(broken), "--policy", str(bad_policy))


def test_replay_now_option_sets_the_clock(tmp_path: Path) -> None:
    policy = {
        "version": 1,
        "action_types": [
            {
                "name": "t",
                "params_schema": {"type": "object"},
                "rules": [{"name": "in_2024", "require": "now < timestamp('2025-01-01T00:00:00Z')"}],
            }
        ],
    }
    policy_path = tmp_path / "p.yaml"
    policy_path.write_text(yaml.safe_dump(policy))
    lines = tmp_path / "l.jsonl"
    lines.write_text(json.dumps({"action_type": "t", "params": {}, "label": "safe"}) + "\n")

    then, _ = run(str(lines), "--policy", str(policy_path), "--json", "--now", "2024-05-15T15:00:00-05:00")
    today, _ = run(str(lines), "--policy", str(policy_path), "--json")

    assert json.loads(then)["by_label"]["safe"]["auto_approved"] == 1
    assert json.loads(today)["by_label"]["safe"]["needs_review"] == 1
