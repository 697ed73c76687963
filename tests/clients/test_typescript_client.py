"""The TypeScript client (clients/typescript) against the real stack: uvicorn serving the ASGI app,
a real Celery worker evaluating, PostgreSQL and Redis. ``npm test`` builds it with tsc and runs its
``node --test`` suite (the client, requiresApproval, webhooks from the gate, the Vercel AI SDK
example, and the params hash checked against this interpreter's json and hashlib) with the stack's
address, an agent's token and secret, and a reviewer's token in the environment."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

import pytest
from rest_framework.authtoken.models import Token

from tests.agents_stack import Stack
from tests.conftest import ROOT

pytestmark = [pytest.mark.worker, pytest.mark.server, pytest.mark.django_db(transaction=True)]

PACKAGE = ROOT / "clients" / "typescript"
# Every test of the node suite: none may be skipped for want of the stack.
EXPECTED_TESTS = 20


def summary(output: str, name: str) -> int:
    """A count from the summary node's spec reporter ends with (an information sign, ``pass 19``)."""
    found = re.search(r"^\N{INFORMATION SOURCE} " + name + r" (\d+)$", output, re.MULTILINE)
    assert found, f"no '{name}' in node's summary:\n{output[-4000:]}"
    return int(found.group(1))


def test_the_typescript_client_suite_passes_against_the_real_stack(stack: Stack) -> None:
    npm = shutil.which("npm")
    assert npm, "npm is needed (Node 20): see the README, 'TypeScript client'"
    assert (PACKAGE / "node_modules" / ".bin" / "tsc").exists(), (
        "the node packages are not installed: npm ci --prefix clients/typescript (make install does it)"
    )
    env = {
        **os.environ,
        "GATE_URL": stack.base_url,
        "GATE_TOKEN": stack.agent.token,
        "GATE_WEBHOOK_SECRET": stack.agent.webhook_secret,
        "GATE_REVIEWER_TOKEN": Token.objects.get(user__username="lead").key,
        "GATE_PYTHON": sys.executable,
        "NO_COLOR": "1",
    }
    completed = subprocess.run(
        [npm, "test", "--silent"], cwd=PACKAGE, env=env, capture_output=True, text=True, timeout=240, check=False
    )
    output = completed.stdout + completed.stderr
    assert completed.returncode == 0, output[-6000:]
    assert summary(output, "fail") == 0
    assert summary(output, "skipped") == 0
    assert "needs the stack" not in output, output[-4000:]
    assert summary(output, "tests") == summary(output, "pass") == EXPECTED_TESTS
