"""The deployment files are correct even though no Docker engine runs here: docker-compose.yml
is validated against the Compose Spec JSON Schema and checked against the project's entry points."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft7Validator

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_compose_file_matches_the_compose_spec(compose: dict[str, Any]) -> None:
    # Read as data from the docker-compose distribution; none of its (Python 2-era) code is imported.
    spec_file = next(f for f in metadata.files("docker-compose") or [] if f.name == "compose_spec.json")
    schema = json.loads(spec_file.read_text())
    # The x- extension key holds the shared definition; the spec allows x- keys at the top level.
    errors = sorted(Draft7Validator(schema).iter_errors(compose), key=lambda e: list(e.absolute_path))
    assert [f"{list(e.absolute_path)}: {e.message}" for e in errors] == []


def test_compose_runs_the_whole_stack(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert {"web", "worker", "beat", "postgres", "redis", "migrate"} <= set(services)
    assert "escalation_app.asgi:application" in services["web"]["command"]
    assert services["worker"]["command"][:4] == ["celery", "-A", "escalation_app", "worker"]
    assert services["beat"]["command"][:4] == ["celery", "-A", "escalation_app", "beat"]
    for name in ("postgres", "redis"):
        assert "healthcheck" in services[name]


def test_worker_and_beat_reuse_the_web_definition(compose: dict[str, Any]) -> None:
    web, worker, beat = (compose["services"][name] for name in ("web", "worker", "beat"))
    for service in (worker, beat):
        for key in ("build", "image", "environment", "depends_on"):
            assert service[key] == web[key], key
    assert web["environment"]["DATABASE_URL"].startswith("postgres://")
    assert web["environment"]["REDIS_URL"].startswith("redis://")
    assert web["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert web["depends_on"]["migrate"]["condition"] == "service_completed_successfully"


def test_image_uses_the_projects_python() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    version = (ROOT / ".python-version").read_text().strip()
    assert re.search(rf"^FROM python:{re.escape(version)}[-.]", dockerfile, re.MULTILINE)
    assert "requirements.txt" in dockerfile


def test_requirements_are_pinned() -> None:
    for name in ("requirements.txt", "requirements-dev.txt"):
        for line in (ROOT / name).read_text().splitlines():
            line = line.split("#")[0].strip()
            if line.startswith("-e ./"):  # a package of this repository, versioned with it
                path = (ROOT / line.removeprefix("-e ")).resolve()
                assert path.is_relative_to(ROOT), f"{name}: {line} is outside the repository"
                assert (path / "pyproject.toml").is_file(), f"{name}: {line} is not a package"
            elif line and not line.startswith("-r"):
                assert re.match(r"^[A-Za-z0-9_.\-\[\],]+==[0-9][^ ]*$", line), f"{name}: {line} is not pinned"


def test_deploy_check_is_clean_with_https_hardening() -> None:
    """Contract §1: with DJANGO_SECURE=1, `manage.py check --deploy` is clean."""
    env = {
        **os.environ,
        "DJANGO_SECURE": "1",
        "DJANGO_SECRET_KEY": "a-long-random-production-secret-key-0123456789-abcdefghijklmnopq",
        "DJANGO_ALLOWED_HOSTS": "gate.example.com",
    }
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout
