"""The benchmarks' baseline endpoint lives in the bench settings (bench/settings.py, bench/urls.py):
production settings neither install nor mount it, and hold no bench switch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.urls import Resolver404, resolve
from rest_framework.test import APIClient

from approvals.models import ProposedAction, Status

ROOT = Path(__file__).resolve().parents[2]


def test_production_settings_have_no_bench_switch() -> None:
    assert django_settings.ROOT_URLCONF == "escalation_app.urls"
    assert not [app for app in django_settings.INSTALLED_APPS if app.startswith("bench")]
    assert not [name for name in dir(django_settings) if "BENCH" in name]
    with pytest.raises(Resolver404):
        resolve("/bench/baseline/actions")
    source = (ROOT / "escalation_app" / "settings.py").read_text() + (ROOT / "escalation_app" / "urls.py").read_text()
    assert "GATE_BENCH" not in source
    assert "bench.baseline" not in source


def test_bench_settings_are_the_project_settings_plus_the_baseline() -> None:
    code = (
        "import json, django; django.setup()\n"
        "from django.conf import settings\n"
        "from django.urls import get_resolver, resolve\n"
        "print(json.dumps({'apps': settings.INSTALLED_APPS, 'urlconf': settings.ROOT_URLCONF,\n"
        "  'middleware': settings.MIDDLEWARE, 'baseline': resolve('/bench/baseline/actions').url_name,\n"
        "  'propose': resolve('/api/v1/actions').url_name, 'ops': resolve('/ops/data').url_name,\n"
        "  'handler404': get_resolver().urlconf_module.handler404}))\n"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "bench.settings"}
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    assert seen["apps"] == [*django_settings.INSTALLED_APPS, "bench.baseline"]
    assert seen["middleware"] == django_settings.MIDDLEWARE
    assert seen["urlconf"] == "bench.urls"
    assert (seen["baseline"], seen["propose"], seen["ops"]) == ("bench-baseline-actions", "action-list", "ops-data")
    assert seen["handler404"] == "approvals.review.views.not_found"


def test_baseline_endpoint_stores_a_row_and_runs_its_task(
    settings: Any, policy_v1: int, agent_client: APIClient, django_capture_on_commit_callbacks: Any
) -> None:
    settings.ROOT_URLCONF = "bench.urls"
    body = {"action_type": "refund", "params": {"order_id": "A-1", "amount": 20}, "trajectory": []}
    with django_capture_on_commit_callbacks(execute=True):
        response = agent_client.post("/bench/baseline/actions", body, format="json")
    assert response.status_code == 201, response.content
    action = ProposedAction.objects.get(pk=response.json()["id"])
    # bench.baseline.tasks.touch_row ran on commit (eagerly here): the row is updated, nothing evaluated it.
    assert action.status == Status.AUTO_APPROVED
    assert action.findings == []
