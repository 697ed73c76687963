from __future__ import annotations

from datetime import datetime
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from approvals.selectors import evaluation_summary


def flatten(prefix: str, value: Any) -> list[tuple[str, Any]]:
    if isinstance(value, dict):
        items: list[tuple[str, Any]] = []
        for key, inner in value.items():
            items.extend(flatten(f"{prefix}.{key}" if prefix else str(key), inner))
        return items
    return [(prefix, value)]


class Command(BaseCommand):
    help = "Print the evaluation figures (contract §3), one 'name: value' a line."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--since", help="ISO date or date-time")
        parser.add_argument("--action-type")

    def handle(self, *args: Any, since: str | None, action_type: str | None, **options: Any) -> None:
        since_at = None
        if since:
            since_at = parse_datetime(since)
            if since_at is None and (day := parse_date(since)) is not None:
                since_at = timezone.make_aware(datetime(day.year, day.month, day.day))
            if since_at is None:
                raise CommandError(f"--since {since!r} is not an ISO date or date-time")
            if timezone.is_naive(since_at):
                since_at = timezone.make_aware(since_at)
        summary = evaluation_summary(action_type=action_type, since=since_at)
        for name, value in flatten("", summary):
            shown = "null" if value is None else value
            self.stdout.write(f"{name}: {shown}")
