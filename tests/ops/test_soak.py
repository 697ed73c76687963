"""The soak of issue 7 (Faults item 4), short: ~30 s of steady proposals against a production-like
stack on loopback (gunicorn, a Celery worker) on the test database, reviewers deciding over the
API. The 10-minute version is ``make soak`` (bench/soak.py, report in bench/results/soak.md).

Takes about 45 s (stack start-up, 30 s of load, settling).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bench.soak import run_soak
from bench.stack import Stack
from tests.conftest import subprocess_database_url

pytestmark = [pytest.mark.worker, pytest.mark.server, pytest.mark.django_db(transaction=True)]


def test_short_soak_loses_nothing_and_reconciles(tmp_path: Path) -> None:
    with Stack(
        subprocess_database_url(),
        os.environ["REDIS_URL"],
        web="gunicorn",
        web_workers=2,
        threads=4,
        celery_workers=1,
        migrate=False,
        log_dir=tmp_path,
        env={"GATE_AGENT_RATE_PER_MINUTE": "100000"},
    ) as stack:
        result = run_soak(stack, seconds=30, rate=10, reviewers=2, settle_timeout=60)
        logs = stack.logs()
    assert result.problems == [], logs
    # Every accepted action is final or waiting for a person; counts reconcile.
    assert set(result.statuses) <= {"auto_approved", "approved", "rejected", "needs_review"}
    assert len(result.accepted) == result.stored == result.audited
    assert result.replays > 0
    assert result.decided_ok == result.decided_events == result.decision_rows_by_reviewers
    assert result.decided_ok > 0
