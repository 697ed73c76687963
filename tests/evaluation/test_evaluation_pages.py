"""The evaluation dashboard and the what-if pages, server side: access, the figures as rendered,
applying a recommendation, starting and finishing a what-if run, and their admin pages."""

from __future__ import annotations

import copy
import html as html_lib
import json
import re
from typing import Any

import pytest
import yaml
from django.contrib.auth.models import User
from django.test import Client

from approvals.evaluation import stats
from approvals.gate.policies import policies_import
from approvals.gate.services import action_evaluate, action_propose, request_fingerprint
from approvals.models import ActionType, Agent, PolicyVersion, ProposedAction, RememberedApproval, WhatIfRun
from approvals.review.services import action_decide, label_create
from tests.conftest import LOOKED_UP, TEST_POLICY
from tests.factories import AgentFactory, ReviewerFactory, UserFactory

pytestmark = pytest.mark.django_db


def _propose(
    agent: Agent, params: dict[str, Any], *, trajectory: Any = LOOKED_UP, context: dict[str, Any] | None = None
) -> ProposedAction:
    body = {"action_type": "refund", "params": params, "trajectory": trajectory, "context": context}
    action, _ = action_propose(
        agent=agent,
        action_type=ActionType.objects.get(name="refund"),
        params=params,
        fingerprint=request_fingerprint(body),
        trajectory_raw=trajectory,
        context=context,
    )
    action_evaluate(action_id=str(action.id))
    action.refresh_from_db()
    return action


@pytest.fixture
def reviewer_user() -> User:
    return ReviewerFactory(username="rita")


@pytest.fixture
def admin_user() -> User:
    return UserFactory(username="root", is_staff=True, is_superuser=True)


@pytest.fixture
def reviewer_browser(reviewer_user: User) -> Client:
    client = Client()
    client.force_login(reviewer_user)
    return client


@pytest.fixture
def admin_browser(admin_user: User) -> Client:
    client = Client()
    client.force_login(admin_user)
    return client


@pytest.fixture
def history(reviewer_user: User) -> dict[str, ProposedAction]:
    return make_history(reviewer_user)


def make_history(reviewer_user: User) -> dict[str, ProposedAction]:
    """Labelled refunds under TEST_POLICY (base risk 0.1, auto up to 0.3 and 100 of amount), and an
    agent that keeps proposing the same refund."""
    policies_import(document=TEST_POLICY, actor="test")
    agent = AgentFactory(name="support-bot")
    actions = {
        "auto_safe": _propose(agent, {"order_id": "A-1", "amount": 20}),
        "auto_unsafe": _propose(agent, {"order_id": "A-1", "amount": 30}),
        "big_safe": _propose(agent, {"order_id": "A-1", "amount": 500}),
        "unlooked_unsafe": _propose(agent, {"order_id": "A-7", "amount": 10}, trajectory=[]),
        "blocked": _propose(agent, {"order_id": "A-1", "amount": "all"}),
    }
    assert [a.status for a in actions.values()] == [
        "auto_approved",
        "auto_approved",
        "needs_review",
        "needs_review",
        "blocked",
    ]
    # both auto-approvals were drawn for the audit sample, and labelled
    audited = [actions["auto_safe"].pk, actions["auto_unsafe"].pk]
    ProposedAction.objects.filter(pk__in=audited).update(audit_flagged=True)
    label_create(action=actions["auto_safe"], author=reviewer_user, label="safe")
    label_create(action=actions["auto_unsafe"], author=reviewer_user, label="unsafe")
    action_decide(action_id=str(actions["big_safe"].id), user=reviewer_user, verdict="approve")
    action_decide(action_id=str(actions["unlooked_unsafe"].id), user=reviewer_user, verdict="reject")
    looper = AgentFactory(name="looper")
    for _ in range(5):
        _propose(looper, {"order_id": "B-9", "amount": 150})
    return actions


def scripts_and_styles_are_external(html: str) -> None:
    """The CSP allows no inline script or style: every script has a src or is JSON data."""
    for tag in re.findall(r"<script\b[^>]*>", html):
        assert "src=" in tag or 'type="application/json"' in tag, tag
    assert "<style" not in html
    assert " style=" not in html


# --- access ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("url", ["/evaluation/", "/evaluation/whatif/", "/evaluation/whatif/1/"])
def test_anonymous_is_sent_to_log_in(url: str) -> None:
    response = Client().get(url)
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")


def test_a_user_who_is_not_a_reviewer_gets_403() -> None:
    outsider = Client()
    outsider.force_login(UserFactory())
    assert outsider.get("/evaluation/").status_code == 403
    assert outsider.get("/evaluation/whatif/").status_code == 403


def test_reviewers_may_not_run_what_ifs_or_apply_thresholds(reviewer_browser: Client, history: Any) -> None:
    assert reviewer_browser.get("/evaluation/whatif/").status_code == 403
    before = PolicyVersion.objects.count()
    response = reviewer_browser.post(
        "/evaluation/apply", {"action_type": "refund", "auto_approve_max_risk": "0.9", "max_auto_amount": "1000"}
    )
    assert response.status_code == 403
    assert PolicyVersion.objects.count() == before
    assert ActionType.objects.get(name="refund").auto_approve_max_risk == 0.3


# --- the dashboard --------------------------------------------------------------------------------


def test_dashboard_renders_the_figures_for_a_reviewer(reviewer_browser: Client, history: Any) -> None:
    response = reviewer_browser.get("/evaluation/?window=all")

    assert response.status_code == 200
    html = response.content.decode()
    # headline cards: 10 proposals, 2 auto-approved of 10 decided, 1 of them unsafe
    assert re.search(r'id="stat-total">10<', html)
    assert re.search(r'id="stat-automation">20\.0%<', html)
    assert re.search(r'id="stat-unsafe">1<', html)
    assert re.search(r'id="stat-held">70\.0%<', html)  # 7 of 10: two reviewed, the rest still waiting
    assert re.search(r'id="stat-blocked">10\.0%<', html)
    # one unsafe in two audited: 1 - 0.05 ** (1 / 2) = 97.5% at most
    assert re.search(r'id="stat-bound">≤ 97\.5%<', html)
    assert f"{stats.BOUND} upper bound from 2 audited, 1 unsafe" in html
    # the per-type table, the agents (looper flagged at a glance), the sweep and rule health
    assert 'id="per-type"' in html
    assert ">refund<" in html
    assert re.search(r'<tr class="busy" data-agent="looper">', html)
    assert "repeat an identical one" in html
    assert 'data-agent="support-bot"' in html
    assert 'id="sweep-table"' in html
    assert "recommended" in html
    assert 'id="recommendation-bound"' in html
    assert "order_was_looked_up" in html
    # exports, and no apply button for a reviewer
    assert "/api/v1/evaluation/export.jsonl" in html
    assert "/api/v1/evaluation/export.csv" in html
    assert "Apply recommendation" not in html
    # the charts' data is embedded as JSON, and nothing inline is executed
    charts = json.loads(re.search(r'<script id="evaluation-charts" type="application/json">(.*?)</script>', html)[1])
    assert sum(charts["days"]["auto_approved"]) == 2
    assert sum(charts["days"]["blocked"]) == 1
    assert charts["sweep"]["recommended"] is not None
    assert "order_was_looked_up" in charts["rules"]["labels"]
    scripts_and_styles_are_external(html)
    assert "script-src 'self'" in response["Content-Security-Policy"]


def test_dashboard_filters_by_window_type_and_agent(reviewer_browser: Client, history: Any) -> None:
    ProposedAction.objects.filter(agent__name="looper").update(created_at="2020-01-01T00:00:00Z")

    recent = reviewer_browser.get("/evaluation/?window=24h").content.decode()
    by_agent = reviewer_browser.get("/evaluation/?window=all&agent=looper").content.decode()
    unknown = reviewer_browser.get("/evaluation/?window=nonsense&action_type=nope").content.decode()

    assert re.search(r'id="stat-total">5<', recent)
    assert 'data-agent="looper"' not in recent
    assert re.search(r'id="stat-total">5<', by_agent)
    assert 'data-agent="support-bot"' not in by_agent
    assert re.search(r'id="stat-total">0<', unknown)  # an unknown type matches nothing
    assert "Nothing was proposed in this window." in unknown


def test_the_export_links_download_for_a_logged_in_reviewer(reviewer_browser: Client, history: Any) -> None:
    html = reviewer_browser.get("/evaluation/?window=7d&action_type=refund").content.decode()
    links = re.findall(r'href="(/api/v1/evaluation/export\.(?:jsonl|csv)[^"]*)"', html)
    assert len(links) == 2

    jsonl, csv = (reviewer_browser.get(link.replace("&amp;", "&")) for link in links)

    assert jsonl.status_code == csv.status_code == 200
    lines = b"".join(jsonl.streaming_content).decode().splitlines()
    assert len(lines) == 4  # the four refunds with ground truth
    assert b"".join(csv.streaming_content).decode().startswith("id,action_type")


def test_dashboard_without_any_data_still_renders(reviewer_browser: Client) -> None:
    response = reviewer_browser.get("/evaluation/")
    assert response.status_code == 200
    assert b"No action type to sweep." in response.content


# --- applying a recommendation --------------------------------------------------------------------


def test_an_admin_applies_the_recommendation_as_a_new_policy_version(admin_browser: Client, history: Any) -> None:
    page = admin_browser.get("/evaluation/?sweep=refund").content.decode()
    form = re.search(r'<form method="post" action="/evaluation/apply" id="apply-form">(.*?)</form>', page, re.S)
    assert form is not None
    values = dict(re.findall(r'name="(\w+)" value="([^"]*)"', form[1]))
    assert values["action_type"] == "refund"
    before = PolicyVersion.objects.order_by("-number").first()
    assert before is not None

    response = admin_browser.post("/evaluation/apply", values, follow=True)

    refund = ActionType.objects.get(name="refund")
    latest = PolicyVersion.objects.order_by("-number").first()
    assert latest is not None
    assert latest.number == before.number + 1
    assert latest.source == "recommendation"
    assert refund.policy_version == latest.number
    assert refund.auto_approve_max_risk == float(values["auto_approve_max_risk"])
    assert refund.max_auto_amount == float(values["max_auto_amount"])
    assert response.redirect_chain[-1][0].startswith("/evaluation/?sweep=refund")
    assert f"policy_version {latest.number}" in response.content.decode()


def test_apply_refuses_bad_values_and_needs_csrf(admin_user: User, admin_browser: Client, history: Any) -> None:
    before = PolicyVersion.objects.count()
    response = admin_browser.post(
        "/evaluation/apply", {"action_type": "refund", "auto_approve_max_risk": "lots"}, follow=True
    )
    assert "Nothing applied" in response.content.decode()
    unknown = admin_browser.post("/evaluation/apply", {"action_type": "nope", "auto_approve_max_risk": "0.2"})
    assert unknown.status_code == 404
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(admin_user)
    forged = strict.post("/evaluation/apply", {"action_type": "refund", "auto_approve_max_risk": "0.2"})
    assert forged.status_code == 403
    assert admin_browser.get("/evaluation/apply").status_code == 405
    assert PolicyVersion.objects.count() == before


# --- what-if --------------------------------------------------------------------------------------


def test_what_if_form_is_prefilled_with_the_current_policy(admin_browser: Client, history: Any) -> None:
    response = admin_browser.get("/evaluation/whatif/")
    assert response.status_code == 200
    textarea = re.search(r'<textarea name="document"[^>]*>(.*?)</textarea>', response.content.decode(), re.S)
    assert textarea is not None
    document = yaml.safe_load(html_lib.unescape(textarea[1]))
    assert [t["name"] for t in document["action_types"]] == ["delete_account", "escalate_ticket", "refund"]


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("version: 1\naction_types:\n  - name: refund\n    mode: sometimes\n", "mode"),
        ("version: 1\naction_types: [{name: refund, rules: [{name: r, require: 'params.amount <'}]}]", "require"),
        ("{not yaml: [", "Not YAML or JSON"),
    ],
)
def test_an_invalid_what_if_document_shows_its_problems_and_stores_nothing(
    admin_browser: Client, history: Any, text: str, problem: str
) -> None:
    response = admin_browser.post("/evaluation/whatif/", {"document": text})

    assert response.status_code == 400
    html = response.content.decode()
    assert 'id="policy-errors"' in html
    assert problem in html
    assert WhatIfRun.objects.count() == 0


def test_a_what_if_runs_to_the_end_and_shows_its_summary(
    admin_browser: Client, history: Any, django_capture_on_commit_callbacks: Any
) -> None:
    # given: the current refund policy without its rule, as JSON (YAML's superset)
    refund = copy.deepcopy(TEST_POLICY["action_types"][0])
    refund["rules"] = []
    text = json.dumps({"version": 1, "action_types": [refund]})

    # when: started (Celery runs eagerly in these tests, when the request's transaction commits)
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_browser.post("/evaluation/whatif/", {"document": text})

    # then
    run = WhatIfRun.objects.get()
    assert response.status_code == 302
    assert response["Location"] == f"/evaluation/whatif/{run.pk}/"
    assert run.state == "done"
    status = admin_browser.get(f"/evaluation/whatif/{run.pk}.json").json()
    assert status["state"] == "done"
    assert status["progress"] == 1.0
    assert (status["processed"], status["total"]) == (run.total, run.total)
    assert status["result"]["summary"]["overall"]["newly_auto_approved"] == {"unsafe": 1}
    page = admin_browser.get(f"/evaluation/whatif/{run.pk}/").content.decode()
    assert 'id="summary-table"' in page
    assert "1 unsafe" in page  # newly auto-approved, by label
    assert re.search(r"<td>1 → 2</td>", page) or "1 → 2" in page  # unsafe auto-approved before → after
    assert f'href="/review/{history["unlooked_unsafe"].id}"' in page
    assert '<progress id="progress" max="100" value="100">' in page
    scripts_and_styles_are_external(page)


def test_a_queued_run_shows_progress_and_its_json(admin_browser: Client, history: Any) -> None:
    run = WhatIfRun.objects.create(document=TEST_POLICY, total=10, processed=4, state=WhatIfRun.State.RUNNING)

    page = admin_browser.get(f"/evaluation/whatif/{run.pk}/").content.decode()
    status = admin_browser.get(f"/evaluation/whatif/{run.pk}.json").json()

    assert '<progress id="progress" max="100" value="40">' in page
    assert f'data-status-url="/evaluation/whatif/{run.pk}.json"' in page
    assert 'id="summary-table"' not in page
    assert status == {"state": "running", "processed": 4, "total": 10, "progress": 0.4, "error": "", "result": None}
    assert admin_browser.get("/evaluation/whatif/999999.json").status_code == 404


# --- admin ----------------------------------------------------------------------------------------


def test_admin_lists_runs_links_types_to_their_sweep_and_revokes_remembered_approvals(
    admin_user: User, admin_browser: Client, reviewer_user: User, history: Any
) -> None:
    run = WhatIfRun.objects.create(document=TEST_POLICY, total=4, processed=1)
    refund = ActionType.objects.get(name="refund")
    source = _propose(
        Agent.objects.get(name="support-bot"), {"order_id": "C-1", "amount": 400}, context={"session_id": "s-1"}
    )
    action_decide(action_id=str(source.id), user=reviewer_user, verdict="approve", remember_minutes=30)
    remembered = RememberedApproval.objects.get()

    runs = admin_browser.get("/admin/approvals/whatifrun/").content.decode()
    change = admin_browser.get(f"/admin/approvals/actiontype/{refund.pk}/change/").content.decode()
    response = admin_browser.post(
        "/admin/approvals/rememberedapproval/",
        {"action": "revoke", "_selected_action": [remembered.pk]},
        follow=True,
    )

    assert f"/evaluation/whatif/{run.pk}/" in runs
    assert "1 / 4" in runs
    assert "/evaluation/?sweep=refund" in change
    assert "Revoked 1 remembered approval" in response.content.decode()
    remembered.refresh_from_db()
    assert remembered.revoked_at is not None
    assert remembered.revoked_by == admin_user
