"""Exports of the actions with ground truth: JSONL lines for ``manage.py replay`` and CSV rows."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

from django.db.models import Prefetch, QuerySet

from approvals.evaluation.figures import actions_filtered
from approvals.models import Label, ProposedAction


def labelled_actions(
    *, action_type: str | None = None, since: datetime | None = None, until: datetime | None = None
) -> QuerySet[ProposedAction]:
    """Actions with ground truth, oldest first, with their labels (newest first)."""
    return (
        actions_filtered(action_type=action_type, since=since, until=until)
        .filter(ground_truth__isnull=False)
        .select_related("action_type", "agent")
        .prefetch_related(Prefetch("labels", queryset=Label.objects.order_by("-created_at", "-id")))
        .order_by("created_at", "id")
    )


def label_tags(action: ProposedAction) -> list[str]:
    """The tags of all the action's labels, newest label first, each tag once."""
    tags: dict[str, None] = {}
    for label in action.labels.all():
        for tag in label.tags if isinstance(label.tags, list) else []:
            tags.setdefault(str(tag), None)
    return list(tags)


def labelled_export_rows(
    *, action_type: str | None = None, since: datetime | None = None, until: datetime | None = None
) -> Iterator[dict[str, Any]]:
    """Lines for ``manage.py replay``: the proposal as received and its ground truth as ``label``."""
    for action in labelled_actions(action_type=action_type, since=since, until=until).iterator(chunk_size=1000):
        yield {
            "id": str(action.id),
            "action_type": action.action_type.name,
            "agent": {"name": action.agent.name},
            "params": action.params,
            "trajectory": action.trajectory_raw if action.trajectory_raw is not None else action.trajectory,
            "confidence": action.confidence,
            "context": action.context,
            "label": action.ground_truth,
            "status": action.status,
            "tags": label_tags(action),
        }


CSV_COLUMNS = (
    "id",
    "action_type",
    "agent",
    "status",
    "risk_score",
    "amount",
    "confidence",
    "ground_truth",
    "tags",
    "created_at",
    "decided_at",
)


def labelled_csv_rows(
    *, action_type: str | None = None, since: datetime | None = None, until: datetime | None = None
) -> Iterator[list[Any]]:
    """The same actions as labelled_export_rows, one CSV row each (tags joined by ';'), after a header."""
    yield list(CSV_COLUMNS)
    for action in labelled_actions(action_type=action_type, since=since, until=until).iterator(chunk_size=1000):
        yield [
            str(action.id),
            action.action_type.name,
            action.agent.name,
            action.status,
            "" if action.risk_score is None else action.risk_score,
            "" if action.amount is None else action.amount,
            "" if action.confidence is None else action.confidence,
            action.ground_truth,
            ";".join(label_tags(action)),
            action.created_at.isoformat(),
            action.decided_at.isoformat() if action.decided_at else "",
        ]
