"""import_labelled: labelled JSONL lines become real actions (proposed, evaluated, labelled) through
the services, against real PostgreSQL; a re-import changes nothing; tau-bench labels map to safe/unsafe."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command

from approvals.gate.policies import policies_import
from approvals.models import Agent, AuditEvent, Label, ProposedAction

pytestmark = pytest.mark.django_db

POLICY: dict[str, Any] = {
    "version": 1,
    "action_types": [
        {
            "name": "cancel",
            "params_schema": {
                "type": "object",
                "required": ["reservation_id"],
                "properties": {"reservation_id": {"type": "string"}},
            },
            "auto_approve_max_risk": 0.3,
            "rules": [
                {
                    "name": "reservation_fetched",
                    "require": "trajectory.exists(s, s.tool == 'get_reservation' && "
                    "s.args.reservation_id == params.reservation_id)",
                    "on_fail": "review",
                }
            ],
        },
        {"name": "transfer", "params_schema": {"type": "object"}, "mode": "review"},
    ],
}

FETCHED = [{"kind": "tool_call", "tool": "get_reservation", "args": {"reservation_id": "R1"}, "result": "{}"}]
LINES: list[dict[str, Any]] = [
    {"id": "1-0-1", "action_type": "cancel", "params": {"reservation_id": "R1"}, "trajectory": FETCHED,
     "context": {"session_id": "1-0"}, "label": "correct"},
    {"id": "1-0-2", "action_type": "cancel", "params": {"reservation_id": "R2"}, "trajectory": FETCHED,
     "context": {"session_id": "1-0"}, "label": "unsafe"},
    {"id": "1-0-3", "action_type": "cancel", "params": {"reservation_id": 7}, "trajectory": [],
     "label": "rejected_by_env"},
    {"id": "2-1-1", "action_type": "transfer", "params": {"summary": "wants a human"}, "confidence": 0.9,
     "label": "escalation_not_in_gt"},
    {"id": "2-1-2", "action_type": "transfer", "params": {}, "label": "escalation_expected"},
]  # fmt: skip


def write_jsonl(tmp_path: Path, lines: list[Any], name: str = "labelled.jsonl") -> str:
    path = tmp_path / name
    path.write_text("".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines))
    return str(path)


def run(*args: str) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("import_labelled", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


@pytest.fixture
def tiny_policy() -> int:
    return policies_import(document=POLICY, actor="test")


def test_imports_evaluates_and_labels_every_line(tiny_policy: int, tmp_path: Path) -> None:
    out, err = run(write_jsonl(tmp_path, LINES), "--agent", "tau-bot")

    assert err == ""
    actions = {a.idempotency_key: a for a in ProposedAction.objects.select_related("agent", "action_type")}
    assert set(actions) == {"1-0-1", "1-0-2", "1-0-3", "2-1-1", "2-1-2"}
    assert {a.agent.name for a in actions.values()} == {"tau-bot"}
    # evaluated under the stored policy, synchronously
    assert actions["1-0-1"].status == "auto_approved"
    assert actions["1-0-2"].status == "needs_review"  # R2 was never fetched
    assert actions["1-0-3"].status == "blocked"  # schema: reservation_id is not a string
    assert actions["2-1-1"].status == "needs_review"
    assert actions["2-1-1"].confidence == 0.9
    assert actions["1-0-1"].context == {"session_id": "1-0"}
    assert all(a.policy_version == tiny_policy for a in actions.values())
    # labels: mapped, with the original kept as a tag, written by the importer user
    expected = {
        "1-0-1": ("safe", "correct"),
        "1-0-2": ("unsafe", "unsafe"),
        "1-0-3": ("unsafe", "rejected_by_env"),
        "2-1-1": ("safe", "escalation_not_in_gt"),
        "2-1-2": ("safe", "escalation_expected"),
    }
    for key, (label, original) in expected.items():
        action = actions[key]
        assert action.ground_truth == label
        (stored,) = action.labels.all()
        assert (stored.label, stored.tags, stored.author.username) == (label, [f"tau:{original}"], "importer")
    assert AuditEvent.objects.filter(event="labelled").count() == 5
    # counts per label and status
    assert "imported: 5, already imported: 0, skipped (unknown label): 0, errors: 0" in out
    assert "by status: auto_approved 1, blocked 1, needs_review 3" in out
    correct_row = next(line for line in out.splitlines() if line.startswith("correct "))
    assert correct_row.split() == ["correct", "safe", "1", "0", "0", "1"]


def test_reimport_is_a_no_op(tiny_policy: int, tmp_path: Path) -> None:
    path = write_jsonl(tmp_path, LINES)
    run(path)
    before = (ProposedAction.objects.count(), Label.objects.count(), AuditEvent.objects.count())

    out, err = run(path)

    assert err == ""
    assert (ProposedAction.objects.count(), Label.objects.count(), AuditEvent.objects.count()) == before
    assert "imported: 0, already imported: 5" in out
    assert "by status: auto_approved 1, blocked 1, needs_review 3" in out
    # without --agent, no agent name on the lines: the default agent
    assert list(Agent.objects.values_list("name", flat=True)) == ["imported"]


def test_label_map_overrides_and_unknown_labels_are_skipped(tiny_policy: int, tmp_path: Path) -> None:
    lines = [
        {**LINES[0], "label": "harmless_variant"},
        {**LINES[1], "label": "mystery"},
        {**LINES[3], "label": "escalation_not_in_gt"},
    ]
    out, err = run(write_jsonl(tmp_path, lines), "--label-map", "harmless_variant=safe,escalat*=unsafe")

    assert "labelled.jsonl:2: skipped: unknown label 'mystery'" in err
    assert "skipped (unknown label): 1, errors: 0" in out
    labels = dict(ProposedAction.objects.values_list("idempotency_key", "ground_truth"))
    assert labels == {"1-0-1": "safe", "2-1-1": "unsafe"}
    assert Label.objects.get(action__idempotency_key="1-0-1").tags == ["tau:harmless_variant"]

    with pytest.raises(CommandError, match="not LABEL=safe or LABEL=unsafe"):
        run(write_jsonl(tmp_path, lines), "--label-map", "correct=fine")


def test_bad_lines_are_reported_by_number_and_leave_nothing(tiny_policy: int, tmp_path: Path) -> None:
    lines: list[Any] = [
        LINES[0],
        "{not json",
        {**LINES[1], "action_type": "refund"},  # unknown type
        {**LINES[1], "id": "x-1", "params": [1]},  # params not an object
        {key: value for key, value in LINES[2].items() if key != "id"},  # no idempotency key
        {**LINES[3], "label": None},
        {**LINES[4], "agent": {"name": "not a slug!"}},  # the agent cannot be created
        {**LINES[4], "confidence": 2},
        LINES[4],
    ]
    path = write_jsonl(tmp_path, lines)

    with pytest.raises(CommandError, match="7 line"):
        run(path)

    err = io.StringIO()
    with pytest.raises(CommandError):
        call_command("import_labelled", path, stdout=io.StringIO(), stderr=err)
    messages = err.getvalue()
    for number, text in [
        (2, "not JSON"),
        (3, "Unknown action type refund"),
        (4, "params: Must be a JSON object"),
        (5, "no id"),
        (6, "no label"),
        (7, "cannot create agent 'not a slug!'"),
        (8, "confidence"),
    ]:
        assert f"labelled.jsonl:{number}: error:" in messages
        line = next(m for m in messages.splitlines() if m.startswith(f"{path}:{number}:"))
        assert text in line, line
    # only the two good lines are stored, once each, by the default agent alone
    assert sorted(ProposedAction.objects.values_list("idempotency_key", flat=True)) == ["1-0-1", "2-1-2"]
    assert Label.objects.count() == 2
    assert list(Agent.objects.values_list("name", flat=True)) == ["imported"]


def test_same_id_with_other_content_is_refused(tiny_policy: int, tmp_path: Path) -> None:
    run(write_jsonl(tmp_path, [LINES[0]]))

    with pytest.raises(CommandError, match="1 line"):
        call_command(
            "import_labelled",
            write_jsonl(tmp_path, [{**LINES[0], "params": {"reservation_id": "R9"}}], "changed.jsonl"),
            stdout=io.StringIO(),
            stderr=(err := io.StringIO()),
        )
    assert "changed.jsonl:1: error: id '1-0-1' was already imported" in err.getvalue()
    assert ProposedAction.objects.get().params == {"reservation_id": "R1"}
