"""Policies checked before they act, from the shell (contract §6.2): ``test_policies FILE`` and
``import_policies`` running the file's tests and the safety net (``--accept-risk``)."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from django.core.management import CommandError, call_command

from approvals.models import ActionType, AuditEvent, PolicyVersion
from tests.conftest import LOOKED_UP, TEST_POLICY, subprocess_database_url
from tests.labelled_history import amount_history, refund_policy

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "policies" / "demo.yaml"
AIRLINE = ROOT / "examples" / "tau_bench_airline" / "policy.yaml"

HELD_ABOVE_100 = {
    "name": "150 is held",
    "proposal": {"params": {"order_id": "A-1", "amount": 150}, "trajectory": LOOKED_UP},
    "expect": "needs_review",
}


def run(*args: Any) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def write(tmp_path: Path, document: Any, name: str = "policy.yaml") -> str:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(document))
    return str(path)


def manage(*args: str, test_database: bool = False) -> subprocess.CompletedProcess[str]:
    """``manage.py args`` as a shell runs it; on the test database when it writes."""
    env = {**os.environ, "DATABASE_URL": subprocess_database_url()} if test_database else None
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, capture_output=True, text=True, timeout=120, env=env
    )


# --- test_policies -------------------------------------------------------------------------------


@pytest.mark.parametrize("path", [DEMO, AIRLINE], ids=["demo", "airline"])
def test_the_shipped_policies_pass_their_own_tests(path: Path) -> None:
    output = run("test_policies", str(path))

    last = output.strip().splitlines()[-1]
    assert last.endswith("passed, 0 failed"), output
    assert int(last.split()[0]) >= 10  # every type of both files has tests
    assert "no tests" not in output


def test_test_policies_reports_each_failure_and_exits_non_zero(tmp_path: Path) -> None:
    failing = {**HELD_ABOVE_100, "name": "150 goes through", "expect": "auto_approved"}
    path = write(tmp_path, refund_policy(tests=[HELD_ABOVE_100, failing]))

    with pytest.raises(CommandError, match=r"^2 tests: 1 passed, 1 failed$"):
        run("test_policies", path)

    result = manage("test_policies", path)
    assert result.returncode == 1
    assert "  ok    150 is held (needs_review)" in result.stdout
    assert "  FAIL  150 goes through: expected auto_approved, got needs_review" in result.stdout
    assert "          amount fail: amount 150 is above max_auto_amount 100" in result.stdout
    assert manage("test_policies", str(DEMO)).returncode == 0


def test_test_policies_refuses_an_invalid_file_with_the_place(tmp_path: Path) -> None:
    path = write(tmp_path, refund_policy(tests=[{**HELD_ABOVE_100, "expect": "maybe"}]))

    with pytest.raises(CommandError, match=r"action_types\[0\] \(refund\)\.tests\[0\]\.expect: must be one of"):
        run("test_policies", path)


# --- import_policies -----------------------------------------------------------------------------


@pytest.mark.django_db
def test_import_refuses_a_file_whose_test_fails_naming_it(tmp_path: Path) -> None:
    run("import_policies", write(tmp_path, TEST_POLICY))
    before = run("export_policies")
    document = refund_policy(max_auto_amount=200, tests=[HELD_ABOVE_100])

    with pytest.raises(CommandError) as refused:
        run("import_policies", write(tmp_path, document, "raised.yaml"))

    message = str(refused.value)
    assert "nothing was imported; 1 policy test failed" in message
    assert "refund: test '150 is held': expected needs_review, got auto_approved (no check failed;" in message
    assert "amount pass: amount 150 is within max_auto_amount 200" in message
    assert run("export_policies") == before
    assert PolicyVersion.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_import_exits_non_zero_from_the_shell_when_a_test_fails(tmp_path: Path) -> None:
    path = write(tmp_path, refund_policy(max_auto_amount=200, tests=[HELD_ABOVE_100]))

    result = manage("import_policies", path, test_database=True)

    assert result.returncode == 1
    assert "expected needs_review, got auto_approved" in result.stderr
    assert not ActionType.objects.exists()


@pytest.mark.django_db
def test_import_refuses_newly_auto_approving_an_unsafe_action_unless_accepted(tmp_path: Path) -> None:
    actions = amount_history()
    path = write(tmp_path, refund_policy(max_auto_amount=200))
    version = PolicyVersion.objects.count()

    with pytest.raises(CommandError) as refused:
        run("import_policies", path)

    message = str(refused.value)
    unsafe = str(actions["mid_unsafe"].id)
    assert "nothing was imported; it would newly auto-approve 1 action labelled unsafe (and 1 labelled safe)" in message
    assert f"{unsafe} (refund, now needs_review): " + '{"amount": 150, "order_id": "A-1"}' in message
    assert "--accept-risk" in message
    assert PolicyVersion.objects.count() == version

    output = run("import_policies", path, "--accept-risk")

    assert f"as policy_version {version + 1}" in output
    assert "safety net: replayed 5 labelled actions in " in output
    assert "newly auto-approved: 1 labelled unsafe, 1 labelled safe" in output
    assert f"accepted risk: {unsafe} (refund, now needs_review)" in output
    assert ActionType.objects.get(name="refund").max_auto_amount == 200
    audited = AuditEvent.objects.get(event="policy_risk_accepted")
    assert (audited.actor, [case["id"] for case in audited.data["accepted"]]) == ("command:import_policies", [unsafe])


@pytest.mark.django_db
def test_a_safe_import_shows_what_it_gains(tmp_path: Path) -> None:
    amount_history()
    # 190 newly automates the safe refund of 180; the unsafe one of 150 is still held by a new rule
    document = refund_policy(
        max_auto_amount=190,
        rules=[
            *TEST_POLICY["action_types"][0]["rules"],
            {"name": "not_150", "require": "params.amount != 150", "message": "150 is suspicious"},
        ],
        tests=[HELD_ABOVE_100],
    )

    output = run("import_policies", write(tmp_path, document))

    assert "policy tests: 1 passed" in output
    assert "newly auto-approved: 0 labelled unsafe, 1 labelled safe" in output
    assert "accepted risk" not in output


@pytest.mark.django_db
def test_exported_tests_import_again(tmp_path: Path) -> None:
    run("import_policies", str(DEMO))
    exported = run("export_policies")

    run("import_policies", write(tmp_path, yaml.safe_load(exported), "exported.yaml"))

    assert run("export_policies") == exported
    refund = next(t for t in yaml.safe_load(exported)["action_types"] if t["name"] == "refund")
    assert len(refund["tests"]) == 6
    assert refund["tests"] == ActionType.objects.get(name="refund").tests
