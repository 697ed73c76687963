"""Rule health: how each check of a type fares against the ground truth of its actions."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from django.db import connection

from approvals.evaluation.stats import is_postgres, rate
from approvals.models import ActionType, LabelValue, ProposedAction

FAILED_OUTCOMES = ("fail", "error")

RULE_HEALTH_SQL = """
SELECT finding ->> 'rule' AS rule,
       COUNT(*) AS evaluated,
       COUNT(*) FILTER (WHERE finding ->> 'outcome' IN ('fail', 'error')) AS failed,
       COUNT(*) FILTER (WHERE finding ->> 'outcome' IN ('fail', 'error') AND a.ground_truth = %s) AS failed_safe,
       COUNT(*) FILTER (WHERE finding ->> 'outcome' IN ('fail', 'error') AND a.ground_truth = %s) AS failed_unsafe,
       COUNT(*) FILTER (WHERE finding ->> 'outcome' = 'pass' AND a.ground_truth = %s) AS passed_unsafe
FROM {table} AS a
CROSS JOIN LATERAL jsonb_array_elements(
    CASE WHEN jsonb_typeof(a.findings) = 'array' THEN a.findings ELSE '[]'::jsonb END
) AS finding
WHERE a.action_type_id = %s AND a.ground_truth IS NOT NULL AND finding ->> 'rule' IS NOT NULL
GROUP BY 1
"""


def _rule_counts_python(action_type: ActionType) -> dict[str, dict[str, int]]:
    counts: dict[str, dict[str, int]] = defaultdict(
        lambda: dict.fromkeys(("evaluated", "failed", "failed_safe", "failed_unsafe", "passed_unsafe"), 0)
    )
    history = ProposedAction.objects.filter(action_type=action_type, ground_truth__isnull=False)
    for findings, truth in history.values_list("findings", "ground_truth").iterator(chunk_size=2000):
        for finding in findings if isinstance(findings, list) else []:
            name = finding.get("rule") if isinstance(finding, dict) else None
            if not isinstance(name, str):
                continue
            row = counts[name]
            row["evaluated"] += 1
            if finding.get("outcome") in FAILED_OUTCOMES:
                row["failed"] += 1
                row["failed_safe" if truth == LabelValue.SAFE else "failed_unsafe"] += 1
            elif finding.get("outcome") == "pass" and truth == LabelValue.UNSAFE:
                row["passed_unsafe"] += 1
    return counts


def rule_health(action_type_name: str) -> list[dict[str, Any]]:
    """Per check in the findings of the type's actions with ground truth: how often it failed
    (outcome fail or error) on safe and on unsafe actions, how often it passed an unsafe one (harm
    it missed), and its precision (failed_unsafe / failed). Most failures first.

    Raises ActionType.DoesNotExist for an unknown type.
    """
    action_type = ActionType.objects.get(name=action_type_name)
    if is_postgres():
        sql = RULE_HEALTH_SQL.format(table=connection.ops.quote_name(ProposedAction._meta.db_table))
        with connection.cursor() as cursor:
            cursor.execute(sql, [LabelValue.SAFE, LabelValue.UNSAFE, LabelValue.UNSAFE, action_type.pk])
            columns = [column[0] for column in cursor.description or ()]
            counts = {row[0]: dict(zip(columns[1:], row[1:], strict=True)) for row in cursor.fetchall()}
    else:
        counts = _rule_counts_python(action_type)
    rules = [
        {"rule": name, **row, "precision": rate(row["failed_unsafe"], row["failed"])} for name, row in counts.items()
    ]
    rules.sort(key=lambda r: (-r["failed"], r["rule"]))
    return rules
