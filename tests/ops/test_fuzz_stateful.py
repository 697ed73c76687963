"""The action operations fuzzed as a client walks them: schemathesis' state machine follows the
schema's OpenAPI links from a proposal (POST /actions, 201 or 200) to GET /actions/{id}, /cancel,
/outcome, /decision and /labels with the id it was given, in-process over the WSGI app and the real
PostgreSQL test database, evaluations run in-process on commit (so held actions can be decided).

Each scenario proposes as a new agent (idempotency keys are an agent's own), and decides and labels
as a reviewer. The one thing changed in a generated case is a rule no JSON Schema can state: when
the Idempotency-Key header and the body's key are both generated, the header is made the body's
(tests/ops/test_openapi_schema.py checks the 400 for keys that differ). The schema is the served one
with the action type names this deployment has as an enum, as an agent that knows its tools sees it.

Every answer is checked as in test_fuzz_schema.py. The run is bounded (``FUZZ_STATEFUL_EXAMPLES``
scenarios, default 60: about half a minute); most valid proposals (schemathesis' positive mode) must
be accepted (201 or 200). Its invalid ones (negative mode) are counted and checked, not required to
fail: a ``wait`` over the bound is accepted and held to it, as the schema says.
"""

from __future__ import annotations

import os
from collections import Counter
from typing import Any

import schemathesis
from django.core.handlers.wsgi import WSGIHandler
from django.test import TestCase
from drf_spectacular.generators import SchemaGenerator
from hypothesis import HealthCheck, settings
from rest_framework.authtoken.models import Token

from approvals.gate.policies import policies_import
from tests.conftest import TEST_POLICY
from tests.factories import AgentFactory, ReviewerFactory
from tests.ops.test_fuzz_schema import CHECKS, _assert_error_is_json, _keeping_the_test_transaction

EXAMPLES = int(os.environ.get("FUZZ_STATEFUL_EXAMPLES", "60"))
ACTION_TYPES = [action_type["name"] for action_type in TEST_POLICY["action_types"]]
# Operations a reviewer calls; an agent calls the others.
REVIEWER_OPERATIONS = ("/decision", "/labels")


def _schema() -> Any:
    raw = SchemaGenerator().get_schema(request=None, public=True)
    proposal = raw["components"]["schemas"]["Propose"]["properties"]
    proposal["action_type"]["enum"] = ACTION_TYPES
    # Delivering a webhook resolves its host name: the generated ones are not for this test's network.
    del proposal["callback_url"]
    loaded = schemathesis.openapi.from_dict(raw).include(path_regex=r"^/api/v1/actions")
    # The server refuses NUL characters (PostgreSQL cannot store them): a 400, not a proposal.
    loaded.config.generation.update(allow_x00=False)
    loaded.app = WSGIHandler()
    return loaded


def _same_key(case: Any) -> None:
    """Header and body keys both generated: the header is the body's (else a 400, by design), or
    is left out when the body's key could not be sent as a header (a newline, say)."""
    headers = case.headers or {}
    body = case.body if isinstance(case.body, dict) else {}
    key = body.get("idempotency_key")
    if "Idempotency-Key" in headers and isinstance(key, str):
        if key.isascii() and key.isprintable():
            headers["Idempotency-Key"] = key
        else:
            del headers["Idempotency-Key"]


def test_clients_walking_the_links_from_a_proposal(db: None, settings: Any) -> None:
    settings.GATE_MAX_WAIT_SECONDS = 0.05
    policies_import(document=TEST_POLICY, actor="test")
    reviewer = {"Authorization": f"Token {Token.objects.create(user=ReviewerFactory(username='fuzz-r')).key}"}
    answers: Counter[tuple[str, int]] = Counter()
    steps: Counter[str] = Counter()
    proposed: Counter[tuple[str, int]] = Counter()  # (generation mode, status) of each proposal

    class ClientWalk(_schema().as_state_machine()):  # type: ignore[misc]
        def setup(self) -> None:
            self.agent = {"Authorization": f"Bearer {AgentFactory().token}"}

        def before_call(self, case: Any) -> None:
            who = reviewer if case.path.endswith(REVIEWER_OPERATIONS) else self.agent
            case.headers = {**(case.headers or {}), **who}
            if case.method.upper() == "POST" and case.path == "/api/v1/actions":
                _same_key(case)

        def call(self, case: Any, **kwargs: Any) -> Any:
            with _keeping_the_test_transaction(), TestCase.captureOnCommitCallbacks(execute=True):
                return case.call(**kwargs)

        def after_call(self, response: Any, case: Any) -> None:
            steps[f"{case.method.upper()} {case.path}"] += 1
            answers[(f"{case.method.upper()} {case.path}", response.status_code)] += 1
            if case.method.upper() == "POST" and case.path == "/api/v1/actions":
                mode = "negative" if case.meta is not None and case.meta.generation.mode.is_negative else "positive"
                proposed[(mode, response.status_code)] += 1

        def validate_response(self, response: Any, case: Any, additional_checks: Any = None, **kwargs: Any) -> None:
            case.validate_response(response, checks=CHECKS)
            _assert_error_is_json(response)

    ClientWalk.run(
        settings=settings_for_the_walk(EXAMPLES),
    )

    proposals = sum(count for (mode, _), count in proposed.items() if mode == "positive")
    accepted = sum(count for (mode, code), count in proposed.items() if mode == "positive" and code < 300)
    print(
        f"\nstateful fuzz: {sum(steps.values())} calls; {proposals} valid proposals, {accepted} accepted; "
        f"invalid ones: {sorted((code, n) for (mode, code), n in proposed.items() if mode == 'negative')}"
    )
    for (operation, code), count in sorted(answers.items()):
        print(f"  {operation} -> {code}: {count}")
    assert proposals >= EXAMPLES // 2, sorted(proposed.items())
    assert accepted >= 0.7 * proposals, sorted(answers.items())
    # The links were followed: operations on the proposed action were reached with its id.
    followed = {operation for (operation, code) in answers if "{action_id}" in operation and code == 200}
    assert {"GET /api/v1/actions/{action_id}", "POST /api/v1/actions/{action_id}/cancel"} <= followed, answers


def settings_for_the_walk(examples: int) -> Any:
    return settings(
        max_examples=examples,
        stateful_step_count=6,
        deadline=None,
        database=None,
        # The same walk on every run: whether it reaches a given operation must not be luck.
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
