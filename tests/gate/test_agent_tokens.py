"""Agent tokens: stored hashed, compared in constant time, shown once, rotated without downtime,
revoked at once; through the services, the commands, the admin and the API."""

from __future__ import annotations

import hmac
import re
import uuid
from datetime import timedelta
from io import StringIO
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.test import Client, override_settings
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.test import APIClient

from approvals.errors import ServiceError
from approvals.gate import agents
from approvals.gate.agents import agent_authenticate, agent_create, agent_revoke_tokens, agent_rotate_token, token_hash
from approvals.models import Agent, AuditEvent

pytestmark = pytest.mark.django_db


def answers(token: str) -> int:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    # 404 (authenticated, no such action) or 401 (token refused)
    return int(client.get(f"/api/v1/actions/{uuid.uuid4()}").status_code)


def lines_of(output: str) -> dict[str, str]:
    return dict(line.split(": ", 1) for line in output.splitlines() if ": " in line)


def issued_tokens(response: Any) -> list[str]:
    return re.findall(r'<code class="agent-token">([^<]+)</code>', response.content.decode())


def expire_grace(agent: Agent) -> None:
    """The grace period runs out (time moved on, not the gate's code path changed)."""
    Agent.objects.filter(pk=agent.pk).update(previous_token_expires_at=timezone.now() - timedelta(seconds=1))


# --- hashing and constant-time comparison -------------------------------------------------------------


def test_only_the_digest_reaches_the_database_and_the_match_is_compared_in_constant_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    agent, token = agent_create(name="bot")
    compared: list[tuple[str, str]] = []
    real_compare = hmac.compare_digest

    def recording_compare(a: Any, b: Any) -> bool:
        compared.append((a, b))
        return real_compare(a, b)

    monkeypatch.setattr(agents.hmac, "compare_digest", recording_compare)

    with CaptureQueriesContext(connection) as queries:
        assert agent_authenticate(token) == agent
        assert agent_authenticate(token[:-1] + ("A" if token[-1] != "A" else "B")) is None

    sql = " ".join(q["sql"] for q in queries.captured_queries)
    assert token not in sql
    assert token_hash(token) in sql  # the lookup is by the non-secret digest
    # the row found is confirmed with hmac.compare_digest, digest against digest
    assert (agent.token_hash, token_hash(token)) in compared
    stored = Agent.objects.get(pk=agent.pk)
    assert token not in {stored.token_hash, stored.token_prefix, stored.webhook_secret}
    assert len(stored.token_hash or "") == 64


@pytest.mark.parametrize("token", ["", "x" * 10_000, "gat_" + "\u00e9" * 40, "two words"])
def test_odd_tokens_are_refused_with_401(token: str) -> None:
    agent_create(name="bot")
    assert agent_authenticate(token) is None
    assert answers(token) == 401


def test_empty_and_oversized_tokens_never_reach_the_database() -> None:
    with CaptureQueriesContext(connection) as queries:
        assert agent_authenticate("") is None
        assert agent_authenticate("x" * 10_000) is None
    assert queries.captured_queries == []


# --- rotation without downtime ------------------------------------------------------------------------


def test_rotation_keeps_the_previous_token_working_for_the_grace_period() -> None:
    # given
    agent, old = agent_create(name="bot")

    # when
    new = agent_rotate_token(agent=agent, actor="test", grace_minutes=30)

    # then: both work now
    assert new != old
    assert answers(old) == 404
    assert answers(new) == 404
    agent.refresh_from_db()
    assert agent.previous_token_expires_at is not None
    assert timedelta(minutes=29) < agent.previous_token_expires_at - timezone.now() <= timedelta(minutes=30)
    event = AuditEvent.objects.get(event="agent_token_rotated")
    assert event.actor == "test"
    assert event.data["grace_minutes"] == 30
    assert event.data["agent"] == "bot"
    assert old not in str(event.data)
    assert new not in str(event.data)

    # and once the grace period is over only the new one does
    expire_grace(agent)
    assert answers(old) == 401
    assert answers(new) == 404


@override_settings(GATE_TOKEN_ROTATION_GRACE_MINUTES=5)
def test_the_default_grace_comes_from_settings() -> None:
    agent, old = agent_create(name="bot")
    agent_rotate_token(agent=agent, actor="test")
    assert agent.previous_token_expires_at is not None
    assert timedelta(minutes=4) < agent.previous_token_expires_at - timezone.now() <= timedelta(minutes=5)
    assert answers(old) == 404


def test_a_second_rotation_ends_the_first_ones_grace() -> None:
    agent, first = agent_create(name="bot")
    second = agent_rotate_token(agent=agent, actor="test")
    third = agent_rotate_token(agent=agent, actor="test")

    assert [answers(t) for t in (first, second, third)] == [401, 404, 404]


def test_a_negative_grace_is_refused_and_changes_nothing() -> None:
    agent, token = agent_create(name="bot")
    with pytest.raises(ServiceError, match="0 or more"):
        agent_rotate_token(agent=agent, actor="test", grace_minutes=-1)
    assert answers(token) == 404
    assert not AuditEvent.objects.filter(event="agent_token_rotated").exists()


# --- revocation ---------------------------------------------------------------------------------------


def test_revoking_kills_every_token_at_once_and_a_rotation_issues_a_fresh_one() -> None:
    agent, old = agent_create(name="bot")
    current = agent_rotate_token(agent=agent, actor="test", grace_minutes=60)

    agent_revoke_tokens(agent=agent, actor="test")

    assert answers(old) == 401
    assert answers(current) == 401
    assert AuditEvent.objects.filter(event="agent_tokens_revoked", actor="test", data__agent="bot").exists()
    agent.refresh_from_db()
    assert agent.token_hash is None
    assert agent.token_revoked_at is not None

    # a rotation after a revocation gives only the new token, no grace for the revoked ones
    fresh = agent_rotate_token(agent=agent, actor="test")
    assert [answers(t) for t in (old, current, fresh)] == [401, 401, 404]
    assert agent.previous_token_hash is None


def test_two_revoked_agents_coexist() -> None:
    # the hash column is unique; revoked agents hold NULL, which the constraint allows many times
    for name in ("a", "b"):
        agent, _ = agent_create(name=name)
        agent_revoke_tokens(agent=agent, actor="test")
    assert Agent.objects.filter(token_hash__isnull=True).count() == 2


# --- commands -----------------------------------------------------------------------------------------


def run(*args: str) -> str:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def test_rotate_and_revoke_commands() -> None:
    created = lines_of(run("create_agent", "bot"))
    assert set(created) == {"agent", "token", "webhook_secret"}  # contract §2, unchanged

    rotated = lines_of(run("rotate_agent_token", "bot", "--grace-minutes", "10"))
    assert rotated["agent"] == "bot"
    assert answers(created["token"]) == 404
    assert answers(rotated["token"]) == 404
    assert rotated["previous_token_valid_until"] != "stopped"

    now = lines_of(run("rotate_agent_token", "bot", "--grace-minutes", "0"))
    assert now["previous_token_valid_until"] == "stopped"
    assert [answers(t) for t in (created["token"], rotated["token"], now["token"])] == [401, 401, 404]

    assert lines_of(run("revoke_agent_token", "bot"))["tokens"] == "revoked"
    assert answers(now["token"]) == 401
    actors = set(AuditEvent.objects.filter(data__agent="bot").values_list("actor", flat=True))
    assert {"command:create_agent", "command:rotate_agent_token", "command:revoke_agent_token"} <= actors


def test_commands_refuse_an_unknown_agent_and_a_negative_grace() -> None:
    agent_create(name="bot")
    with pytest.raises(CommandError, match="no agent named 'ghost'"):
        run("rotate_agent_token", "ghost")
    with pytest.raises(CommandError, match="no agent named 'ghost'"):
        run("revoke_agent_token", "ghost")
    with pytest.raises(CommandError, match="0 or more"):
        run("rotate_agent_token", "bot", "--grace-minutes", "-5")


# --- admin actions ------------------------------------------------------------------------------------


@pytest.fixture
def admin_browser(db: None) -> Client:
    user = User.objects.create_superuser("root", password="correct-horse-battery")
    client = Client()
    client.force_login(user)
    return client


def test_admin_rotation_shows_the_token_on_that_response_only(admin_browser: Client) -> None:
    agent, old = agent_create(name="bot")

    response = admin_browser.post("/admin/approvals/agent/", {"action": "rotate_token", "_selected_action": [agent.pk]})

    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    [token] = issued_tokens(response)
    assert answers(token) == 404
    assert answers(old) == 404  # the grace period applies
    # not carried to another page: no message cookie, and the next page does not show it
    assert all(token not in morsel.value for morsel in response.cookies.values())
    assert token not in admin_browser.get("/admin/approvals/agent/").content.decode()
    assert AuditEvent.objects.filter(event="agent_token_rotated", actor="user:root").exists()


def test_admin_rotate_now_and_revoke(admin_browser: Client) -> None:
    agent, old = agent_create(name="bot")

    response = admin_browser.post(
        "/admin/approvals/agent/", {"action": "rotate_token_now", "_selected_action": [agent.pk]}
    )
    [token] = issued_tokens(response)
    assert answers(old) == 401
    assert answers(token) == 404

    revoked = admin_browser.post(
        "/admin/approvals/agent/", {"action": "revoke_tokens", "_selected_action": [agent.pk]}, follow=True
    )
    assert "Revoked every token of: bot" in revoked.content.decode()
    assert answers(token) == 401
    assert AuditEvent.objects.filter(event="agent_tokens_revoked", actor="user:root").exists()


def test_the_rate_limit_override_is_editable_in_the_admin(admin_browser: Client) -> None:
    agent, _ = agent_create(name="bot")
    page = admin_browser.get(f"/admin/approvals/agent/{agent.pk}/change/").content.decode()
    assert 'name="rate_limit_per_minute"' in page
    assert 'name="token_hash"' not in page
    assert 'name="previous_token_hash"' not in page
