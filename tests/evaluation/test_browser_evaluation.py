"""The evaluation dashboard, a what-if run and the shadow panel in a real browser: Debian's Chromium driven by
Playwright against the full stack on loopback (uvicorn, a Celery worker, PostgreSQL, Redis)."""

from __future__ import annotations

import json
import os
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from approvals.evaluation import whatif
from approvals.models import WhatIfRun
from tests.conftest import TEST_POLICY
from tests.evaluation.test_evaluation_pages import make_history
from tests.evaluation.test_shadow_figures import make_shadowed
from tests.factories import ReviewerFactory, UserFactory
from tests.review.test_browser import CHROMIUM, CHROMIUM_ARGS, shot

if not Path(CHROMIUM).exists() and os.environ.get("CI") != "true":
    pytest.skip(f"no Chromium at {CHROMIUM} (CI installs Debian's chromium)", allow_module_level=True)

pytestmark = [pytest.mark.browser, pytest.mark.server, pytest.mark.worker, pytest.mark.django_db(transaction=True)]

# The app has no icon; the browser asks for one anyway.
FAVICON = "/favicon.ico"
# Collects what the page reports about its Content Security Policy before any of its scripts run.
CSP_WATCH = """
window.__csp = [];
document.addEventListener("securitypolicyviolation", (e) => {
  window.__csp.push(e.violatedDirective + " " + e.blockedURI);
});
"""


@pytest.fixture
def people(asgi_server: str) -> dict[str, Any]:
    """The data and users, made before the browser starts (no ORM calls from Playwright's thread)."""
    reviewer = ReviewerFactory(username="rita")
    make_history(reviewer)
    return {"reviewer": reviewer, "admin": UserFactory(username="root", is_staff=True, is_superuser=True)}


@pytest.fixture
def chromium(people: dict[str, Any]) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def open_as(browser: Any, base: str, username: str, path: str, problems: list[str]) -> Any:
    """Log in and open ``path``, recording console errors, page errors and failed requests."""
    page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
    page.add_init_script(CSP_WATCH)

    def console(message: Any) -> None:
        where = message.location.get("url", "")
        if message.type == "error" and not where.endswith(FAVICON):
            problems.append(f"{message.text} {where}")

    def response(response: Any) -> None:
        if response.status >= 400 and not response.url.endswith(FAVICON):
            problems.append(f"{response.status} {response.url}")

    page.on("console", console)
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.on("response", response)
    page.goto(f"{base}/accounts/login/?next={path}")
    page.fill("#id_username", username)
    page.fill("#id_password", "correct-horse-battery")
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}{path}")
    return page


def test_the_dashboard_draws_its_charts_without_errors_or_csp_violations(
    asgi_server: str, chromium: Any, tmp_path: Path
) -> None:
    problems: list[str] = []
    page = open_as(chromium, asgi_server, "rita", "/evaluation/?window=all", problems)

    page.wait_for_selector("body[data-charts=ready]", timeout=15000)

    for chart in ("days", "sweep", "rules"):
        canvas = page.locator(f"#chart-{chart}")
        assert canvas.get_attribute("data-drawn") == "1"
        box = canvas.bounding_box()
        assert box is not None
        assert box["width"] > 200
        assert box["height"] > 100
    assert page.evaluate("typeof window.Chart") == "function"
    assert page.locator("tr.busy[data-agent=looper] .badge-busy").is_visible()
    assert "Clopper" in page.locator("#headline").inner_text()
    assert page.locator("#apply-form").count() == 0  # reviewers do not change policies
    # a filter applies on change, without the button
    page.select_option("#eval-filters select[name=agent]", "looper")
    page.wait_for_url(re.compile(r".*agent=looper.*"))
    page.wait_for_selector("body[data-charts=ready]")
    assert page.locator("tr[data-agent=support-bot]").count() == 0
    shot(page, tmp_path, "evaluation")

    assert page.evaluate("window.__csp") == []
    assert problems == []


def test_an_admin_runs_a_what_if_and_watches_it_reach_done(asgi_server: str, chromium: Any, tmp_path: Path) -> None:
    problems: list[str] = []
    page = open_as(chromium, asgi_server, "root", "/evaluation/whatif/", problems)
    assert "action_types:" in page.input_value("#id_document")  # the current policy, as YAML

    # an invalid candidate: its problems are listed and nothing starts
    page.fill("#id_document", "version: 1\naction_types:\n  - name: refund\n    mode: sometimes\n")
    page.click("#whatif-form button[type=submit]")
    page.wait_for_selector("#policy-errors")
    assert all("400" in p for p in problems)  # the refused form's own answer, nothing else
    problems.clear()

    # the refund policy without its rule, replayed by the worker
    refund = {**TEST_POLICY["action_types"][0], "rules": []}
    page.fill("#id_document", json.dumps({"version": 1, "action_types": [refund]}, indent=2))
    page.click("#whatif-form button[type=submit]")
    page.wait_for_url(re.compile(rf"{re.escape(asgi_server)}/evaluation/whatif/\d+/$"))

    page.wait_for_selector("body[data-run-state=done]", timeout=30000)
    page.wait_for_selector("#summary-table", timeout=15000)
    assert page.locator("#run-state").inner_text() == "done"
    assert page.locator("#progress").get_attribute("value") == "100"
    assert "1 unsafe" in page.locator("#summary-table").inner_text()
    assert page.locator("#examples a[href^='/review/']").count() == 1
    shot(page, tmp_path, "whatif")

    # the dashboard offers an admin the sweep's recommendation; applying it makes a policy version
    page.goto(f"{asgi_server}/evaluation/?sweep=refund")
    page.wait_for_selector("body[data-charts=ready]")
    page.click("#apply-form button[type=submit]")
    page.wait_for_selector(".flash-success")
    assert "is live as policy_version" in page.locator(".flash-success").inner_text()

    assert page.evaluate("window.__csp") == []
    assert problems == []


def test_the_progress_page_follows_a_running_replay_until_it_is_done(
    asgi_server: str, people: dict[str, Any], chromium: Any
) -> None:
    def orm(call: Any) -> Any:
        # Django refuses the ORM in a thread where Playwright's event loop runs: use another one.
        out: list[Any] = []
        worker = threading.Thread(target=lambda: out.append(call()))
        worker.start()
        worker.join()
        return out[0]

    def advance(processed: int, state: str, result: Any = None) -> None:
        orm(lambda: WhatIfRun.objects.filter(pk=run.pk).update(processed=processed, state=state, result=result))

    run = orm(lambda: WhatIfRun.objects.create(document=TEST_POLICY, state="running", total=4, processed=1))
    problems: list[str] = []
    page = open_as(chromium, asgi_server, "root", f"/evaluation/whatif/{run.pk}/", problems)
    assert page.locator("#progress").get_attribute("value") == "25"

    advance(3, WhatIfRun.State.RUNNING)
    page.wait_for_selector("#progress[value='75']", timeout=15000)
    assert page.locator("#progress-text").inner_text() == "3 of 4 labelled actions replayed"
    advance(4, WhatIfRun.State.DONE, {"summary": whatif.whatif_summary({"refund": {}}), "examples": []})
    page.wait_for_selector("#summary-table", timeout=15000)  # reloaded with the server's tables
    assert page.locator("#run-state").inner_text() == "done"
    assert page.evaluate("window.__csp") == []
    assert problems == []


@pytest.fixture
def shadowed_people(asgi_server: str) -> dict[str, Any]:
    """Labelled refunds evaluated with a shadow policy beside the live one, made before the browser
    starts."""
    reviewer = ReviewerFactory(username="rita")
    return {"reviewer": reviewer, "actions": make_shadowed(reviewer)}


def test_the_shadow_panel_shows_its_figures_and_links_without_errors(
    asgi_server: str, shadowed_people: dict[str, Any], tmp_path: Path
) -> None:
    from playwright.sync_api import sync_playwright

    problems: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        page = open_as(browser, asgi_server, "rita", "/evaluation/?window=all", problems)
        page.wait_for_selector("body[data-charts=ready]", timeout=15000)

        panel = page.locator("#shadow")
        assert panel.locator("h2").inner_text().startswith("Shadow policy v1")
        assert page.locator("#shadow-agreement").inner_text() == "62.5%"
        assert page.locator("#shadow-unsafe").inner_text() == "2"
        assert panel.locator("#shadow-unsafe-list a[href^='/review/']").count() == 2
        folder = Path(os.environ.get("GATE_SCREENSHOTS") or tmp_path)
        panel.screenshot(path=str(folder / "shadow.png"))
        # a listed action opens on the review page
        panel.locator("#shadow-unsafe-list a").first.click()
        page.wait_for_url(re.compile(r".*/review/[0-9a-f-]{36}$"))

        assert page.evaluate("window.__csp") == []
        assert problems == []
        browser.close()
