from __future__ import annotations

from datetime import datetime
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from approvals.evaluation.figures import SUMMARY_FIELDS, agent_activity, evaluation_figures
from approvals.evaluation.rule_insight import default_recent, rule_insight
from approvals.evaluation.selectors import gated_action_type_names

# Figures beyond the contract's, printed after its lines under these names.
EXTRA_FIGURES = (
    "evaluated",
    "held_share",
    "blocked_share",
    "reviewer_decided",
    "reviewer_approve_rate",
    "reviewer_reject_rate",
    "time_to_decision_seconds",
    "with_ground_truth",
    "audit",
)


def flatten(prefix: str, value: Any) -> list[tuple[str, Any]]:
    if isinstance(value, dict):
        items: list[tuple[str, Any]] = []
        for key, inner in value.items():
            items.extend(flatten(f"{prefix}.{key}" if prefix else str(key), inner))
        return items
    return [(prefix, value)]


def insight_lines(name: str, recent: int) -> list[tuple[str, Any]]:
    """The rule insight of one type as 'rule_insight.TYPE.*' lines (questions only where there is one)."""
    insight = rule_insight(name, recent=recent)
    out: dict[str, Any] = {key: insight[key] for key in ("recent", "labelled", "safe", "unsafe")}
    out["unstopped_unsafe"] = len(insight["unstopped_unsafe"])
    if insight["unstopped_unsafe"]:
        out["unstopped_unsafe_actions"] = insight["unstopped_unsafe"]
        out["unstopped_question"] = insight["unstopped_question"]
    out["rules"] = {
        row["rule"]: {
            "kind": row["kind"],
            "alone_stops_unsafe": len(row["alone_stops_unsafe"]),
            "alone_stops_unsafe_actions": row["alone_stops_unsafe"],
            "alone_holds_safe": len(row["alone_holds_safe"]),
            "alone_holds_safe_actions": row["alone_holds_safe"],
            **({"question": row["question"]} if row["question"] else {}),
        }
        for row in insight["rules"]
    }
    out["disagreements"] = {
        str(index): {
            "profile": item["profile"],
            "decision": item["decision"],
            "safe": item["safe"],
            "unsafe": item["unsafe"],
            "question": item["question"],
        }
        for index, item in enumerate(insight["disagreements"])
    }
    return flatten(f"rule_insight.{name}", out)


def shown(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "; ".join(str(item) for item in value)
    return str(value)


def parse_moment(option: str, raw: str | None) -> datetime | None:
    if not raw:
        return None
    moment = parse_datetime(raw)
    if moment is None and (day := parse_date(raw)) is not None:
        moment = datetime(day.year, day.month, day.day)
    if moment is None:
        raise CommandError(f"{option} {raw!r} is not an ISO date or date-time")
    return timezone.make_aware(moment) if timezone.is_naive(moment) else moment


class Command(BaseCommand):
    help = (
        "Print the evaluation figures (contract §3), one 'name: value' a line, then the audit bound, "
        "hold shares, time to decision, per-agent activity (agents.NAME.*) and the rule insight of each "
        "type the policy decides (rule_insight.TYPE.*: what each rule alone stops among the type's most "
        "recent labelled actions, whatever --since, --until and --agent say)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--since", help="ISO date or date-time (inclusive)")
        parser.add_argument("--until", help="ISO date or date-time (exclusive)")
        parser.add_argument("--action-type")
        parser.add_argument("--agent")
        parser.add_argument(
            "--insight-recent",
            type=int,
            help="how many of each type's most recent labelled actions the rule insight reads "
            "(default: GATE_RULE_INSIGHT_RECENT)",
        )

    def handle(
        self,
        *args: Any,
        since: str | None,
        until: str | None,
        action_type: str | None,
        agent: str | None,
        insight_recent: int | None,
        **options: Any,
    ) -> None:
        if insight_recent is not None and insight_recent < 1:
            raise CommandError(f"--insight-recent must be at least 1, got {insight_recent}")
        try:
            since_at = parse_moment("--since", since)
            until_at = parse_moment("--until", until)
        except ValueError as exc:  # a date-like string out of range
            raise CommandError(str(exc)) from exc
        figures = evaluation_figures(
            group_by="action_type", action_type=action_type, agent=agent, since=since_at, until=until_at
        )
        overall = figures["overall"]
        summary = {name: overall[name] for name in SUMMARY_FIELDS}
        summary["per_action_type"] = {
            group["key"]: {name: group[name] for name in SUMMARY_FIELDS} for group in figures["groups"]
        }
        lines = flatten("", summary)
        lines += flatten("", {name: overall[name] for name in EXTRA_FIGURES})
        agents = agent_activity(action_type=action_type, since=since_at, until=until_at)
        if agent:
            agents = [entry for entry in agents if entry["agent"] == agent]
        lines += flatten(
            "", {"agents": {entry["agent"]: {k: v for k, v in entry.items() if k != "agent"} for entry in agents}}
        )
        for name in gated_action_type_names():
            if action_type in (None, name):
                lines += insight_lines(name, insight_recent or default_recent())
        for name, value in lines:
            self.stdout.write(f"{name}: {shown(value)}")
