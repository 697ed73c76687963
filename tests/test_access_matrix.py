"""Who may call what: anonymous / agent / other agent / reviewer / admin x every URL of the gate.

The URL patterns are read from the resolver; a pattern that no row of the matrix covers fails
``test_every_url_pattern_is_in_the_matrix``, so that a new endpoint cannot ship untested. The admin's
model pages are generated from the admin registry, with what each ModelAdmin allows a superuser.

Rules the matrix holds: anonymous API calls get 401 and browser pages send to log in; an agent token
opens only the agent API (browser pages and the admin treat it as anonymous); an agent never sees
another's action (404) and never decides (403); reviewers review but never change policies; only
admins do.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from django.contrib import admin
from django.contrib.auth.models import User
from django.contrib.contenttypes.models import ContentType
from django.db.models import Model
from django.test import Client, RequestFactory
from django.urls import URLPattern, URLResolver, get_resolver
from django.utils import timezone
from rest_framework.authtoken.models import Token

from approvals.gate.policies import policies_import
from approvals.models import (
    ActionType,
    Agent,
    LabelValue,
    Notification,
    ProposedAction,
    RememberedApproval,
    ShadowPolicy,
    Status,
    WebhookDelivery,
    WhatIfRun,
)
from approvals.review.services import label_create
from tests.conftest import TEST_POLICY
from tests.factories import AgentFactory, ProposedActionFactory, reviewers_group
from tests.test_admin import form as action_type_form

ANON, AGENT, OTHER, REVIEWER, ADMIN = "anonymous", "agent", "other agent", "reviewer", "admin"
PRINCIPALS = (ANON, AGENT, OTHER, REVIEWER, ADMIN)

LOGIN = "/accounts/login/"
ADMIN_LOGIN = "/admin/login/"


@dataclass(frozen=True)
class Expect:
    """A status, and for a redirect where it must go (a prefix of Location)."""

    status: int
    to: str | None = None
    # another status that is as right (readiness: 503 while no worker beats)
    also: int | None = None


def login(status: int = 302) -> Expect:
    return Expect(status, LOGIN)


def admin_login() -> Expect:
    return Expect(302, ADMIN_LOGIN)


def api(anon: int, agent: int, other: int, reviewer: int, admin_: int) -> dict[str, Expect]:
    return {
        ANON: Expect(anon),
        AGENT: Expect(agent),
        OTHER: Expect(other),
        REVIEWER: Expect(reviewer),
        ADMIN: Expect(admin_),
    }


# The JSON API: anonymous 401; agent-only, reviewer-only and admin-only endpoints.
AGENT_ONLY_OWN = api(401, 200, 404, 403, 403)
REVIEWER_ONLY = api(401, 403, 403, 200, 200)
# Browser pages: Bearer tokens are no session, so agents are sent to log in like anyone anonymous.
REVIEWER_PAGE = {ANON: login(), AGENT: login(), OTHER: login(), REVIEWER: Expect(200), ADMIN: Expect(200)}
ADMIN_PAGE = {ANON: login(), AGENT: login(), OTHER: login(), REVIEWER: Expect(403), ADMIN: Expect(200)}


@dataclass
class World:
    """What the cells act on: an agent's actions in each state, another agent, a reviewer, an admin."""

    agent: Agent
    other: Agent
    reviewer: User
    admin: User

    def action(self, status: str = Status.NEEDS_REVIEW) -> ProposedAction:
        return ProposedActionFactory(
            agent=self.agent,
            action_type=ActionType.objects.get(name="refund"),
            params={"order_id": "A-1", "amount": 500},
            status=status,
        )

    def remembered(self) -> RememberedApproval:
        source = self.action(Status.APPROVED)
        return RememberedApproval.objects.create(
            source_action=source,
            agent=self.agent,
            action_type=source.action_type,
            session_id="s-1",
            reviewer=self.reviewer,
            expires_at=timezone.now() + timedelta(hours=1),
        )

    def shadow(self) -> ShadowPolicy:
        """The active shadow policy (the figures are 404 without one)."""
        return ShadowPolicy.objects.filter(active=True).first() or ShadowPolicy.objects.create(
            version=1, document=TEST_POLICY, created_by="test"
        )

    def whatif(self) -> WhatIfRun:
        return WhatIfRun.objects.create(document=TEST_POLICY, state=WhatIfRun.State.DONE, created_by=self.admin)


@dataclass(frozen=True)
class Cell:
    """One request, made afresh for each principal (``path`` builds what it acts on each time)."""

    pattern: str
    method: str
    path: Callable[[World], str]
    expect: dict[str, Expect]
    data: dict[str, Any] | Callable[[World], dict[str, Any]] | None = None
    json: bool = True


def held(w: World) -> str:
    return str(w.action().pk)


def shadow_figures(w: World) -> str:
    w.shadow()
    return "/api/v1/evaluation/shadow"


CELLS: list[Cell] = [
    Cell("", "GET", lambda w: "/", {p: Expect(302, "/review/") for p in PRINCIPALS}),
    # --- sign-in pages: open to everyone -----------------------------------------------------------
    Cell("accounts/login/", "GET", lambda w: LOGIN, {p: Expect(200) for p in PRINCIPALS}),
    Cell("accounts/logout/", "POST", lambda w: "/accounts/logout/", {p: Expect(302, LOGIN) for p in PRINCIPALS}),
    Cell("api/schema", "GET", lambda w: "/api/schema", {p: Expect(200) for p in PRINCIPALS}),
    # --- agent API -----------------------------------------------------------------------------------
    Cell(
        "api/v1/actions",
        "POST",
        lambda w: "/api/v1/actions",
        api(401, 201, 201, 403, 403),
        data={"action_type": "escalate_ticket", "params": {}},
    ),
    Cell(
        "api/v1/actions/<uuid:action_id>", "GET", lambda w: f"/api/v1/actions/{held(w)}", api(401, 200, 404, 200, 200)
    ),
    Cell(
        "api/v1/actions/<uuid:action_id>/cancel", "POST", lambda w: f"/api/v1/actions/{held(w)}/cancel", AGENT_ONLY_OWN
    ),
    Cell(
        "api/v1/actions/<uuid:action_id>/outcome",
        "POST",
        lambda w: f"/api/v1/actions/{w.action(Status.APPROVED).pk}/outcome",
        AGENT_ONLY_OWN,
        data={"executed": True},
    ),
    # --- reviewer API: agents can never decide or label --------------------------------------------
    Cell(
        "api/v1/actions/<uuid:action_id>/decision",
        "POST",
        lambda w: f"/api/v1/actions/{held(w)}/decision",
        REVIEWER_ONLY,
        data={"verdict": "approve"},
    ),
    Cell("api/v1/actions/<uuid:action_id>/labels", "GET", lambda w: f"/api/v1/actions/{held(w)}/labels", REVIEWER_ONLY),
    Cell(
        "api/v1/actions/<uuid:action_id>/labels",
        "POST",
        lambda w: f"/api/v1/actions/{held(w)}/labels",
        api(401, 403, 403, 201, 201),
        data={"label": LabelValue.SAFE},
    ),
    Cell("api/v1/remembered-approvals", "GET", lambda w: "/api/v1/remembered-approvals", REVIEWER_ONLY),
    Cell(
        "api/v1/remembered-approvals/<int:remembered_id>/revoke",
        "POST",
        lambda w: f"/api/v1/remembered-approvals/{w.remembered().pk}/revoke",
        REVIEWER_ONLY,
    ),
    Cell("api/v1/review/queue", "GET", lambda w: "/api/v1/review/queue", REVIEWER_ONLY),
    Cell("api/v1/evaluation/summary", "GET", lambda w: "/api/v1/evaluation/summary", REVIEWER_ONLY),
    Cell("api/v1/evaluation/figures", "GET", lambda w: "/api/v1/evaluation/figures", REVIEWER_ONLY),
    Cell("api/v1/evaluation/agents", "GET", lambda w: "/api/v1/evaluation/agents", REVIEWER_ONLY),
    Cell("api/v1/evaluation/sweep", "GET", lambda w: "/api/v1/evaluation/sweep?action_type=refund", REVIEWER_ONLY),
    Cell("api/v1/evaluation/rules", "GET", lambda w: "/api/v1/evaluation/rules?action_type=refund", REVIEWER_ONLY),
    Cell("api/v1/evaluation/export.jsonl", "GET", lambda w: "/api/v1/evaluation/export.jsonl", REVIEWER_ONLY),
    Cell("api/v1/evaluation/export.csv", "GET", lambda w: "/api/v1/evaluation/export.csv", REVIEWER_ONLY),
    Cell("api/v1/evaluation/shadow", "GET", shadow_figures, REVIEWER_ONLY),
    # --- a policy change through the API: admins only ----------------------------------------------
    Cell(
        "api/v1/evaluation/sweep/apply",
        "POST",
        lambda w: "/api/v1/evaluation/sweep/apply",
        api(401, 403, 403, 403, 200),
        data={"action_type": "refund", "auto_approve_max_risk": 0.4},
    ),
    # --- reviewer pages ------------------------------------------------------------------------------
    Cell("review/", "GET", lambda w: "/review/", REVIEWER_PAGE),
    Cell("review/<uuid:action_id>", "GET", lambda w: f"/review/{held(w)}", REVIEWER_PAGE),
    Cell("review/<uuid:action_id>/row", "GET", lambda w: f"/review/{held(w)}/row", REVIEWER_PAGE),
    Cell(
        "review/<uuid:action_id>/decide",
        "POST",
        lambda w: f"/review/{held(w)}/decide",
        {**REVIEWER_PAGE, REVIEWER: Expect(302, "/review/"), ADMIN: Expect(302, "/review/")},
        data={"verdict": "approve", "reason": "ok"},
        json=False,
    ),
    Cell("review/<uuid:action_id>/claim", "POST", lambda w: f"/review/{held(w)}/claim", REVIEWER_PAGE, json=False),
    Cell(
        "review/<uuid:action_id>/label",
        "POST",
        lambda w: f"/review/{held(w)}/label",
        {**REVIEWER_PAGE, REVIEWER: Expect(302, "/review/"), ADMIN: Expect(302, "/review/")},
        data={"label": "safe"},
        json=False,
    ),
    # --- evaluation pages: figures for reviewers, policy changes and what-ifs for admins -----------
    Cell("evaluation/", "GET", lambda w: "/evaluation/", REVIEWER_PAGE),
    Cell(
        "evaluation/apply",
        "POST",
        lambda w: "/evaluation/apply",
        {**ADMIN_PAGE, ADMIN: Expect(302, "/evaluation/")},
        data={"action_type": "refund", "auto_approve_max_risk": "0.4"},
        json=False,
    ),
    Cell("evaluation/whatif/", "GET", lambda w: "/evaluation/whatif/", ADMIN_PAGE),
    Cell("evaluation/whatif/<int:run_id>/", "GET", lambda w: f"/evaluation/whatif/{w.whatif().pk}/", ADMIN_PAGE),
    Cell(
        "evaluation/whatif/<int:run_id>.json", "GET", lambda w: f"/evaluation/whatif/{w.whatif().pk}.json", ADMIN_PAGE
    ),
    # --- operations: probes and metrics open (a kubelet, Prometheus), the ops page staff only ------
    Cell("healthz", "GET", lambda w: "/healthz", {p: Expect(200) for p in PRINCIPALS}),
    Cell("readyz", "GET", lambda w: "/readyz", {p: Expect(200, also=503) for p in PRINCIPALS}),
    # open unless GATE_METRICS_TOKEN is set (unset in the tests); it holds counts, never a payload
    Cell("metrics", "GET", lambda w: "/metrics", {p: Expect(200) for p in PRINCIPALS}),
    # --- Slack's requests: signed by Slack, whoever sends them (no signing secret here: all refused) --
    Cell(
        "integrations/slack/interactions",
        "POST",
        lambda w: "/integrations/slack/interactions",
        {p: Expect(401) for p in PRINCIPALS},
    ),
    Cell("ops/", "GET", lambda w: "/ops/", ADMIN_PAGE),
    Cell("ops/data", "GET", lambda w: "/ops/data", ADMIN_PAGE),
    # --- the admin site: staff only; Bearer tokens and non-staff reviewers are sent to its login -----
    Cell("admin/", "GET", lambda w: "/admin/", {**{p: admin_login() for p in PRINCIPALS}, ADMIN: Expect(200)}),
    Cell(
        "admin/login/",
        "GET",
        lambda w: ADMIN_LOGIN,
        {**{p: Expect(200) for p in PRINCIPALS}, ADMIN: Expect(302, "/admin/")},
    ),
    Cell(
        "admin/logout/",
        "POST",
        lambda w: "/admin/logout/",
        {**{p: Expect(302, "/admin/") for p in PRINCIPALS}, ADMIN: Expect(302, LOGIN)},
        json=False,
    ),
    Cell(
        "admin/password_change/",
        "GET",
        lambda w: "/admin/password_change/",
        {**{p: admin_login() for p in PRINCIPALS}, ADMIN: Expect(200)},
    ),
    Cell(
        "admin/password_change/done/",
        "GET",
        lambda w: "/admin/password_change/done/",
        {**{p: admin_login() for p in PRINCIPALS}, ADMIN: Expect(200)},
    ),
    Cell(
        "admin/autocomplete/",
        "GET",
        lambda w: "/admin/autocomplete/?app_label=approvals&model_name=agent&field_name=agent",
        {**{p: admin_login() for p in PRINCIPALS}, ADMIN: Expect(403)},  # no autocomplete field is declared
    ),
    Cell(
        "admin/jsi18n/",
        "GET",
        lambda w: "/admin/jsi18n/",
        {**{p: admin_login() for p in PRINCIPALS}, ADMIN: Expect(200)},
    ),
    Cell(
        "admin/r/<path:content_type_id>/<path:object_id>/",
        "GET",
        lambda w: f"/admin/r/{ContentType.objects.get_for_model(Agent).pk}/{w.agent.pk}/",
        # nothing of the gate has a "view on site" page
        {**{p: admin_login() for p in PRINCIPALS}, ADMIN: Expect(404)},
    ),
    Cell(
        "admin/^(?P<app_label>auth|authtoken|approvals)/$",
        "GET",
        lambda w: "/admin/approvals/",
        {**{p: admin_login() for p in PRINCIPALS}, ADMIN: Expect(200)},
    ),
    Cell(
        "admin/auth/user/<id>/password/",
        "GET",
        lambda w: f"/admin/auth/user/{w.reviewer.pk}/password/",
        {**{p: admin_login() for p in PRINCIPALS}, ADMIN: Expect(200)},
    ),
    Cell(
        "admin/approvals/policyversion/compare/",
        "GET",
        lambda w: "/admin/approvals/policyversion/compare/",
        {**{p: admin_login() for p in PRINCIPALS}, ADMIN: Expect(200)},
    ),
    Cell(
        "admin/(?P<url>.*)$",
        "GET",
        lambda w: "/admin/no-such-page/",
        {**{p: admin_login() for p in PRINCIPALS}, ADMIN: Expect(404)},
    ),
]


def admin_object(model: type[Model], w: World) -> Model:
    """One instance of each model the admin registers, for its object pages."""
    existing = admin.site._registry[model].get_queryset(RequestFactory().get("/")).first()
    if existing is None:
        raise AssertionError(f"the matrix has no instance of {model._meta.label}; add one to the world fixture")
    return existing


def admin_model_cells() -> list[Cell]:
    """Each registered model's pages: staff only; for the admin, what its ModelAdmin allows."""
    cells = []
    for model, model_admin in admin.site._registry.items():
        base = f"admin/{model._meta.app_label}/{model._meta.model_name}/"
        refused = {p: admin_login() for p in PRINCIPALS}

        def superuser_may(check: str, model_admin: Any = model_admin, model: Any = model) -> Callable[[World], int]:
            def status(w: World) -> int:
                request = RequestFactory().get("/")
                request.user = w.admin
                allowed = getattr(model_admin, check)(
                    request, *([admin_object(model, w)] if check != "has_add_permission" else [])
                )
                return 200 if allowed else 403

            return status

        def obj_path(suffix: str, model: Any = model, base: str = base) -> Callable[[World], str]:
            return lambda w: f"/{base}{admin_object(model, w).pk}/{suffix}"

        for pattern, path, check in (
            (base, lambda w, base=base: f"/{base}", "has_view_or_change_permission"),
            (f"{base}add/", lambda w, base=base: f"/{base}add/", "has_add_permission"),
            (f"{base}<path:object_id>/history/", obj_path("history/"), "has_view_or_change_permission"),
            (f"{base}<path:object_id>/delete/", obj_path("delete/"), "has_delete_permission"),
            (f"{base}<path:object_id>/change/", obj_path("change/"), "has_view_or_change_permission"),
        ):
            cells.append(Cell(pattern, "GET", path, {**refused, ADMIN: Expect(-1)}, json=False))
            ADMIN_CHECKS[(pattern, "GET")] = superuser_may(check)
        # the bare object URL redirects to its change page
        cells.append(
            Cell(
                f"{base}<path:object_id>/",
                "GET",
                obj_path(""),
                {**refused, ADMIN: Expect(302, f"/{base}")},
                json=False,
            )
        )
    return cells


# The admin's expected status on a model page, computed from the ModelAdmin (Expect(-1) above).
ADMIN_CHECKS: dict[tuple[str, str], Callable[[World], int]] = {}
ALL_CELLS = CELLS + admin_model_cells()


def url_patterns() -> set[str]:
    def walk(patterns: list[Any], prefix: str) -> list[str]:
        found = []
        for p in patterns:
            if isinstance(p, URLResolver):
                found += walk(p.url_patterns, prefix + str(p.pattern))
            elif isinstance(p, URLPattern):
                found.append(prefix + str(p.pattern))
        return found

    return set(walk(get_resolver().url_patterns, ""))


def test_every_url_pattern_is_in_the_matrix() -> None:
    covered = {cell.pattern for cell in ALL_CELLS}
    assert url_patterns() - covered == set(), "add these URL patterns to tests/test_access_matrix.py"
    assert covered - url_patterns() == set(), "the matrix names URL patterns that no longer exist"


# --- running the cells ----------------------------------------------------------------------------------


@pytest.fixture
def world(db: None) -> World:
    policies_import(document=TEST_POLICY, actor="test")
    w = World(
        agent=AgentFactory(name="owner-bot"),
        other=AgentFactory(name="other-bot"),
        # no password: the clients log in with force_login, and hashing one costs more than a cell
        reviewer=User.objects.create(username="lead"),
        admin=User.objects.create(username="root", is_staff=True, is_superuser=True),
    )
    w.reviewer.groups.add(reviewers_group())
    # one of everything the admin lists, so that its object pages have something to show
    w.remembered()
    w.whatif()
    label_create(action=w.action(Status.AUTO_APPROVED), author=w.reviewer, label=LabelValue.SAFE)
    Token.objects.create(user=w.reviewer)
    WebhookDelivery.objects.create(action=w.action(), event="action.decided", url="https://a.example/", body="{}")
    Notification.objects.create(action=w.action(), channel=Notification.Channel.EMAIL)
    return w


def client_for(principal: str, w: World) -> Client:
    if principal in (AGENT, OTHER):
        agent = w.agent if principal == AGENT else w.other
        return Client(HTTP_AUTHORIZATION=f"Bearer {agent.token}")  # type: ignore[attr-defined]
    client = Client()
    if principal == REVIEWER:
        client.force_login(w.reviewer)
    elif principal == ADMIN:
        client.force_login(w.admin)
    return client


def call(cell: Cell, principal: str, w: World) -> Any:
    client = client_for(principal, w)
    path = cell.path(w)
    data = cell.data(w) if callable(cell.data) else cell.data
    if cell.method == "GET":
        return client.get(path)
    if cell.json:
        return client.post(path, data or {}, content_type="application/json")
    return client.post(path, data or {})


@pytest.mark.parametrize("cell", ALL_CELLS, ids=lambda c: f"{c.method} /{c.pattern}")
def test_access(cell: Cell, world: World) -> None:
    failures = []
    for principal in PRINCIPALS:
        expected = cell.expect[principal]
        status = expected.status if expected.status != -1 else ADMIN_CHECKS[(cell.pattern, cell.method)](world)
        response = call(cell, principal, world)
        where = response.get("Location", "")
        if response.status_code not in (status, expected.also) or (
            expected.to is not None and not where.startswith(expected.to)
        ):
            failures.append(f"{principal}: {response.status_code} {where} (expected {status} {expected.to or ''})")
        if cell.pattern.startswith("api/") and response.status_code >= 400:
            assert response["Content-Type"].startswith("application/json"), (principal, response.content[:200])
    assert failures == [], failures


# --- what the rules mean, beyond status codes ------------------------------------------------------------


def test_agents_never_see_others_actions(world: World) -> None:
    mine = world.action()
    theirs = ProposedActionFactory(agent=world.other, action_type=mine.action_type, status=Status.NEEDS_REVIEW)
    owner = client_for(AGENT, world)

    assert owner.get(f"/api/v1/actions/{mine.pk}").json()["id"] == str(mine.pk)
    for path in (f"/api/v1/actions/{theirs.pk}", f"/api/v1/actions/{uuid.uuid4()}"):
        response = owner.get(path)
        assert response.status_code == 404  # another's action and a missing one look the same
        assert str(theirs.pk) not in response.content.decode()
    assert owner.post(f"/api/v1/actions/{theirs.pk}/cancel").status_code == 404
    theirs.refresh_from_db()
    assert theirs.status == Status.NEEDS_REVIEW


def test_agents_can_never_decide(world: World) -> None:
    action = world.action()
    for principal in (AGENT, OTHER):
        response = client_for(principal, world).post(
            f"/api/v1/actions/{action.pk}/decision", {"verdict": "approve"}, content_type="application/json"
        )
        assert response.status_code == 403
        # nor through the reviewer pages, where a token is no session
        page = client_for(principal, world).post(f"/review/{action.pk}/decide", {"verdict": "approve"})
        assert page.status_code == 302
        assert page["Location"].startswith(LOGIN)
    action.refresh_from_db()
    assert action.status == Status.NEEDS_REVIEW
    assert not hasattr(action, "decision")


@pytest.mark.parametrize("staff", [False, True], ids=["reviewer", "staff reviewer"])
def test_reviewers_cannot_change_policies(world: World, staff: bool) -> None:
    # given: a reviewer, also marked staff in the second case (staff, yet without policy permissions)
    world.reviewer.is_staff = staff
    world.reviewer.save()
    client = client_for(REVIEWER, world)
    refund = ActionType.objects.get(name="refund")
    version = refund.policy_version
    refused = (403,) if staff else (302,)

    # when: adding a type, changing one (its rules are an inline of this form), applying thresholds
    add = client.post("/admin/approvals/actiontype/add/", action_type_form(name="sneaky"))
    change = client.post(
        f"/admin/approvals/actiontype/{refund.pk}/change/",
        action_type_form(name="refund", auto_approve_max_risk="1", **{"rules-0-require": "true"}),
    )
    delete = client.post(f"/admin/approvals/actiontype/{refund.pk}/delete/", {"post": "yes"})
    apply = client.post("/evaluation/apply", {"action_type": "refund", "auto_approve_max_risk": "1"})
    api_apply = client.post(
        "/api/v1/evaluation/sweep/apply",
        {"action_type": "refund", "auto_approve_max_risk": 1},
        content_type="application/json",
    )

    # then: every one refused, nothing changed
    assert [r.status_code for r in (add, change, delete)] == [refused[0]] * 3
    assert apply.status_code == 403
    assert api_apply.status_code == 403
    refund.refresh_from_db()
    assert refund.policy_version == version
    assert refund.auto_approve_max_risk == 0.3
    assert not ActionType.objects.filter(name="sneaky").exists()


def test_only_admins_change_policies(world: World) -> None:
    client = client_for(ADMIN, world)
    refund = ActionType.objects.get(name="refund")

    response = client.post(
        f"/admin/approvals/actiontype/{refund.pk}/change/", action_type_form(name="refund", auto_approve_max_risk="0.4")
    )

    assert response.status_code == 302, response.content.decode()[:2000]
    refund.refresh_from_db()
    assert refund.auto_approve_max_risk == 0.4
    assert refund.policy_version > 1


def test_open_probes_give_nothing_away(world: World) -> None:
    """/healthz, /readyz and /metrics answer without credentials: no secret in what they say."""
    for path in ("/healthz", "/readyz", "/metrics"):
        for principal in PRINCIPALS:
            response = client_for(principal, world).get(path)
            assert response.status_code in (200, 503), (path, principal, response.status_code)
            body = response.content.decode()
            assert world.agent.token not in body  # type: ignore[attr-defined]
            assert world.agent.webhook_secret not in body
