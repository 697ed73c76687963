"""The reviewer's pages: the queue, one action, and the forms that decide and label it."""

from __future__ import annotations

import json
from uuid import UUID

from django.contrib import messages
from django.contrib.auth.decorators import login_required, permission_required
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST
from django.views.defaults import page_not_found

from approvals import selectors, services
from approvals.api.permissions import REVIEW_PERMISSION, request_reviewer
from approvals.models import LabelValue, ProposedAction, Verdict


def not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    if request.path.startswith("/api/"):
        return JsonResponse({"detail": "Not found."}, status=404)
    return page_not_found(request, exception)


def reviewer_required(view):  # type: ignore[no-untyped-def]
    """Anonymous visitors are sent to log in; logged-in users without the permission get 403."""
    return login_required(permission_required(REVIEW_PERMISSION, raise_exception=True)(view))


@reviewer_required
def review_queue(request: HttpRequest) -> HttpResponse:
    queue = selectors.review_queue()
    action_type = request.GET.get("action_type")
    if action_type:
        queue = queue.filter(action_type__name=action_type)
    page = Paginator(queue, 50).get_page(request.GET.get("page"))
    return render(request, "approvals/queue.html", {"page": page, "action_type": action_type or ""})


@reviewer_required
def review_detail(request: HttpRequest, action_id: UUID) -> HttpResponse:
    action = get_object_or_404(selectors.actions_visible_to(request.user), pk=action_id)
    context = {
        "action": action,
        "params_json": json.dumps(action.params, indent=2, sort_keys=True),
        "audit_events": action.audit_events.all(),
        "labels": action.labels.select_related("author"),
        "verdicts": Verdict.choices,
        "label_values": LabelValue.choices,
    }
    return render(request, "approvals/detail.html", context)


@reviewer_required
@require_POST
def review_decide(request: HttpRequest, action_id: UUID) -> HttpResponse:
    get_object_or_404(ProposedAction.objects.only("pk"), pk=action_id)
    verdict = request.POST.get("verdict", "")
    try:
        services.action_decide(
            action_id=str(action_id),
            user=request_reviewer(request),
            verdict=verdict,
            reason=request.POST.get("reason", ""),
        )
    except services.ServiceError as exc:
        messages.error(request, exc.message)
        return redirect("review-detail", action_id=action_id)
    messages.success(request, f"Action {verdict}d.")
    return redirect("review-queue")


@reviewer_required
@require_POST
def review_label(request: HttpRequest, action_id: UUID) -> HttpResponse:
    action = get_object_or_404(ProposedAction.objects.all(), pk=action_id)
    label = request.POST.get("label", "")
    if label not in LabelValue.values:
        messages.error(request, "Choose safe or unsafe.")
    else:
        tags = [t.strip() for t in request.POST.get("tags", "").split(",") if t.strip()]
        services.label_create(
            action=action, author=request_reviewer(request), label=label, tags=tags, note=request.POST.get("note", "")
        )
        messages.success(request, f"Labelled {label}.")
    return redirect("review-detail", action_id=action_id)
