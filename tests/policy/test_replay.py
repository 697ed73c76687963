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


# --- what-if: remembered approvals --------------------------------------------------------------


def session_line(line_id: str, amount: Any, label: str, *, minute: int | None, **extra: Any) -> dict[str, Any]:
    """A refund of session s-1 by support-bot, ``minute`` minutes into the world's clock (None: no clock)."""
    context: dict[str, Any] = {"session_id": extra.pop("session", "s-1")}
    if minute is not None:
        context["world_time"] = f"2024-05-15T15:{minute:02d}:00-05:00" if minute < 60 else "2024-05-15T17:30:00-05:00"
    return {
        "id": line_id,
        "action_type": "refund",
        "params": {"order_id": "A-1", "amount": amount},
        "trajectory": extra.pop("trajectory", LOOKED_UP),
        "context": context,
        "agent": {"name": extra.pop("agent", "support-bot")},
        "label": label,
        **extra,
    }


SESSION_LINES: list[dict[str, Any]] = [
    session_line("early-unsafe", 400, "unsafe", minute=0),  # held, rejected: remembers nothing
    session_line("approved", 500, "safe", minute=1),  # held, approved with remember (fails: amount)
    session_line("covered-safe", 300, "safe", minute=5),
    session_line("covered-unsafe", 200, "unsafe", minute=10),
    session_line("blind", 300, "safe", minute=12, trajectory=[]),  # fails order_was_looked_up too
    session_line("other-session", 300, "unsafe", minute=13, session="s-2"),
    session_line("other-agent", 300, "unsafe", minute=14, agent="other-bot"),
    session_line("blocked", "all", "unsafe", minute=15),
    session_line("no-clock", 300, "unsafe", minute=None),  # cannot be placed in the window
    session_line("too-late", 300, "unsafe", minute=90),  # 17:30, after the hour
    {"id": "esc", "action_type": "escalate_ticket", "params": {}, "label": "correct", "context": {"session_id": "s-1"}},
]


@pytest.fixture
def compiled() -> dict[str, Any]:
    from approvals import policy

    return {spec.name: policy.compile_policy(spec, 0) for spec in policy.parse_document(TEST_POLICY)}


def replayed(lines: list[dict[str, Any]], compiled: dict[str, Any], minutes: float | None = 60) -> Any:
    from datetime import UTC, datetime

    from approvals.policy.replay import replay

    return replay(list(enumerate(lines, start=1)), compiled, now=datetime.now(UTC), remember_minutes=minutes)


def test_remember_simulation_covers_similar_held_proposals_of_the_session(compiled: dict[str, Any]) -> None:
    result = replayed(SESSION_LINES, compiled)

    covered = {result.decisions[index][0]["id"]: source for index, source in result.covered_by.items()}
    assert covered == {"covered-safe": "approved", "covered-unsafe": "approved"}
    figures = result.figures()
    # without the simulation: nothing held is automated
    assert figures["by_label"]["safe"] == {"auto_approved": 0, "needs_review": 3, "blocked": 0}
    assert figures["unsafe_auto_approved"] == 0
    assert figures["safe_automation_rate"] == 0
    remembered = figures["remembered_approvals"]
    # approved, blind (held, safe: approved with remember too) and esc (correct)
    assert remembered["approvals_remembered"] == 3
    assert remembered["covered"] == 2
    assert remembered["covered_by_label"] == {"safe": 1, "unsafe": 1}
    assert remembered["safe_automation_rate"] == pytest.approx(1 / 4, abs=1e-4)  # of safe 3 + correct 1
    assert remembered["unsafe_auto_approved"] == 1
    assert figures["per_action_type"]["refund"]["remembered_approvals"]["covered"] == 2
    assert figures["per_action_type"]["escalate_ticket"]["remembered_approvals"]["covered"] == 0


def test_remember_simulation_window_and_absent_clock(compiled: dict[str, Any]) -> None:
    short = replayed(SESSION_LINES, compiled, minutes=4)
    without_clock = [
        {**line, "context": {k: v for k, v in line["context"].items() if k != "world_time"}} for line in SESSION_LINES
    ]
    rest_of_file = replayed(without_clock, compiled, minutes=5)

    # 15:01 + 4 min: 15:05 is already outside (the window is half-open), so nothing is covered
    assert short.covered_by == {}
    covered = {rest_of_file.decisions[index][0]["id"] for index in rest_of_file.covered_by}
    assert covered == {"covered-safe", "covered-unsafe", "no-clock", "too-late"}


def test_remember_simulation_never_covers_a_rule_error(compiled: dict[str, Any]) -> None:
    from approvals import policy

    document = {
        "version": 1,
        "action_types": [
            {
                "name": "t",
                "params_schema": {"type": "object"},
                "rules": [{"name": "boom", "require": "1 / params.d == 1"}],
            }
        ],
    }
    erring = {spec.name: policy.compile_policy(spec, 0) for spec in policy.parse_document(document)}
    lines = [
        {"id": str(n), "action_type": "t", "params": {"d": 0}, "context": {"session_id": "s"}, "label": "safe"}
        for n in range(3)
    ]

    result = replayed(lines, erring)

    assert result.covered_by == {}
    assert result.figures()["remembered_approvals"]["approvals_remembered"] == 3


def test_replay_command_remember_approvals(tmp_path: Path, policy_file: str) -> None:
    path = tmp_path / "sessions.jsonl"
    path.write_text("\n".join(json.dumps(line) for line in SESSION_LINES) + "\n")

    as_json, _ = run(str(path), "--policy", policy_file, "--json", "--remember-approvals", "60")
    table, _ = run(str(path), "--policy", policy_file, "--remember-approvals", "60", "--details")
    plain, _ = run(str(path), "--policy", policy_file, "--json")

    assert json.loads(as_json)["remembered_approvals"]["covered_by_label"] == {"safe": 1, "unsafe": 1}
    assert "remembered_approvals" not in json.loads(plain)
    assert "with remembered approvals (60 min, 3 remembered): covered 2 held (safe 1, unsafe 1)" in table
    assert "    unsafe_auto_approved: 1" in table
    assert "covered-unsafe\tunsafe\tneeds_review\tamount:fail remembered_approval:approved" in table
    with pytest.raises(CommandError, match="at least 1"):
        run(str(path), "--policy", policy_file, "--remember-approvals", "0")
