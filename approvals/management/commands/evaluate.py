from __future__ import annotations

from datetime import datetime
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from approvals.evaluation.figures import SUMMARY_FIELDS, agent_activity, evaluation_figures

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
        "hold shares, time to decision and per-agent activity (agents.NAME.*)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--since", help="ISO date or date-time (inclusive)")
        parser.add_argument("--until", help="ISO date or date-time (exclusive)")
        parser.add_argument("--action-type")
        parser.add_argument("--agent")

    def handle(
        self,
        *args: Any,
        since: str | None,
        until: str | None,
        action_type: str | None,
        agent: str | None,
        **options: Any,
    ) -> None:
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
        for name, value in lines:
            self.stdout.write(f"{name}: {shown(value)}")
