"""Everything an agent sends is shown as text, never run or parsed as markup (issue: hostile and bad
input): Debian's Chromium, driven by Playwright, opens every page that shows an agent's proposal —
the live queue, the detail page, the evaluation pages, the admin's change pages of the action and
its audit events — against the full stack on loopback (uvicorn, a Celery worker, PostgreSQL, Redis).

The pages carry a Content Security Policy that would stop an injected inline script from running,
so "no alert" alone proves little: the test also looks for the injected elements themselves.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from approvals.gate.policies import policies_import
from approvals.models import AuditEvent, ProposedAction
from tests.conftest import TEST_POLICY
from tests.factories import AgentFactory, ReviewerFactory, UserFactory
from tests.review.test_browser import CHROMIUM, CHROMIUM_ARGS

if not Path(CHROMIUM).exists() and os.environ.get("CI") != "true":
    pytest.skip(f"no Chromium at {CHROMIUM} (CI installs Debian's chromium)", allow_module_level=True)

pytestmark = [pytest.mark.browser, pytest.mark.server, pytest.mark.worker, pytest.mark.django_db(transaction=True)]

PAYLOADS = {
    "script": "<script>window.__pwned = 'script'; alert('script')</script>",
    "img": "<img src=x onerror=\"window.__pwned='img'; alert('img')\">",
    "svg": "\"><svg onload=\"window.__pwned='svg'; alert('svg')\">",
    "attribute": "' autofocus onfocus='alert(1)' x='",
    "javascript": "javascript:alert('url')",
    "django": "{{ 7|add:42 }} {% now 'Y' %}",
    "jinja": "${7*7} {{7*7}} <%= 7*7 %>",
}
ALL = " ".join(PAYLOADS.values())
# What survives being quoted as JSON (as the admin and schema errors quote values): no quotes in it.
IMG = "<img src=x onerror="
# What an injection would have put into a page: looked for in every page's DOM.
INJECTED = (
    "img[src='x'], svg[onload], [onerror], [onfocus], [autofocus], a[href^='javascript:' i], "
    "iframe[src^='javascript:' i], form[action^='javascript:' i]"
)
PASSWORD = "correct-horse-battery"


def hostile_trajectory() -> list[dict]:
    tool = PAYLOADS["img"]  # a tool name of 200 characters at most
    call = {"kind": "tool_call", "tool": tool, "args": {"q": PAYLOADS["svg"]}, "result": PAYLOADS["script"]}
    return [
        {"kind": "message", "role": "user", "content": ALL},
        {"kind": "tool_call", "tool": "get_order", "args": {"order_id": "A-1"}, "result": '{"total": 80}'},
        # the same call three times: the built-in loop check writes the tool name into a finding
        call,
        call,
        call,
        {"kind": "tool_call", "tool": PAYLOADS["javascript"], "args": {PAYLOADS["django"]: ALL}, "result": ALL},
        {"kind": "message", "role": "assistant", "content": PAYLOADS["jinja"]},
    ]


def orm(function: Callable[[], Any]) -> Any:
    """Django refuses ORM calls from the thread where Playwright's event loop runs."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(function).result()


@pytest.fixture
def people(asgi_server: str) -> dict[str, Any]:
    policies_import(document=TEST_POLICY, actor="test")
    return {
        "agent": AgentFactory(name="support-bot"),
        "reviewer": ReviewerFactory(username="rita"),
        "admin": UserFactory(username="root", is_staff=True, is_superuser=True),
    }


@pytest.fixture
def chromium(people: dict[str, Any]) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


class Watched:
    """A logged-in page that records every dialog, and checks each page it opens."""

    def __init__(self, browser: Any, base: str, username: str, login_path: str) -> None:
        self.base = base
        self.dialogs: list[str] = []
        self.page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
        self.page.on("dialog", lambda dialog: (self.dialogs.append(dialog.message), dialog.dismiss()))
        self.page.goto(f"{base}{login_path}")
        self.page.fill("#id_username", username)
        self.page.fill("#id_password", PASSWORD)
        self.page.click("[type=submit]")
        self.page.wait_for_load_state()

    def open(self, path: str) -> Any:
        response = self.page.goto(f"{self.base}{path}")
        assert response is not None
        assert response.status == 200, (path, response.status)
        self.assert_safe(path, response)
        return response

    def assert_safe(self, where: str, response: Any = None) -> None:
        page = self.page
        if response is not None:
            csp = response.headers.get("content-security-policy", "")
            assert "script-src 'self'" in csp, (where, csp)
            assert "unsafe-inline" not in csp.split("script-src")[1].split(";")[0], (where, csp)
        injected = page.eval_on_selector_all(INJECTED, "nodes => nodes.map(n => n.outerHTML.slice(0, 200))")
        assert injected == [], (where, injected)
        scripts = page.eval_on_selector_all(
            "script", "nodes => nodes.filter(n => /__pwned|alert/.test(n.textContent)).map(n => n.outerHTML)"
        )
        assert scripts == [], (where, scripts)
        assert page.evaluate("window.__pwned") is None, where
        assert self.dialogs == [], (where, self.dialogs)

    def text(self) -> str:
        return str(self.page.evaluate("document.body.innerText"))


def test_agent_text_is_shown_literally_on_every_page(asgi_server: str, people: dict[str, Any], chromium: Any) -> None:
    agent = people["agent"]
    headers = {"Authorization": f"Bearer {agent.token}"}

    # given: a reviewer with the queue open, waiting for live rows
    reviewer = Watched(chromium, asgi_server, "rita", "/review/")
    reviewer.page.wait_for_selector("#live[data-state=open]")

    # when: the agent proposes, with hostile text in every field it controls
    held = httpx.post(
        f"{asgi_server}/api/v1/actions",
        json={
            "action_type": "refund",
            "params": {"order_id": "A-1", "amount": 500, "note": ALL, "link": PAYLOADS["javascript"]},
            "context": {"session_id": PAYLOADS["svg"], "ticket": ALL},
            "rationale": ALL,
            "idempotency_key": PAYLOADS["svg"] + PAYLOADS["django"],
            "trajectory": hostile_trajectory(),
        },
        headers=headers,
        timeout=10,
    )
    assert held.status_code == 201, held.text
    # and one whose params fail the schema: the finding's message quotes the hostile value
    blocked = httpx.post(
        f"{asgi_server}/api/v1/actions?wait=10",
        json={"action_type": "refund", "params": {"order_id": "A-2", "amount": PAYLOADS["img"]}},
        headers=headers,
        timeout=20,
    )
    assert blocked.status_code == 201, blocked.text
    assert blocked.json()["status"] == "blocked"
    assert IMG in blocked.json()["findings"][0]["message"]
    held_id, blocked_id = held.json()["id"], blocked.json()["id"]

    # then: the held action arrives live in the open queue, as text
    reviewer.page.wait_for_selector(f'#queue tr.row[data-id="{held_id}"]', timeout=20000)
    reviewer.assert_safe("queue, live row")
    reviewer.open("/review/")
    reviewer.page.wait_for_selector(f'#queue tr.row[data-id="{held_id}"]')

    # the detail pages show every payload literally
    reviewer.open(f"/review/{held_id}")
    shown = reviewer.text()
    for name, payload in PAYLOADS.items():
        assert payload in shown, (name, payload)
    assert reviewer.page.locator(".rationale").inner_text() == ALL
    findings = orm(lambda: ProposedAction.objects.get(pk=held_id).findings)
    looping = next(f for f in findings if f["rule"] == "looping_trajectory")
    assert PAYLOADS["img"] in looping["message"]
    assert looping["message"] in shown  # the finding quotes the tool name, shown as text
    reviewer.open(f"/review/{blocked_id}")
    assert IMG in reviewer.text()

    # the admin's evaluation pages and change pages of the actions and their audit events
    admin = Watched(chromium, asgi_server, "root", "/admin/login/?next=/admin/")
    admin.open("/evaluation/")
    for action_id in (held_id, blocked_id):
        admin.open(f"/admin/approvals/proposedaction/{action_id}/change/")
        assert IMG in admin.text()
        events = orm(
            lambda action_id=action_id: list(
                AuditEvent.objects.filter(action_id=action_id).values_list("pk", flat=True)
            )
        )
        assert events
        for event in events:
            admin.open(f"/admin/approvals/auditevent/{event}/change/")
    admin.open(f"/admin/approvals/proposedaction/?q={held_id}")
    admin.open("/admin/approvals/auditevent/")

    # the reviewer decides it, and nothing ran along the way
    reviewer.open(f"/review/{held_id}")
    reviewer.page.keyboard.press("a")
    reviewer.page.wait_for_url(f"{asgi_server}/review/")
    reviewer.assert_safe("after the decision")
    assert httpx.get(f"{asgi_server}/api/v1/actions/{held_id}", headers=headers, timeout=10).json()["status"] == (
        "approved"
    )
