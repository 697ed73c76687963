"""The evaluation dashboard (/evaluation/), with the shadow policy's panel, and the what-if pages
(/evaluation/whatif/).

The pages are rendered on the server from the same functions the evaluation API serves
(approvals.evaluation.figures, sweep and rules, and rule_insight), so they are complete without JavaScript;
evaluation.js draws the charts from the figures embedded with ``json_script`` (data, not script:
the CSP allows it) and polls a running what-if.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import yaml
from django.contrib import messages
from django.contrib.auth.decorators import login_required, permission_required
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_POST

from approvals import policy
from approvals.api.permissions import reviewer_required
from approvals.errors import UnsafePolicyChange
from approvals.evaluation import figures, rule_insight, rules, selectors, shadow, stats, sweep
from approvals.evaluation.policy_confirm import accepted_ids, policy_change_confirm
from approvals.evaluation.services import whatif_start
from approvals.gate import selectors as gate_selectors
from approvals.gate.policies import action_type_apply_thresholds
from approvals.gate.selectors import policy_document_current
from approvals.lifecycle.audit import actor_of_user
from approvals.models import Status, WhatIfRun

ADMIN_PERMISSION = "approvals.change_actiontype"
WINDOWS: dict[str, tuple[str, timedelta | None]] = {
    "24h": ("24 h", timedelta(hours=24)),
    "7d": ("7 days", timedelta(days=7)),
    "30d": ("30 days", timedelta(days=30)),
    "all": ("all time", None),
}
DEFAULT_WINDOW = "30d"
# What a person had to look at: everything the policy held, however it ended.
HELD_STATUSES = (Status.NEEDS_REVIEW, Status.APPROVED, Status.REJECTED, Status.EXPIRED)
NONE = "\u2013"  # an en dash: no figure (nothing to divide by)


def admin_required(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Policy changes: superusers and whoever may change action types; others get 403."""
    return login_required(permission_required(ADMIN_PERMISSION, raise_exception=True)(view))


def _may_change_policy(request: HttpRequest) -> bool:
    return request.user.has_perm(ADMIN_PERMISSION)


# --- formatting ---------------------------------------------------------------------------------


def pct(value: float | None, digits: int = 1) -> str:
    return NONE if value is None else f"{value * 100:.{digits}f}%"


def duration(seconds: float | None) -> str:
    if seconds is None:
        return NONE
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def _held(figures: dict[str, Any]) -> int:
    """Held for a person, however it ended (evaluation_figures counts it into held_share)."""
    share, evaluated = figures.get("held_share"), figures.get("evaluated")
    if share is not None and evaluated:
        return round(share * evaluated)
    by_status = figures.get("by_status") or {}
    return sum(int(by_status.get(status, 0)) for status in HELD_STATUSES)


def audit_sentence(audit: dict[str, Any] | None) -> str:
    """The audit sample's bound, in words a reviewer can repeat."""
    if not audit or not audit.get("labelled"):
        return "No audited auto-approvals yet: nothing can be said about the unsafe rate."
    bound = audit.get("unsafe_rate_upper_95")
    return (
        f"≤ {pct(bound)} unsafe ({stats.BOUND} upper bound from {audit['labelled']} audited, "
        f"{audit.get('unsafe', 0)} unsafe)"
    )


def _row(name: str, figures: dict[str, Any]) -> dict[str, Any]:
    """One line of a per-type or per-day table, formatted."""
    ttd = figures.get("time_to_decision_seconds") or {}
    by_status = figures.get("by_status") or {}
    return {
        "name": name,
        "total": figures.get("total", 0),
        "auto_approved": by_status.get(Status.AUTO_APPROVED, 0),
        "held": _held(figures),
        "blocked": by_status.get(Status.BLOCKED, 0),
        "pending": by_status.get(Status.PENDING, 0),
        "automation_rate": pct(figures.get("automation_rate")),
        "held_share": pct(figures.get("held_share")),
        "blocked_share": pct(figures.get("blocked_share")),
        "reviewer_approve_rate": pct(figures.get("reviewer_approve_rate")),
        "median": duration(ttd.get("median")),
        "p90": duration(ttd.get("p90")),
        "labelled": figures.get("labelled", 0),
        "unsafe_auto_approved": figures.get("unsafe_auto_approved", 0),
        "audit": audit_sentence(figures.get("audit")),
    }


# --- the dashboard --------------------------------------------------------------------------------


def _filters(request: HttpRequest) -> dict[str, str]:
    window = request.GET.get("window", DEFAULT_WINDOW)
    return {
        "window": window if window in WINDOWS else DEFAULT_WINDOW,
        "action_type": request.GET.get("action_type", "").strip()[:100],
        "agent": request.GET.get("agent", "").strip()[:100],
    }


def _since(window: str, now: datetime) -> datetime | None:
    delta = WINDOWS[window][1]
    return now - delta if delta else None


def _sweep_type(request: HttpRequest, filters: dict[str, str], names: list[str]) -> str | None:
    """The type whose thresholds the sweep tunes: the filtered one, else the one asked for, else the
    first that the policy decides (a type always reviewed or always blocked has no thresholds)."""
    for candidate in (filters["action_type"], request.GET.get("sweep", "")):
        if candidate in names:
            return candidate
    gated = selectors.first_gated_action_type_name()
    return gated or (names[0] if names else None)


def _point_index(points: list[dict[str, Any]], risk: Any, amount: Any) -> int | None:
    for index, point in enumerate(points):
        if point.get("auto_approve_max_risk") == risk and point.get("max_auto_amount") == amount:
            return index
    return None


def _sweep_context(result: dict[str, Any]) -> dict[str, Any]:
    points = list(result.get("points") or [])
    current = result.get("current") or {}
    recommendation = result.get("recommendation")
    current_index = _point_index(points, current.get("auto_approve_max_risk"), current.get("max_auto_amount"))
    recommended_index = (
        _point_index(points, recommendation.get("auto_approve_max_risk"), recommendation.get("max_auto_amount"))
        if recommendation
        else None
    )
    rows = [
        {
            **point,
            "automation": pct(point.get("automation_rate")),
            "safe_automation": pct(point.get("safe_automation_rate")),
            "is_current": index == current_index,
            "is_recommended": index == recommended_index,
        }
        for index, point in enumerate(points)
    ]
    # The sweep is a grid (risk x amount); drawn in its own order the automation rate zigzags.
    # Ordered by how much each point automates, it reads as a trade-off curve: automation rises
    # along x and the unsafe bars show where harm begins.
    order = sorted(
        range(len(points)), key=lambda i: (points[i].get("auto_approved", 0), points[i].get("auto_unsafe", 0))
    )
    chart = {
        "labels": [_point_label(points[i]) for i in order],
        "automation_rate": [points[i].get("automation_rate") for i in order],
        "unsafe": [points[i].get("auto_unsafe", 0) for i in order],
        "current": order.index(current_index) if current_index is not None else None,
        "recommended": order.index(recommended_index) if recommended_index is not None else None,
    }
    bound = (
        f"≤ {pct(recommendation['unsafe_rate_upper_95'], 2)} unsafe ({recommendation['bound']} upper bound from "
        f"{recommendation['auto_approved']} labelled auto-approvals, {recommendation['unsafe_auto_approved']} unsafe)"
        if recommendation
        else ""
    )
    return {"rows": rows, "chart": chart, "recommendation": recommendation, "current": current, "bound": bound}


def _point_label(point: dict[str, Any]) -> str:
    label = f"risk ≤ {point.get('auto_approve_max_risk')}"
    if point.get("max_auto_amount") is not None:
        label += f", amount ≤ {point['max_auto_amount']:g}"
    return label


def _day_chart(groups: dict[str, dict[str, Any]]) -> dict[str, Any]:
    days = sorted(groups)
    return {
        "labels": days,
        "auto_approved": [groups[d]["by_status"].get(Status.AUTO_APPROVED, 0) for d in days],
        "held": [_held(groups[d]) for d in days],
        "blocked": [groups[d]["by_status"].get(Status.BLOCKED, 0) for d in days],
        "automation_rate": [groups[d].get("automation_rate") for d in days],
    }


def _shadow_context() -> dict[str, Any] | None:
    """The shadow panel: the API's figures, with the label table as rows of (label, shadow, live)."""
    found = shadow.shadow_figures()
    if found is None:
        return None
    statuses = (Status.AUTO_APPROVED, Status.NEEDS_REVIEW, Status.BLOCKED)
    rows = [
        {
            "label": label,
            "cells": [(found["by_label"][label][s], found["live_by_label"][label][s]) for s in statuses],
            "errors": found["by_label"][label]["error"],
            "newly_auto_approved": found["newly_auto_approved"][label],
        }
        for label in shadow.LABELS
    ]
    return {
        **found,
        "imported_at": datetime.fromisoformat(found["created_at"]),
        "agreement": pct(found["agreement_rate"]),
        "rows": rows,
        "live_unsafe_auto_approved": found["live_by_label"]["unsafe"][Status.AUTO_APPROVED],
    }


@reviewer_required
def evaluation_dashboard(request: HttpRequest) -> HttpResponse:
    filters = _filters(request)
    now = timezone.now()
    scope: dict[str, Any] = {
        "action_type": filters["action_type"] or None,
        "agent": filters["agent"] or None,
        "since": _since(filters["window"], now),
        "until": None,
    }
    by_day_figures = figures.evaluation_figures(group_by="day", **scope)
    by_day = {group["key"]: group for group in by_day_figures["groups"]}
    by_type_figures = figures.evaluation_figures(group_by="action_type", **scope)
    by_type = {group["key"]: group for group in by_type_figures["groups"]}
    overall = by_day_figures["overall"]
    agents = figures.agent_activity(since=scope["since"], until=scope["until"])
    if filters["agent"]:
        agents = [a for a in agents if a["agent"] == filters["agent"]]
    names = gate_selectors.action_type_names()
    sweep_type = _sweep_type(request, filters, names)
    sweep_result = sweep.threshold_sweep(sweep_type) if sweep_type else None
    rule_rows = rules.rule_health(sweep_type) if sweep_type else []
    insight = rule_insight.rule_insight(sweep_type) if sweep_type else None
    sweep_view = _sweep_context(sweep_result) if sweep_result else None
    export_query = urlencode(
        {
            k: v
            for k, v in {
                "action_type": filters["action_type"],
                "since": scope["since"].isoformat() if scope["since"] else "",
            }.items()
            if v
        }
    )
    charts = {
        "days": _day_chart(by_day),
        "sweep": sweep_view["chart"] if sweep_view else None,
        "rules": {
            "labels": [r["rule"] for r in rule_rows],
            "failed_safe": [r.get("failed_safe", 0) for r in rule_rows],
            "failed_unsafe": [r.get("failed_unsafe", 0) for r in rule_rows],
        },
    }
    context = {
        "filters": filters,
        "windows": [(key, label) for key, (label, _) in WINDOWS.items()],
        "window_label": WINDOWS[filters["window"]][0],
        "action_types": names,
        "agent_names": gate_selectors.agent_names(),
        "overall": _row("overall", overall),
        "audit": overall.get("audit") or {},
        "audit_bound": pct((overall.get("audit") or {}).get("unsafe_rate_upper_95")),
        "type_rows": [_row(name, figures) for name, figures in sorted(by_type.items())],
        "day_rows": [_row(day, figures) for day, figures in sorted(by_day.items())],
        "agents": [
            {
                **a,
                "held_or_blocked": pct(a.get("held_or_blocked_share")),
                "rejected_or_unsafe": pct(a.get("rejected_or_unsafe_share")),
                "repeated": pct(a.get("repeated_share")),
                "success": pct(a.get("success_rate")),
            }
            for a in agents  # flagged agents first
        ],
        "busy_agents": sum(1 for a in agents if a.get("busy_without_progress")),
        "sweep_type": sweep_type,
        "sweep": sweep_result,
        "sweep_view": sweep_view,
        "rules": [{**r, "precision_text": pct(r.get("precision"))} for r in rule_rows],
        "insight": insight,
        "charts": charts,
        "export_query": export_query,
        "may_apply": _may_change_policy(request),
        "shadow": _shadow_context(),
    }
    return render(request, "approvals/evaluation.html", context)


def _float_or_none(value: str | None) -> float | None:
    if value is None or value.strip() in ("", "None", "null"):
        return None
    return float(value)


@require_POST
@admin_required
def evaluation_apply(request: HttpRequest) -> HttpResponse:
    """Apply a sweep's recommendation (the thresholds the admin saw) as a new policy version."""
    name = request.POST.get("action_type", "")
    action_type = selectors.action_type_named(name)
    if action_type is None:
        raise Http404("No such action type.")
    back = f"{reverse('evaluation-dashboard')}?{urlencode({'sweep': name})}#sweep"
    try:
        risk = _float_or_none(request.POST.get("auto_approve_max_risk"))
        amount = _float_or_none(request.POST.get("max_auto_amount"))
        if risk is None:
            raise ValueError("auto_approve_max_risk is required")
    except ValueError as exc:
        messages.error(request, f"Nothing applied: {exc}.")
        return redirect(back)
    try:
        version = action_type_apply_thresholds(
            action_type=action_type,
            auto_approve_max_risk=risk,
            max_auto_amount=amount,
            actor=actor_of_user(request.user),  # type: ignore[arg-type]
            accept_risk=accepted_ids(request),
        )
    except policy.PolicyError as exc:
        messages.error(request, "Nothing applied: " + "; ".join(exc.errors))
        return redirect(back)
    except UnsafePolicyChange as refusal:
        return policy_change_confirm(request, refusal, base_template="base.html", cancel_url=back)
    amount_text = "" if amount is None else f", max_auto_amount {amount:g}"
    messages.success(
        request, f"{name}: auto_approve_max_risk {risk:g}{amount_text} is live as policy_version {version}."
    )
    return redirect(back)


# --- what-if --------------------------------------------------------------------------------------


def _current_policy_yaml() -> str:
    return yaml.safe_dump(policy_document_current(), sort_keys=False, allow_unicode=True, width=120)


@admin_required
def whatif_new(request: HttpRequest) -> HttpResponse:
    errors: list[str] = []
    text = ""
    if request.method == "POST":
        text = request.POST.get("document", "")
        try:
            document = yaml.safe_load(text)  # JSON is YAML too
        except yaml.YAMLError as exc:
            errors = [f"Not YAML or JSON: {exc}"]
        else:
            try:
                run = whatif_start(document=document, user=request.user)  # type: ignore[arg-type]
            except policy.PolicyError as exc:
                errors = exc.errors
            else:
                return redirect("evaluation-whatif-detail", run_id=run.pk)
    context = {
        "document": text or _current_policy_yaml(),
        "errors": errors,
        "runs": selectors.whatif_runs_recent(),
    }
    return render(request, "approvals/evaluation_whatif.html", context, status=400 if errors else 200)


def _run_status(run: WhatIfRun) -> dict[str, Any]:
    result = run.result or {}
    return {
        "state": run.state,
        "processed": run.processed,
        "total": run.total,
        "progress": run.progress,
        "error": run.error,
        "result": {"summary": result.get("summary"), "examples": len(result.get("examples") or [])}
        if run.state == WhatIfRun.State.DONE
        else None,
    }


def _label_counts(changed: dict[str, int]) -> str:
    return ", ".join(f"{n} {label}" for label, n in sorted(changed.items())) or NONE


def _summary_row(name: str, summary: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": name,
        "total": summary.get("total", 0),
        "newly_auto_approved": _label_counts(summary.get("newly_auto_approved") or {}),
        "newly_held": _label_counts(summary.get("newly_held") or {}),
        "newly_blocked": _label_counts(summary.get("newly_blocked") or {}),
        "unsafe_newly_auto_approved": (summary.get("newly_auto_approved") or {}).get("unsafe", 0),
        "automation_before": pct(summary.get("automation_rate_before")),
        "automation_after": pct(summary.get("automation_rate_after")),
        "unsafe_before": summary.get("unsafe_auto_approved_before", 0),
        "unsafe_after": summary.get("unsafe_auto_approved_after", 0),
    }


@admin_required
def whatif_detail(request: HttpRequest, run_id: int) -> HttpResponse:
    run = selectors.whatif_run(run_id, with_creator=True)
    if run is None:
        raise Http404("No such what-if run.")
    summary = (run.result or {}).get("summary") if run.state == WhatIfRun.State.DONE else None
    rows = []
    if summary:
        rows = [_summary_row("overall", summary["overall"])] + [
            _summary_row(name, figures) for name, figures in (summary.get("per_action_type") or {}).items()
        ]
    context = {
        "run": run,
        "percent": round(run.progress * 100),
        "rows": rows,
        "examples": (run.result or {}).get("examples", []) if summary else [],
        "types": [t.get("name") for t in (run.document or {}).get("action_types", []) if isinstance(t, dict)],
        "document": json.dumps(run.document, indent=2, ensure_ascii=False),
    }
    return render(request, "approvals/evaluation_whatif_run.html", context)


@admin_required
def whatif_status(request: HttpRequest, run_id: int) -> JsonResponse:
    run = selectors.whatif_run(run_id)
    if run is None:
        raise Http404("No such what-if run.")
    return JsonResponse(_run_status(run))
