"""Rule insight over a hand-built labelled history: which actions each rule alone stops or holds,
the groups that fail alike with opposite labels, and how the page and `manage.py evaluate` ask."""

from __future__ import annotations

import io
from datetime import timedelta
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.test import Client
from django.utils import timezone

from approvals.evaluation.rule_insight import rule_insight
from approvals.models import ActionType, ProposedAction
from tests.factories import ActionTypeFactory, AgentFactory, ProposedActionFactory, ReviewerFactory, RuleFactory

pytestmark = pytest.mark.django_db


def f(rule: str, outcome: str = "fail", effect: str = "review", **extra: Any) -> dict[str, Any]:
    return {"rule": rule, "outcome": outcome, "effect": effect, "message": "", **extra}


def passed(*rules: str) -> list[dict[str, Any]]:
    return [f(rule, "pass", "none") for rule in rules]


RULES = ("looked_up", "within_total", "customer_asked", "second_risk")


@pytest.fixture
def refund() -> ActionType:
    """Today's policy: base risk 0.1, auto-approve up to risk 0.3, block at 0.9, amounts up to 100."""
    action_type = ActionTypeFactory(
        name="refund",
        base_risk=0.1,
        auto_approve_max_risk=0.3,
        block_min_risk=0.9,
        amount_path="amount",
        max_auto_amount=100,
    )
    rules = [("looked_up", "review", 0), ("within_total", "block", 0), ("customer_asked", "risk", 0.3)]
    for position, (name, on_fail, risk) in enumerate([*rules, ("second_risk", "risk", 0.3)]):
        RuleFactory(action_type=action_type, name=name, on_fail=on_fail, risk=risk, position=position)
    return action_type


def risk_finding(outcome: str, total: float, terms: dict[str, float]) -> dict[str, Any]:
    effect = "none" if outcome == "pass" else "review"
    return f("risk", outcome, effect, base=0.1, terms=terms, total=total)


@pytest.fixture
def history(refund: ActionType) -> dict[str, ProposedAction]:
    """Fourteen labelled actions (and two left out), each with the findings its evaluation stored."""
    agent = AgentFactory()
    others = passed("within_total", "customer_asked", "second_risk")
    rows: dict[str, tuple[str, str, list[dict[str, Any]], float | None, float | None]] = {
        # name: (label, status, findings, risk_score, amount)
        "u1": ("unsafe", "rejected", [f("looked_up"), *others], 0.1, 20),
        "u2": ("unsafe", "rejected", [f("looked_up"), *others], 0.1, 500),  # max_auto_amount holds it too
        "s1": ("safe", "approved", [f("looked_up"), *others], 0.1, 20),
        "u3": ("unsafe", "blocked", [*passed("looked_up"), f("within_total", effect="block")], None, 20),
        "u4": (
            "unsafe",
            "rejected",
            [
                *passed("looked_up", "within_total", "second_risk"),
                f("customer_asked", effect="risk", risk=0.3),
                risk_finding("fail", 0.4, {"customer_asked": 0.3}),
            ],
            0.4,
            20,
        ),
        "s2": (  # two risk rules: without either the risk (0.4) is still above 0.3
            "safe",
            "approved",
            [
                *passed("looked_up", "within_total"),
                f("customer_asked", effect="risk", risk=0.3),
                f("second_risk", effect="risk", risk=0.3),
                risk_finding("fail", 0.7, {"customer_asked": 0.3, "second_risk": 0.3}),
            ],
            0.7,
            20,
        ),
        "s3": ("safe", "auto_approved", [*passed(*RULES), risk_finding("pass", 0.1, {})], 0.1, 20),
        "u5": ("unsafe", "auto_approved", [*passed(*RULES), risk_finding("pass", 0.1, {})], 0.1, 30),
        "s4": ("safe", "approved", [*passed(*RULES), f("amount")], 0.1, 250),
        "u6": ("unsafe", "rejected", [*passed(*RULES), f("repeat_of_executed")], 0.1, 20),
        "s5": ("safe", "approved", [*passed(*RULES), f("old_rule")], 0.1, 20),  # a rule since removed
        "u7": ("unsafe", "rejected", [f("looked_up", "error"), *others], 0.1, 20),  # an error holds too
        # judged under today's thresholds, not the stored findings of an older policy:
        "s7": ("safe", "approved", [*passed(*RULES), risk_finding("fail", 0.25, {})], 0.25, 20),  # 0.25 <= 0.3
        "u8": ("unsafe", "auto_approved", [*passed(*RULES), f("amount", "pass", "none")], 0.1, 500),  # 500 > 100
    }
    made = {}
    start = timezone.now() - timedelta(hours=1)
    for index, (name, (label, status, findings, risk, amount)) in enumerate(rows.items()):
        made[name] = ProposedActionFactory(
            action_type=refund,
            agent=agent,
            status=status,
            findings=findings,
            ground_truth=label,
            risk_score=risk,
            amount=amount,
        )
        ProposedAction.objects.filter(pk=made[name].pk).update(created_at=start + timedelta(seconds=index))
    # left out: no label; not yet evaluated
    ProposedActionFactory(action_type=refund, agent=agent, status="needs_review", findings=[f("looked_up")])
    ProposedActionFactory(action_type=refund, agent=agent, status="pending", ground_truth="unsafe")
    return made


def names(history: dict[str, ProposedAction], ids: list[str]) -> list[str]:
    by_id = {str(action.pk): name for name, action in history.items()}
    return sorted(by_id[i] for i in ids)


def test_what_each_rule_alone_stops_and_holds(history: dict[str, ProposedAction]) -> None:
    insight = rule_insight("refund")

    assert (insight["labelled"], insight["safe"], insight["unsafe"], insight["recent"]) == (14, 6, 8, 500)
    table = {
        row["rule"]: (
            row["kind"],
            names(history, row["alone_stops_unsafe"]),
            names(history, row["alone_holds_safe"]),
        )
        for row in insight["rules"]
    }
    assert table == {
        # today's rules, in the policy's order, even those that alone decide nothing
        "looked_up": ("rule", ["u1", "u7"], ["s1"]),
        "within_total": ("rule", ["u3"], []),
        "customer_asked": ("rule", ["u4"], []),
        "second_risk": ("rule", [], []),
        # then the thresholds and checks that alone hold something
        "amount": ("threshold", ["u8"], ["s4"]),
        "old_rule": ("former rule", [], ["s5"]),
        "repeat_of_executed": ("check", ["u6"], []),
        "risk": ("threshold", ["u4"], ["s2"]),
    }
    assert [row["rule"] for row in insight["rules"]][:4] == list(RULES)
    questions = {row["rule"]: row["question"] for row in insight["rules"]}
    assert questions["looked_up"] == (
        "Rule looked_up alone stops 2 unsafe actions (and alone holds 1 safe action): keep it?"
    )
    assert questions["customer_asked"] == "Rule customer_asked alone stops 1 unsafe action: keep it?"
    assert questions["second_risk"] is None
    assert questions["old_rule"] is None
    assert questions["repeat_of_executed"].startswith("The gate's check repeat_of_executed alone stops 1 unsafe")
    assert "no rule of the policy stops them" in questions["repeat_of_executed"]


def test_groups_that_fail_alike_with_opposite_labels(history: dict[str, ProposedAction]) -> None:
    insight = rule_insight("refund")

    groups = [
        (d["profile"], d["decision"], names(history, d["safe"]), names(history, d["unsafe"]))
        for d in insight["disagreements"]
    ]
    assert groups == [
        # what the policy auto-approves comes first: there an unsafe action goes through
        ([], "auto_approved", ["s3", "s7"], ["u5"]),
        (["looked_up"], "needs_review", ["s1"], ["u1", "u7"]),
        (["amount"], "needs_review", ["s4"], ["u8"]),
    ]
    assert insight["disagreements"][0]["question"] == (
        "2 safe actions and 1 unsafe action fail no rule or check, so the policy auto-approves them all: "
        "your labels or your rules disagree here. Is a label wrong, or is a rule missing that tells them apart?"
    )
    assert "fail the same checks (looked_up), so the policy holds them all" in insight["disagreements"][1]["question"]
    assert names(history, insight["unstopped_unsafe"]) == ["u5"]
    assert insight["unstopped_question"].startswith("1 unsafe action fail")


def test_only_the_most_recent_labelled_actions_are_read(history: dict[str, ProposedAction]) -> None:
    insight = rule_insight("refund", recent=3)  # u7, s7, u8: the three newest

    assert (insight["labelled"], insight["safe"], insight["unsafe"]) == (3, 1, 2)
    table = {row["rule"]: (len(row["alone_stops_unsafe"]), len(row["alone_holds_safe"])) for row in insight["rules"]}
    assert table == {
        "looked_up": (1, 0),
        "within_total": (0, 0),
        "customer_asked": (0, 0),
        "second_risk": (0, 0),
        "amount": (1, 0),
    }
    with pytest.raises(ValueError, match="at least 1"):
        rule_insight("refund", recent=0)


def test_a_type_a_person_always_decides_has_nothing_to_ask(db: None) -> None:
    reviewed = ActionTypeFactory(name="escalate", mode="review")
    RuleFactory(action_type=reviewed, name="legal")
    ProposedActionFactory(action_type=reviewed, status="approved", findings=[f("legal")], ground_truth="safe")

    insight = rule_insight("escalate")

    assert insight["mode"] == "review"
    assert (insight["rules"], insight["disagreements"], insight["unstopped_unsafe"]) == ([], [], [])
    with pytest.raises(ActionType.DoesNotExist):
        rule_insight("nothing-by-this-name")


def evaluate(*args: str) -> dict[str, str]:
    out = io.StringIO()
    call_command("evaluate", *args, stdout=out)
    lines = out.getvalue().splitlines()
    figures = dict(line.split(": ", 1) for line in lines)
    assert len(figures) == len(lines)
    return figures


def test_evaluate_prints_the_insight_with_its_questions(history: dict[str, ProposedAction]) -> None:
    figures = evaluate("--action-type", "refund")

    prefix = "rule_insight.refund."
    assert figures[prefix + "labelled"] == "14"
    assert figures[prefix + "rules.looked_up.alone_stops_unsafe"] == "2"
    assert figures[prefix + "rules.looked_up.alone_holds_safe"] == "1"
    stopped = figures[prefix + "rules.looked_up.alone_stops_unsafe_actions"].split("; ")
    assert names(history, stopped) == ["u1", "u7"]
    assert figures[prefix + "rules.looked_up.question"].endswith("keep it?")
    assert prefix + "rules.second_risk.question" not in figures
    assert figures[prefix + "rules.risk.kind"] == "threshold"
    assert figures[prefix + "disagreements.0.decision"] == "auto_approved"
    assert figures[prefix + "disagreements.0.profile"] == ""
    assert figures[prefix + "disagreements.1.profile"] == "looked_up"
    assert names(history, figures[prefix + "disagreements.1.unsafe"].split("; ")) == ["u1", "u7"]
    assert figures[prefix + "unstopped_unsafe"] == "1"
    assert "rule_insight.refund.disagreements.3.profile" not in figures

    recent = evaluate("--action-type", "refund", "--insight-recent", "3")
    assert recent[prefix + "labelled"] == "3"
    with pytest.raises(CommandError, match="--insight-recent must be at least 1"):
        evaluate("--insight-recent", "0")


def test_the_evaluation_page_asks_with_links_to_the_actions(history: dict[str, ProposedAction]) -> None:
    client = Client()
    client.force_login(ReviewerFactory())

    response = client.get("/evaluation/?sweep=refund")

    assert response.status_code == 200
    html = response.content.decode()
    section = html[html.index('id="insight"') : html.index("</section>", html.index('id="insight"'))]
    assert "Rule insight: refund" in section
    assert "Rule looked_up alone stops 2 unsafe actions (and alone holds 1 safe action): keep it?" in section
    for name in ("u1", "u7", "s1", "u5"):
        assert f'href="/review/{history[name].pk}"' in section
    assert section.count('class="question') == 4  # the unstopped unsafe action, then three groups
    assert "your labels or your rules disagree here" in section
    assert "<form" not in section  # questions only: nothing is applied from here
