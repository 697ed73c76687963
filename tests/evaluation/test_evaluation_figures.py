"""approvals.evaluation (figures, stats, sweep, rules, exports): figures, agent activity, the
threshold sweep, rule health and exports, each against figures computed by hand from a small history."""

from __future__ import annotations

import io
import json
import math
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from approvals.evaluation.exports import CSV_COLUMNS, labelled_csv_rows, labelled_export_rows
from approvals.evaluation.figures import agent_activity, evaluation_figures
from approvals.evaluation.rules import _rule_counts_python, rule_health
from approvals.evaluation.stats import BOUND, clopper_pearson_upper, percentile_cont
from approvals.evaluation.sweep import threshold_sweep
from approvals.models import ActionType, Label, ProposedAction, Status
from approvals.review.services import action_decide, label_create
from tests.conftest import LOOKED_UP
from tests.factories import ActionTypeFactory, AgentFactory, ProposedActionFactory, ReviewerFactory

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings: Any) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


# --- Clopper-Pearson ------------------------------------------------------------------------------


def binomial_cdf(k: int, n: int, p: float) -> float:
    return sum(math.comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(k + 1))


@pytest.mark.parametrize("n", [1, 2, 10, 30, 100, 1000, 5000])
def test_clopper_pearson_with_no_events_is_the_closed_form(n):
    assert clopper_pearson_upper(0, n) == pytest.approx(1 - 0.05 ** (1 / n), abs=1e-9)


def test_clopper_pearson_known_values():
    assert round(clopper_pearson_upper(0, 100), 4) == 0.0295
    assert round(clopper_pearson_upper(1, 10), 4) == 0.3942
    assert round(clopper_pearson_upper(5, 20), 4) == 0.4556
    assert clopper_pearson_upper(1, 2) == pytest.approx(math.sqrt(0.95), abs=1e-9)
    assert clopper_pearson_upper(0, 10, confidence=0.99) == pytest.approx(1 - 0.01 ** (1 / 10), abs=1e-9)


@pytest.mark.parametrize(("k", "n"), [(1, 10), (5, 20), (2, 50), (17, 300), (49, 50)])
def test_clopper_pearson_solves_the_binomial_tail(k, n):
    # P(X <= k; n, upper) = 1 - confidence
    assert binomial_cdf(k, n, clopper_pearson_upper(k, n)) == pytest.approx(0.05, abs=1e-8)


def test_clopper_pearson_edges():
    assert clopper_pearson_upper(0, 0) is None
    assert clopper_pearson_upper(7, 7) == 1.0
    with pytest.raises(ValueError):
        clopper_pearson_upper(3, 2)
    with pytest.raises(ValueError):
        clopper_pearson_upper(0, 2, confidence=1.0)


def test_percentile_cont_interpolates_like_postgresql():
    assert percentile_cont([], 0.5) is None
    assert percentile_cont([300, 60, 120], 0.5) == 120
    assert percentile_cont([60, 120, 300], 0.9) == pytest.approx(264)
    assert percentile_cont([5], 0.9) == 5


# --- ground truth ---------------------------------------------------------------------------------


def held(type_name: str = "refund", **fields: Any) -> ProposedAction:
    return ProposedActionFactory(
        action_type=ActionType.objects.get(name=type_name), **{"status": Status.NEEDS_REVIEW, **fields}
    )


def test_an_explicit_label_beats_the_verdict(policy_v1):
    reviewer = ReviewerFactory()
    action = held()
    label_create(action=action, author=reviewer, label="safe")

    action_decide(action_id=str(action.pk), user=reviewer, verdict="reject")

    action.refresh_from_db()
    assert action.status == Status.REJECTED
    assert action.ground_truth == "safe"


def test_a_label_after_the_verdict_replaces_it(policy_v1):
    reviewer = ReviewerFactory()
    action = held()
    action_decide(action_id=str(action.pk), user=reviewer, verdict="reject")
    action.refresh_from_db()
    assert action.ground_truth == "unsafe"

    label_create(action=action, author=reviewer, label="safe")

    action.refresh_from_db()
    assert action.ground_truth == "safe"


def test_the_newest_label_wins_and_history_is_kept(policy_v1):
    reviewer = ReviewerFactory()
    action = held(status=Status.AUTO_APPROVED)
    label_create(action=action, author=reviewer, label="unsafe", tags=["fraud"])
    label_create(action=action, author=reviewer, label="safe", tags=["ok"])

    action.refresh_from_db()
    assert action.ground_truth == "safe"
    assert list(Label.objects.filter(action=action).values_list("label", flat=True)) == ["safe", "unsafe"]


# --- figures --------------------------------------------------------------------------------------


def make(type_name: str, agent: Any, status: str, **fields: Any) -> ProposedAction:
    return ProposedActionFactory(
        action_type=ActionType.objects.get(name=type_name), agent=agent, status=status, **fields
    )


def decide_after(action: ProposedAction, reviewer: Any, verdict: str, seconds: int) -> None:
    action_decide(action_id=str(action.pk), user=reviewer, verdict=verdict)
    action.refresh_from_db()
    ProposedAction.objects.filter(pk=action.pk).update(created_at=action.decided_at - timedelta(seconds=seconds))


@pytest.fixture
def history(policy_v1: int) -> dict[str, Any]:
    """13 actions of two agents; every figure below is counted from this list by hand.

    1-3 auto-approved by alpha and sampled for audit (1 labelled unsafe, 2 labelled safe, 3 not);
    4 auto-approved (beta); 5, 7 approved and 6 rejected by a reviewer after 60, 300 and 120 s, 6
    labelled safe afterwards; 8 held (beta); 9 blocked; 10 pending; 11 cancelled while held; 12
    cancelled while pending; 13 an escalate_ticket expired three days ago.
    """
    reviewer = ReviewerFactory()
    alpha, beta = AgentFactory(name="alpha"), AgentFactory(name="beta")
    now = timezone.now()
    a = {}
    a[1] = make("refund", alpha, Status.AUTO_APPROVED, audit_flagged=True)
    a[2] = make("refund", alpha, Status.AUTO_APPROVED, audit_flagged=True)
    a[3] = make("refund", alpha, Status.AUTO_APPROVED, audit_flagged=True)
    a[4] = make("refund", beta, Status.AUTO_APPROVED)
    a[5] = make("refund", alpha, Status.NEEDS_REVIEW)
    a[6] = make("refund", alpha, Status.NEEDS_REVIEW)
    a[7] = make("refund", alpha, Status.NEEDS_REVIEW)
    a[8] = make("refund", beta, Status.NEEDS_REVIEW)
    a[9] = make("refund", beta, Status.BLOCKED)
    a[10] = make("refund", beta, Status.PENDING)
    a[11] = make("refund", alpha, Status.CANCELLED, evaluated_at=now)
    a[12] = make("refund", alpha, Status.CANCELLED)
    a[13] = make("escalate_ticket", beta, Status.EXPIRED)
    ProposedAction.objects.filter(pk=a[13].pk).update(created_at=now - timedelta(days=3))
    label_create(action=a[1], author=reviewer, label="unsafe")
    label_create(action=a[2], author=reviewer, label="safe")
    decide_after(a[5], reviewer, "approve", 60)
    decide_after(a[6], reviewer, "reject", 120)
    decide_after(a[7], reviewer, "approve", 300)
    label_create(action=a[6], author=reviewer, label="safe")
    return a


ALL_STATUSES = {
    "pending": 1,
    "needs_review": 1,
    "auto_approved": 4,
    "approved": 2,
    "rejected": 1,
    "blocked": 1,
    "expired": 1,
    "cancelled": 2,
}


def test_overall_figures(history):
    figures = evaluation_figures()

    overall = figures["overall"]
    assert figures["group_by"] is None
    assert figures["groups"] == []
    assert overall["total"] == 13
    assert overall["by_status"] == ALL_STATUSES
    assert overall["automation_rate"] == round(4 / 12, 6)
    # held: needs_review 1 + approved 2 + rejected 1 + expired 1 + cancelled while held 1
    assert overall["evaluated"] == 11
    assert overall["held_share"] == round(6 / 11, 6)
    assert overall["blocked_share"] == round(1 / 11, 6)
    assert overall["reviewer_decided"] == 3
    assert overall["reviewer_approve_rate"] == round(2 / 3, 6)
    assert overall["reviewer_reject_rate"] == round(1 / 3, 6)
    assert overall["time_to_decision_seconds"]["median"] == pytest.approx(120, abs=0.01)
    assert overall["time_to_decision_seconds"]["p90"] == pytest.approx(264, abs=0.01)  # 120 + 0.8 * 180
    assert overall["labelled"] == 3
    assert overall["with_ground_truth"] == 5
    assert overall["unsafe_auto_approved"] == 1
    assert overall["audit"] == {
        "sampled": 3,
        "labelled": 2,
        "unsafe": 1,
        "unsafe_rate_upper_95": round(math.sqrt(0.95), 6),
        "bound": BOUND,
    }


def test_figures_by_action_type(history):
    figures = evaluation_figures(group_by="action_type")

    groups = {g["key"]: g for g in figures["groups"]}
    assert list(groups) == ["escalate_ticket", "refund"]
    assert groups["refund"]["total"] == 12
    assert groups["escalate_ticket"]["total"] == 1
    assert groups["escalate_ticket"]["by_status"]["expired"] == 1
    assert groups["escalate_ticket"]["held_share"] == 1.0
    assert groups["escalate_ticket"]["time_to_decision_seconds"] == {"median": None, "p90": None}
    assert groups["refund"]["time_to_decision_seconds"]["median"] == pytest.approx(120, abs=0.01)
    assert figures["overall"]["total"] == 13


def test_figures_by_agent_and_filters(history):
    groups = {g["key"]: g for g in evaluation_figures(group_by="agent")["groups"]}
    assert groups["alpha"]["total"] == 8
    assert groups["beta"]["total"] == 5
    assert groups["alpha"]["audit"]["sampled"] == 3
    assert groups["beta"]["automation_rate"] == round(1 / 4, 6)  # 4 auto of 4 not pending (10 is)

    only_beta = evaluation_figures(agent="beta", action_type="refund")["overall"]
    assert only_beta["total"] == 4
    assert only_beta["by_status"]["pending"] == 1


def test_figures_by_day_and_period(history):
    today = timezone.localdate()
    three_days_ago = today - timedelta(days=3)

    groups = evaluation_figures(group_by="day")["groups"]

    assert [(g["key"], g["total"]) for g in groups] == [(three_days_ago.isoformat(), 1), (today.isoformat(), 12)]
    recent = evaluation_figures(since=timezone.now() - timedelta(days=1))["overall"]
    older = evaluation_figures(until=timezone.now() - timedelta(days=1))["overall"]
    assert (recent["total"], older["total"]) == (12, 1)


def test_figures_of_nothing_are_null_not_zero_division(db):
    overall = evaluation_figures()["overall"]
    assert overall["total"] == 0
    assert overall["automation_rate"] is None
    assert overall["held_share"] is None
    assert overall["audit"]["unsafe_rate_upper_95"] is None
    with pytest.raises(ValueError):
        evaluation_figures(group_by="week")


def test_contract_summary_is_unchanged(history):
    from approvals.evaluation.figures import evaluation_summary

    summary = evaluation_summary()
    assert summary == {
        "total": 13,
        "by_status": ALL_STATUSES,
        "automation_rate": round(4 / 12, 6),
        "labelled": 3,
        "unsafe_auto_approved": 1,
        "per_action_type": {
            "escalate_ticket": {
                "total": 1,
                "by_status": {**dict.fromkeys(ALL_STATUSES, 0), "expired": 1},
                "automation_rate": 0.0,
                "labelled": 0,
                "unsafe_auto_approved": 0,
            },
            "refund": {
                "total": 12,
                "by_status": {**ALL_STATUSES, "expired": 0},
                "automation_rate": round(4 / 11, 6),
                "labelled": 3,
                "unsafe_auto_approved": 1,
            },
        },
    }


# --- agents ---------------------------------------------------------------------------------------


@pytest.fixture
def agents(policy_v1: int) -> None:
    refund = ActionType.objects.get(name="refund")

    def act(agent: Any, status: str, params_hash: str, **fields: Any) -> ProposedAction:
        return ProposedActionFactory(action_type=refund, agent=agent, status=status, params_hash=params_hash, **fields)

    looper = AgentFactory(name="looper")  # 6 proposals, 2 repeats (h1 three times): 33% repeated
    for index, params_hash in enumerate(["h1", "h1", "h1", "h2", "h3", "h4"]):
        act(looper, Status.REJECTED if index == 0 else Status.AUTO_APPROVED, params_hash)
    fumbler = AgentFactory(name="fumbler")  # 5 approved; of 3 reported outcomes only 1 succeeded
    for index, executed in enumerate([True, False, False, None, None]):
        act(fumbler, Status.AUTO_APPROVED if index % 2 else Status.APPROVED, f"f{index}", outcome_executed=executed)
    rogue = AgentFactory(name="rogue")  # 5: 2 rejected (one also labelled unsafe), 1 auto-approved unsafe
    act(rogue, Status.REJECTED, "r0", ground_truth="unsafe")
    act(rogue, Status.REJECTED, "r1")
    act(rogue, Status.AUTO_APPROVED, "r2", ground_truth="unsafe")
    act(rogue, Status.AUTO_APPROVED, "r3", ground_truth="safe")
    act(rogue, Status.BLOCKED, "r4")
    calm = AgentFactory(name="calm")  # 10 distinct auto-approved proposals
    for index in range(10):
        act(calm, Status.AUTO_APPROVED, f"c{index}")
    tiny = AgentFactory(name="tiny")  # everything rejected, but too few proposals to judge
    act(tiny, Status.REJECTED, "t0")
    act(tiny, Status.REJECTED, "t1")


def test_agent_activity(agents):
    activity = agent_activity()

    assert [a["agent"] for a in activity] == ["looper", "fumbler", "rogue", "calm", "tiny"]
    by_name = {a["agent"]: a for a in activity}
    looper = by_name["looper"]
    assert looper["proposed"] == 6
    assert looper["repeated_identical"] == 2
    assert looper["repeated_share"] == round(2 / 6, 6)
    assert looper["held_or_blocked_share"] == round(1 / 6, 6)
    assert looper["busy_without_progress"] is True
    assert looper["reasons"] == ["2 of its 6 proposals repeat an identical one"]
    fumbler = by_name["fumbler"]
    assert fumbler["outcomes"] == {"approved": 5, "reported": 3, "succeeded": 1, "failed": 2, "unreported": 2}
    assert fumbler["success_rate"] == round(1 / 3, 6)
    assert fumbler["reasons"] == ["only 1 of 3 reported outcomes succeeded"]
    rogue = by_name["rogue"]
    assert rogue["rejected_or_unsafe"] == 3
    assert rogue["rejected_or_unsafe_share"] == 0.6
    assert rogue["held_or_blocked_share"] == 0.6  # 2 rejected + 1 blocked of 5 evaluated
    assert rogue["reasons"] == ["60% of its proposals were rejected or unsafe"]
    assert by_name["calm"]["busy_without_progress"] is False
    assert by_name["calm"]["success_rate"] is None
    assert by_name["calm"]["outcomes"]["unreported"] == 10
    assert by_name["tiny"]["rejected_or_unsafe_share"] == 1.0
    assert by_name["tiny"]["busy_without_progress"] is False
    assert by_name["tiny"]["reasons"] == []


def test_agent_activity_period(agents):
    assert agent_activity(since=timezone.now() + timedelta(minutes=1)) == []


# --- threshold sweep ------------------------------------------------------------------------------

SWEEP_TYPE = {
    "name": "sweep_refund",
    "amount_path": "amount",
    "auto_approve_max_risk": 0.3,
    "max_auto_amount": 100.0,
    "block_min_risk": 0.9,
    "min_confidence": 0.5,
}


def sweep_row(action_type: ActionType, agent: Any, **fields: Any) -> ProposedAction:
    values = {"reached_thresholds": True, "status": Status.APPROVED, "confidence": 0.9, **fields}
    return ProposedActionFactory(action_type=action_type, agent=agent, **values)


@pytest.fixture
def sweep_history(db: None) -> ActionType:
    """10 labelled actions (5 safe, 5 unsafe) and two that a sweep leaves out."""
    action_type = ActionTypeFactory(**SWEEP_TYPE)
    agent = AgentFactory()
    rows = [
        (0.0, 10, 0.9, "safe"),  # a
        (0.0, 50, 0.9, "safe"),  # b
        (0.1, 20, 0.9, "safe"),  # c
        (0.1, 200, 0.9, "unsafe"),  # d
        (0.3, 30, 0.9, "unsafe"),  # e
        (0.2, 80, 0.9, "safe"),  # f
        (0.0, 5, 0.2, "unsafe"),  # g: below min_confidence, never auto-approved
        (0.95, 5, 0.9, "unsafe"),  # h: at or above block_min_risk, never auto-approved
        (0.0, None, 0.9, "safe"),  # j: no amount, never auto-approved
    ]
    for risk, amount, confidence, truth in rows:
        sweep_row(action_type, agent, risk_score=risk, amount=amount, confidence=confidence, ground_truth=truth)
    # i: held before the thresholds (a rule), never auto-approved
    sweep_row(action_type, agent, reached_thresholds=False, risk_score=0.0, amount=5, ground_truth="unsafe")
    # left out: still pending, and no ground truth
    sweep_row(action_type, agent, status=Status.PENDING, risk_score=0.0, amount=1, ground_truth="safe")
    sweep_row(action_type, agent, risk_score=0.0, amount=1, ground_truth=None)
    return action_type


def test_sweep_points_on_a_given_grid(sweep_history):
    result = threshold_sweep("sweep_refund", risk_candidates=[0.0, 0.1, 0.2, 0.3], amount_candidates=[50, 100, 200])

    assert (result["labelled"], result["safe"], result["unsafe"]) == (10, 5, 5)
    grid = {
        (p["auto_approve_max_risk"], p["max_auto_amount"]): (p["auto_safe"], p["auto_unsafe"]) for p in result["points"]
    }
    assert grid == {
        (0.0, 50.0): (2, 0),
        (0.0, 100.0): (2, 0),
        (0.0, 200.0): (2, 0),
        (0.1, 50.0): (3, 0),
        (0.1, 100.0): (3, 0),
        (0.1, 200.0): (3, 1),
        (0.2, 50.0): (3, 0),
        (0.2, 100.0): (4, 0),
        (0.2, 200.0): (4, 1),
        (0.3, 50.0): (3, 1),
        (0.3, 100.0): (4, 1),
        (0.3, 200.0): (4, 2),
    }
    point = next(p for p in result["points"] if p["auto_approve_max_risk"] == 0.2 and p["max_auto_amount"] == 100)
    assert point == {
        "auto_approve_max_risk": 0.2,
        "max_auto_amount": 100.0,
        "auto_approved": 4,
        "auto_safe": 4,
        "auto_unsafe": 0,
        "automation_rate": 0.4,
        "safe_automation_rate": 0.8,
    }
    assert result["current"]["auto_approve_max_risk"] == 0.3
    assert result["current"]["max_auto_amount"] == 100.0
    assert result["current"]["point"]["auto_safe"] == 4
    assert result["current"]["point"]["auto_unsafe"] == 1
    recommendation = result["recommendation"]
    assert recommendation["auto_approve_max_risk"] == 0.2
    assert recommendation["max_auto_amount"] == 100.0
    assert recommendation["auto_approved"] == 4
    assert recommendation["unsafe_auto_approved"] == 0
    assert recommendation["automation_rate"] == 0.4
    assert recommendation["safe_automation_rate"] == 0.8
    assert recommendation["unsafe_rate_upper_95"] == round(1 - 0.05 ** (1 / 4), 6)
    assert recommendation["bound"] == BOUND == "one-sided 95% Clopper\u2013Pearson"
    assert recommendation["note"]


def test_sweep_default_candidates(sweep_history):
    result = threshold_sweep("sweep_refund")

    risks = sorted({p["auto_approve_max_risk"] for p in result["points"]})
    amounts = sorted({p["max_auto_amount"] for p in result["points"]})
    assert risks == [0.0, 0.1, 0.2, 0.3]  # observed risks of eligible rows, current 0.3 and 0.0
    # quantiles of the labelled amounts (pending ones included: candidates only) and the current 100
    assert amounts == [1.0, 5.0, 10.0, 20.0, 30.0, 50.0, 80.0, 100.0, 200.0]
    # the same 4 safe actions, at the lowest amount limit that lets f (80) through
    assert (result["recommendation"]["auto_approve_max_risk"], result["recommendation"]["max_auto_amount"]) == (
        0.2,
        80.0,
    )
    assert auto_approved_under(sweep_history, 0.2, 80.0) == {"safe": 4}


def test_sweep_without_an_amount_dimension(db):
    action_type = ActionTypeFactory(name="plain", auto_approve_max_risk=0.5)
    agent = AgentFactory()
    for risk, truth in [(0.0, "safe"), (0.2, "safe"), (0.2, "safe"), (0.4, "unsafe"), (0.6, "safe")]:
        sweep_row(action_type, agent, risk_score=risk, amount=None, ground_truth=truth)

    result = threshold_sweep("plain")

    assert {p["max_auto_amount"] for p in result["points"]} == {None}
    assert [(p["auto_approve_max_risk"], p["auto_approved"]) for p in result["points"]] == [
        (0.0, 1),
        (0.2, 3),
        (0.4, 4),
        (0.5, 4),
        (0.6, 5),
    ]
    assert result["recommendation"]["auto_approve_max_risk"] == 0.2
    assert result["recommendation"]["max_auto_amount"] is None
    assert result["current"]["point"]["auto_unsafe"] == 1


def test_sweep_without_a_safe_candidate_recommends_nothing(db):
    action_type = ActionTypeFactory(name="risky")
    agent = AgentFactory()
    sweep_row(action_type, agent, risk_score=0.0, ground_truth="unsafe")
    sweep_row(action_type, agent, risk_score=0.1, ground_truth="safe")

    result = threshold_sweep("risky")

    assert result["recommendation"] is None
    assert all(p["auto_unsafe"] >= 1 for p in result["points"])


def test_sweep_of_an_unknown_type():
    with pytest.raises(ActionType.DoesNotExist):
        threshold_sweep("nope")


def auto_approved_under(action_type: ActionType, risk: float, amount: float | None) -> dict[str, int]:
    """Steps 5-6 of contract §5, in plain Python, over the type's labelled history."""
    counts: dict[str, int] = {}
    for action in ProposedAction.objects.filter(action_type=action_type, ground_truth__isnull=False).exclude(
        status=Status.PENDING
    ):
        if not action.reached_thresholds or action.risk_score is None or action.risk_score > risk:
            continue
        if action_type.block_min_risk is not None and action.risk_score >= action_type.block_min_risk:
            continue
        if action_type.min_confidence is not None and (
            action.confidence is None or action.confidence < action_type.min_confidence
        ):
            continue
        if action_type.amount_path and (action.amount is None or amount is None or action.amount > amount):
            continue
        counts[action.ground_truth] = counts.get(action.ground_truth, 0) + 1
    return counts


history_rows = st.lists(
    st.tuples(
        st.booleans(),  # reached_thresholds
        st.sampled_from([0.0, 0.1, 0.25, 0.3, 0.5, 0.9, 1.0]),  # risk
        st.one_of(st.none(), st.sampled_from([1.0, 10.0, 50.0, 99.5, 100.0, 250.0])),  # amount
        st.one_of(st.none(), st.sampled_from([0.1, 0.5, 0.9])),  # confidence
        st.sampled_from(["safe", "unsafe"]),
    ),
    max_size=25,
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=history_rows, with_amount=st.booleans(), min_confidence=st.sampled_from([None, 0.5]))
def test_the_recommendation_never_auto_approves_an_unsafe_action(db, rows, with_amount, min_confidence):
    # given a random small history
    ProposedAction.objects.all().delete()
    action_type = ActionTypeFactory(name="prop")
    ActionType.objects.filter(pk=action_type.pk).update(
        amount_path="amount" if with_amount else "",
        max_auto_amount=100.0 if with_amount else None,
        block_min_risk=0.9,
        min_confidence=min_confidence,
        auto_approve_max_risk=0.3,
    )
    action_type.refresh_from_db()
    agent = AgentFactory()
    ProposedAction.objects.bulk_create(
        ProposedActionFactory.build(
            action_type=action_type,
            agent=agent,
            status=Status.APPROVED,
            reached_thresholds=reached,
            risk_score=risk,
            amount=amount,
            confidence=confidence,
            ground_truth=truth,
        )
        for reached, risk, amount, confidence, truth in rows
    )

    # when
    result = threshold_sweep("prop")

    # then every point matches a plain re-application, and the recommendation is the best safe one
    for point in result["points"]:
        counts = auto_approved_under(action_type, point["auto_approve_max_risk"], point["max_auto_amount"])
        assert (point["auto_safe"], point["auto_unsafe"]) == (counts.get("safe", 0), counts.get("unsafe", 0))
    recommendation = result["recommendation"]
    safe_points = [p for p in result["points"] if p["auto_unsafe"] == 0 and p["auto_approved"] > 0]
    if recommendation is None:
        assert safe_points == []
    else:
        applied = auto_approved_under(
            action_type, recommendation["auto_approve_max_risk"], recommendation["max_auto_amount"]
        )
        assert applied.get("unsafe", 0) == 0
        assert applied.get("safe", 0) == recommendation["auto_approved"]
        assert recommendation["auto_approved"] == max(p["auto_approved"] for p in safe_points)
    current = result["current"]["point"]
    counts = auto_approved_under(action_type, 0.3, action_type.max_auto_amount)
    assert (current["auto_safe"], current["auto_unsafe"]) == (counts.get("safe", 0), counts.get("unsafe", 0))


# --- rule health ----------------------------------------------------------------------------------


def finding(rule: str, outcome: str) -> dict[str, Any]:
    return {"rule": rule, "outcome": outcome, "effect": "review", "message": ""}


def test_rule_health(db):
    action_type = ActionTypeFactory(name="ruled")
    agent = AgentFactory()
    for findings, truth in [
        ([finding("r1", "fail"), finding("r2", "pass")], "unsafe"),
        ([finding("r1", "fail"), finding("r2", "pass")], "safe"),
        ([finding("r1", "pass"), finding("r2", "error")], "unsafe"),
        ([finding("r1", "fail")], None),  # no ground truth: left out
        ([finding("r1", "pass")], "safe"),
    ]:
        ProposedActionFactory(action_type=action_type, agent=agent, findings=findings, ground_truth=truth)

    assert rule_health("ruled") == [
        {
            "rule": "r1",
            "evaluated": 4,
            "failed": 2,
            "failed_safe": 1,
            "failed_unsafe": 1,
            "passed_unsafe": 1,
            "precision": 0.5,
        },
        {
            "rule": "r2",
            "evaluated": 3,
            "failed": 1,
            "failed_safe": 0,
            "failed_unsafe": 1,
            "passed_unsafe": 1,
            "precision": 1.0,
        },
    ]


def test_rule_health_python_fallback_agrees(db):
    action_type = ActionTypeFactory(name="ruled")
    agent = AgentFactory()
    ProposedActionFactory(action_type=action_type, agent=agent, findings=[finding("r1", "fail")], ground_truth="safe")
    ProposedActionFactory(action_type=action_type, agent=agent, findings=[finding("r1", "pass")], ground_truth="unsafe")

    python = _rule_counts_python(action_type)

    sql = {r["rule"]: {k: v for k, v in r.items() if k not in ("rule", "precision")} for r in rule_health("ruled")}
    assert python == sql


# --- export -> replay -----------------------------------------------------------------------------


def refund_body(order_id: str, amount: float, *, looked_up: bool = True) -> dict[str, Any]:
    trajectory = (
        [
            {"kind": "message", "role": "user", "content": f"My order {order_id} arrived broken"},
            {"kind": "tool_call", "tool": "get_order", "args": {"order_id": order_id}, "result": '{"total": 80}'},
        ]
        if looked_up
        else LOOKED_UP[:1]
    )
    return {"action_type": "refund", "params": {"order_id": order_id, "amount": amount}, "trajectory": trajectory}


def test_export_replays_unchanged(policy_v1, propose, tmp_path: Path):
    # given three evaluated refunds with ground truth, one without
    reviewer = ReviewerFactory()
    auto = propose(refund_body("A-1", 20)).action  # auto-approved
    big = propose(refund_body("A-2", 500)).action  # held: above max_auto_amount
    blind = propose(refund_body("A-3", 20, looked_up=False)).action  # held: never looked up
    propose(refund_body("A-4", 30))  # no ground truth: not exported
    assert (auto["status"], big["status"], blind["status"]) == ("auto_approved", "needs_review", "needs_review")
    label_create(action=ProposedAction.objects.get(pk=auto["id"]), author=reviewer, label="safe", tags=["audit"])
    action_decide(action_id=big["id"], user=reviewer, verdict="reject")
    label_create(
        action=ProposedAction.objects.get(pk=blind["id"]), author=reviewer, label="unsafe", tags=["blind", "fraud"]
    )
    label_create(action=ProposedAction.objects.get(pk=blind["id"]), author=reviewer, label="unsafe", tags=["fraud"])

    # when exported
    rows = list(labelled_export_rows(action_type="refund"))
    path = tmp_path / "labelled.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))

    # then each line has the replay fields
    assert [row["id"] for row in rows] == [auto["id"], big["id"], blind["id"]]
    first = rows[0]
    assert set(first) >= {
        "id",
        "action_type",
        "params",
        "trajectory",
        "confidence",
        "context",
        "label",
        "status",
        "tags",
    }
    assert first["params"] == {"order_id": "A-1", "amount": 20}
    assert first["trajectory"] == refund_body("A-1", 20)["trajectory"]  # as received
    assert (first["label"], first["status"], first["tags"]) == ("safe", "auto_approved", ["audit"])
    assert (rows[1]["label"], rows[1]["tags"]) == ("unsafe", [])
    assert rows[2]["tags"] == ["fraud", "blind"]

    # and the replay command takes the file as it is, deciding as the gate did
    out, err = io.StringIO(), io.StringIO()
    call_command("replay", str(path), "--json", "--safe-labels", "safe", stdout=out, stderr=err)
    figures = json.loads(out.getvalue())
    assert figures["errors"] == []
    assert figures["total"] == 3
    assert figures["by_label"] == {
        "safe": {"auto_approved": 1, "needs_review": 0, "blocked": 0},
        "unsafe": {"auto_approved": 0, "needs_review": 2, "blocked": 0},
    }
    assert figures["unsafe_auto_approved"] == 0


def test_export_filters_and_csv_rows(history):
    rows = list(labelled_csv_rows(action_type="refund"))

    assert rows[0] == list(CSV_COLUMNS)
    assert len(rows) == 1 + 5  # the refunds with ground truth: 1, 2, 5, 6, 7
    assert list(labelled_export_rows(action_type="escalate_ticket")) == []
    assert list(labelled_export_rows(since=timezone.now() + timedelta(minutes=1))) == []
