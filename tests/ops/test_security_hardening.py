"""HTTPS hardening as a browser sees it (a server run with DJANGO_SECURE=1), and no secret in logs."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from io import StringIO
from pathlib import Path
from typing import Any

import httpx
import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.core.management import call_command
from django.test import Client, override_settings
from rest_framework.test import APIClient

from approvals.gate.agents import agent_create
from approvals.integrations.services import webhook_deliver
from approvals.models import WebhookDelivery
from tests.conftest import LOOKED_UP, uvicorn_server
from tests.integrations.test_webhooks import Receiver

SECRET_KEY = "a-long-random-production-secret-key-0123456789-abcdefghijklmnopq"
PASSWORD = "correct-horse-battery-staple-9"


def cookies_of(response: httpx.Response) -> dict[str, str]:
    """Set-Cookie headers by cookie name, as sent (attributes included)."""
    return {header.split("=", 1)[0]: header for header in response.headers.get_list("set-cookie")}


def attributes(set_cookie: str) -> set[str]:
    return {part.strip().split("=")[0].lower() for part in set_cookie.split(";")[1:]}


@pytest.fixture
def secure_server(django_db_setup: None, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """uvicorn with DJANGO_SECURE=1, behind a (pretend) TLS proxy: X-Forwarded-Proto says https.
    It logs at DEBUG, so that its log can be searched for secrets."""
    log = tmp_path / "server.log"
    env = {
        "DJANGO_SECURE": "1",
        "DJANGO_SECRET_KEY": SECRET_KEY,
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1",
        "GATE_LOG_LEVEL": "DEBUG",
    }
    with uvicorn_server(log, env=env, args=("--log-level", "debug")) as base:
        yield base, log


@pytest.mark.server
@pytest.mark.django_db(transaction=True)
def test_secure_headers_and_cookies_and_a_quiet_log(secure_server: tuple[str, Path], policy_v1: int) -> None:
    base, log = secure_server
    https = {"X-Forwarded-Proto": "https"}
    origin = base.replace("http://", "https://")
    User.objects.create_superuser("root", password=PASSWORD)
    agent, token = agent_create(name="bot")

    with httpx.Client(base_url=base, timeout=30, follow_redirects=False) as client:
        # plain http is sent to https
        plain = client.get("/accounts/login/")
        assert plain.status_code == 301
        assert plain.headers["location"].startswith("https://")

        # the login page: HSTS, CSP, nosniff, no framing, and a Secure HttpOnly SameSite CSRF cookie
        page = client.get("/accounts/login/", headers=https)
        assert page.status_code == 200
        assert page.headers["strict-transport-security"] == "max-age=31536000; includeSubDomains; preload"
        csp = page.headers["content-security-policy"]
        for directive in ("default-src 'self'", "script-src 'self'", "frame-ancestors 'none'", "object-src 'none'"):
            assert directive in csp
        assert "unsafe-inline" not in csp
        assert page.headers["x-content-type-options"] == "nosniff"
        assert page.headers["x-frame-options"] == "DENY"
        assert page.headers["referrer-policy"] == "same-origin"
        csrf_cookie = cookies_of(page)["csrftoken"]
        assert {"secure", "httponly", "samesite"} <= attributes(csrf_cookie)
        assert "samesite=lax" in csrf_cookie.lower()

        # logging in: the session cookie is Secure, HttpOnly and SameSite=Lax
        csrf = csrf_cookie.split(";")[0].split("=", 1)[1]
        form_token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
        assert form_token is not None
        login = client.post(
            "/accounts/login/",
            data={"username": "root", "password": PASSWORD, "csrfmiddlewaretoken": form_token.group(1)},
            headers={**https, "Cookie": f"csrftoken={csrf}", "Origin": origin, "Referer": f"{origin}/accounts/login/"},
        )
        assert login.status_code == 302, login.text[:500]
        session_cookie = cookies_of(login)["sessionid"]
        assert {"secure", "httponly", "samesite"} <= attributes(session_cookie)
        assert "samesite=lax" in session_cookie.lower()
        session = session_cookie.split(";")[0].split("=", 1)[1]
        assert client.get("/review/", headers={**https, "Cookie": f"sessionid={session}"}).status_code == 200

        # a POST without the CSRF token is refused, even with a valid session
        forged = client.post(
            "/accounts/logout/", headers={**https, "Cookie": f"sessionid={session}", "Origin": "https://evil.example"}
        )
        assert forged.status_code == 403

        # the API: HSTS too; a bad token 401, the good one works
        refused = client.get("/api/v1/review/queue", headers={**https, "Authorization": "Bearer gat_wrong"})
        assert refused.status_code == 401
        assert "strict-transport-security" in refused.headers
        mine = client.post(
            "/api/v1/actions",
            json={"action_type": "refund", "params": {"order_id": "A-1", "amount": 5}, "trajectory": LOOKED_UP},
            headers={**https, "Authorization": f"Bearer {token}"},
        )
        assert mine.status_code == 201

    # nothing secret in the server's log, at DEBUG
    text = log.read_text()
    assert "/api/v1/actions" in text  # the log did record the requests
    assert "DEBUG" in text
    for secret in (token, session, csrf, PASSWORD, SECRET_KEY, agent.webhook_secret, "gat_wrong"):
        assert secret not in text


# --- no secret in the gate's own logs -------------------------------------------------------------------


@pytest.fixture
def debug_logs() -> Iterator[list[logging.LogRecord]]:
    """Every record at DEBUG from Django (requests included), the gate, Celery and the rest."""
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Keep(level=logging.DEBUG)
    names = ["", "django", "django.request", "django.server", "approvals", "celery", "escalation_app"]
    loggers = [logging.getLogger(name) for name in names]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.DEBUG)
    logging.getLogger().addHandler(handler)
    try:
        yield records
    finally:
        logging.getLogger().removeHandler(handler)
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def rendered(records: list[logging.LogRecord]) -> str:
    """Each record as any handler could write it: message, arguments, extras and traceback."""
    formatter = logging.Formatter()
    parts = []
    for record in records:
        parts.append(record.getMessage())
        parts.append(repr({k: v for k, v in record.__dict__.items() if k not in ("msg", "args")}))
        if record.exc_info:
            parts.append(formatter.formatException(record.exc_info))
    return "\n".join(parts)


@pytest.mark.django_db
@override_settings(GATE_WEBHOOK_ALLOW_PRIVATE=True)
def test_no_secret_in_logs(
    debug_logs: list[logging.LogRecord], policy_v1: int, django_capture_on_commit_callbacks: Any
) -> None:
    receiver = Receiver()
    try:
        # create_agent and a rotation print the token on stdout, once, and log nothing of it
        out = StringIO()
        call_command("create_agent", "bot", stdout=out)
        first = dict(line.split(": ", 1) for line in out.getvalue().splitlines())
        out = StringIO()
        call_command("rotate_agent_token", "bot", stdout=out)
        second = dict(line.split(": ", 1) for line in out.getvalue().splitlines() if ": " in line)

        # authentication: a bad token, a good one, and no token (401)
        for header in ("Bearer gat_not-a-real-token", f"Bearer {second['token']}", None):
            client = APIClient()
            if header:
                client.credentials(HTTP_AUTHORIZATION=header)
            client.get("/api/v1/review/queue")
        # a proposal with a callback: evaluated, then a signed webhook delivery
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {first['token']}")
        with django_capture_on_commit_callbacks(execute=True):
            response = client.post(
                "/api/v1/actions",
                {"action_type": "refund", "params": {"order_id": "A-1", "amount": 5}, "callback_url": receiver.url},
                format="json",
            )
        assert response.status_code == 201
        delivery = WebhookDelivery.objects.get(action_id=response.json()["id"])
        webhook_deliver(delivery_id=delivery.pk)
        [sent] = receiver.wait_for(1)
        signature = sent["headers"]["X-Gate-Signature"]

        # a reviewer's session, a page, and a refused login
        reviewer = User.objects.create_user("lead", password=PASSWORD)
        browser = Client()
        assert browser.login(username="lead", password=PASSWORD)
        browser.get("/review/")
        session = browser.cookies[settings.SESSION_COOKIE_NAME].value
        Client().post("/accounts/login/", {"username": reviewer.username, "password": PASSWORD + "x"})
    finally:
        receiver.close()

    text = rendered(debug_logs)
    assert debug_logs, "nothing was logged: the capture is not working"
    secrets = {
        "token": first["token"],
        "rotated token": second["token"],
        "bad token": "gat_not-a-real-token",
        "webhook secret": first["webhook_secret"],
        "signature": signature.split("v1=")[1],
        "session": session,
        "password": PASSWORD,
        "SECRET_KEY": settings.SECRET_KEY,
    }
    leaked = [name for name, value in secrets.items() if value in text]
    assert leaked == []
