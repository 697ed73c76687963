"""The operations page in a real browser: it refreshes itself from /ops/data under the CSP."""

from __future__ import annotations

import httpx
import pytest

from approvals.gate.policies import policies_import
from tests.conftest import LOOKED_UP, TEST_POLICY
from tests.factories import AgentFactory, UserFactory
from tests.review.test_browser import CHROMIUM, CHROMIUM_ARGS

pytestmark = [pytest.mark.browser, pytest.mark.server, pytest.mark.worker, pytest.mark.django_db(transaction=True)]


def test_ops_page_refreshes_live(asgi_server: str) -> None:
    from playwright.sync_api import expect, sync_playwright

    # given (the database is set up before Playwright's event loop runs in this thread)
    policies_import(document=TEST_POLICY, actor="test")
    agent = AgentFactory(name="ops-bot")
    UserFactory(username="olga", is_staff=True)

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
        problems: list[str] = []
        page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
        page.on("pageerror", lambda error: problems.append(f"Error: {error}"))
        page.goto(f"{asgi_server}/ops/")
        page.fill("#id_username", "olga")
        page.fill("#id_password", "correct-horse-battery")
        page.click("button[type=submit]")
        page.wait_for_url(f"{asgi_server}/ops/")
        page.wait_for_selector("#ops-updated[data-state=live]")
        assert page.text_content("[data-field='last_hour.proposals']") == "0"

        # when: an agent proposes through the API, and the worker decides
        response = httpx.post(
            f"{asgi_server}/api/v1/actions?wait=10",
            json={"action_type": "refund", "params": {"order_id": "A-1", "amount": 20}, "trajectory": LOOKED_UP},
            headers={"Authorization": f"Bearer {agent.token}"},
            timeout=15,
        )
        assert response.json()["status"] == "auto_approved"

        # then: the page shows it without a reload (it refreshes every 5 s; the counts are cached 5 s)
        expect(page.locator("[data-field='last_hour.proposals']")).to_have_text("1", timeout=20_000)
        assert page.text_content("#ops-agents") == "ops-bot1"
        assert "alive" in (page.text_content("#ops-workers") or "")
        # no script error and nothing the CSP refused (app.js' websocket is for reviewers: 403 for olga)
        assert [p for p in problems if "Content Security Policy" in p or "Error" in p.split(":")[0]] == [], problems
        browser.close()
