"""The reads of the models that the evaluation pages and API make themselves.

The figures, sweeps, rule health and exports are reads too, each in its own module (figures.py,
sweep.py, rules.py, exports.py); what the pages and the API look up besides them is here, so that
neither queries a model directly.
"""

from __future__ import annotations

from django.db.models import QuerySet

from approvals.models import ActionType, Mode, ProposedAction, WhatIfRun

RECENT_WHATIF_RUNS = 10


# --- action types and agents --------------------------------------------------------------------


def action_types() -> QuerySet[ActionType]:
    """Every action type (what the thresholds form may name)."""
    return ActionType.objects.all()


def first_gated_action_type_name() -> str | None:
    """The first type, alphabetically, that the policy decides (mode gate), or None."""
    return ActionType.objects.filter(mode=Mode.GATE).order_by("name").values_list("name", flat=True).first()


def gated_action_type_names() -> list[str]:
    """The types the policy decides (mode gate), alphabetically: those whose rules decide anything."""
    return list(ActionType.objects.filter(mode=Mode.GATE).order_by("name").values_list("name", flat=True))


def action_type_named(name: str) -> ActionType | None:
    return ActionType.objects.filter(name=name).first()


def action_type_exists(name: str) -> bool:
    return ActionType.objects.filter(name=name).exists()


# --- ground truth -------------------------------------------------------------------------------


def ground_truth(action: ProposedAction) -> str | None:
    """The latest explicit label; without one a reviewer's approve is safe and a reject unsafe.

    Kept on the action (``ground_truth``) by the services that decide and label it.
    """
    return action.ground_truth


# --- what-if runs -------------------------------------------------------------------------------


def whatif_runs_recent(limit: int = RECENT_WHATIF_RUNS) -> QuerySet[WhatIfRun]:
    """The latest what-if runs, newest first, with who started them (read when iterated)."""
    return WhatIfRun.objects.select_related("created_by")[:limit]


def whatif_run(run_id: int, *, with_creator: bool = False) -> WhatIfRun | None:
    """The what-if run ``run_id``, or None; ``with_creator`` reads who started it in the same query."""
    queryset = WhatIfRun.objects.all()
    if with_creator:
        queryset = queryset.select_related("created_by")
    return queryset.filter(pk=run_id).first()
