"""The reviewer's desk: the queue, one action, and the forms that decide, label and claim it."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode
from uuid import UUID

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.core.paginator import Page, Paginator
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_POST

from approvals import policy
from approvals.api.permissions import request_reviewer, reviewer_required
from approvals.errors import ActionConflict, InvalidParams, NotReviewerOf, ServiceError
from approvals.gate import selectors as gate_selectors
from approvals.models import LabelValue, ProposedAction, RememberedApproval, Status, Verdict
from approvals.review import display, params_form, selectors, services

PAGE_SIZE = 50
APPROVE_REASONS = [
    "Checked: matches the customer's request",
    "Within policy after review",
    "Verified with the customer",
]
REJECT_REASONS = [
    "Plausible but incorrect",
    "Wrong customer or order",
    "Amount does not match",
    "Against policy",
    "Not enough evidence in the trajectory",
]
# "Apply to similar actions in this session": the windows a reviewer picks from (minutes, shown as).
REMEMBER_WINDOWS = [(15, "15 min"), (60, "1 h"), (240, "4 h"), (24 * 60, "24 h")]
REMEMBER_DEFAULT_MINUTES = 60
# /review/<id>: the 404 page names the action that was not found.
REVIEW_PATH = re.compile(r"^/review/([0-9a-fA-F-]{36})/?$")
LABEL_TAGS = ["plausible_but_incorrect", "wrong_customer", "amount_mismatch", "policy_violation", "missing_lookup"]


def not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    """JSON for the API; for people, a page in the site's layout that says what was not found."""
    if request.path.startswith("/api/"):
        return JsonResponse({"detail": "Not found."}, status=404)
    match = REVIEW_PATH.match(request.path)
    context = {"request_path": request.path, "action_id": match.group(1) if match else None}
    return render(request, "404.html", context, status=404)


class DeferredJoinPaginator(Paginator):
    """Pages of a long queue: the page's ids come from the ordering index alone, and only those
    fifty rows are joined to their type, agent and claim. An OFFSET over joined rows grows with the
    page number; an OFFSET over index entries stays cheap."""

    object_list: QuerySet[ProposedAction]

    def page(self, number: Any) -> Page:
        number = self.validate_number(number)
        bottom = (number - 1) * self.per_page
        queryset = self.object_list
        ids = list(queryset.values_list("pk", flat=True)[bottom : bottom + self.per_page])
        rows = {row.pk: row for row in queryset.filter(pk__in=ids)}
        return Page([rows[pk] for pk in ids if pk in rows], number, self)


def _filters(request: HttpRequest) -> dict[str, str]:
    tab = request.GET.get("tab", "queue")
    return {
        "tab": tab if tab in selectors.QUEUE_TABS else "queue",
        "action_type": request.GET.get("action_type", "").strip(),
        "agent": request.GET.get("agent", "").strip(),
        "risk": request.GET.get("risk", "").strip(),
        "search": request.GET.get("q", "").strip()[:200],
    }


@reviewer_required
def review_queue(request: HttpRequest) -> HttpResponse:
    filters = _filters(request)
    queryset = selectors.review_page_queryset(user=request_reviewer(request), **filters)
    page = DeferredJoinPaginator(queryset, PAGE_SIZE).get_page(request.GET.get("page"))
    query = {k: v for k, v in {**filters, "q": filters["search"]}.items() if v and k != "search"}
    narrowed = {k: v for k, v in query.items() if k != "tab"}
    context = {
        "page": page,
        "filters": filters,
        "query": urlencode(narrowed),
        # The empty states: what the search or the filters matched nothing of, and how to undo them.
        "narrowed": bool(narrowed),
        "clear_search": "?" + urlencode({"tab": filters["tab"], **{k: v for k, v in narrowed.items() if k != "q"}}),
        "clear_all": "?" + urlencode({"tab": filters["tab"]}),
        "tabs": [("queue", "Waiting"), ("audit", "Audit sample"), ("decided", "Decided today")],
        "action_types": gate_selectors.action_type_names(),
        "agents": gate_selectors.agent_names(),
        "risk_bands": list(selectors.RISK_BANDS),
        "now": timezone.now(),
    }
    return render(request, "approvals/queue.html", context)


@reviewer_required
def review_row(request: HttpRequest, action_id: UUID) -> HttpResponse:
    """One queue row, for the live queue to insert when an action starts waiting: 404 when it is
    not waiting, not the reviewer's to review, or does not match the open queue's filters (passed
    along as the queue's query)."""
    filters = {**_filters(request), "tab": "queue"}
    action = get_object_or_404(selectors.review_page_queryset(user=request_reviewer(request), **filters), pk=action_id)
    return render(request, "approvals/_row.html", {"action": action, "tab": "queue", "now": timezone.now()})


def _review_check(request: HttpRequest, action_id: UUID) -> None:
    """404 for no such action; the 403 page for one of a type the reviewer does not review."""
    try:
        services.action_review_check(action_id=str(action_id), user=request_reviewer(request))
    except ProposedAction.DoesNotExist:
        raise Http404("No such action.") from None
    except NotReviewerOf as refusal:
        raise PermissionDenied(refusal.message) from None


def _remembered_state(remembered: RememberedApproval, now: datetime) -> str:
    if remembered.revoked_at is not None:
        return "revoked"
    return "active" if remembered.expires_at > now else "expired"


def _remember_offer(action: ProposedAction, now: datetime) -> dict[str, Any] | None:
    """What "apply to similar actions in this session" would approve, for the approve form."""
    session_id = selectors.session_of(action)
    if action.status != Status.NEEDS_REVIEW or session_id is None:
        return None
    return {
        "session_id": session_id,
        "failed": policy.failed_checks(action.findings),
        "windows": REMEMBER_WINDOWS,
        "default": REMEMBER_DEFAULT_MINUTES,
        "now": now,
        "until": now + timedelta(minutes=REMEMBER_DEFAULT_MINUTES),
    }


def _remembered_context(action: ProposedAction, now: datetime) -> dict[str, Any]:
    """The remembered approval that approved this action, and those its own approval made."""
    approved_by = selectors.remembered_approval_that_approved(action)
    if approved_by is not None:
        approved_by.state = _remembered_state(approved_by, now)  # type: ignore[attr-defined]
    made = selectors.remembered_approvals_made_by(action)
    for remembered in made:
        remembered.state = _remembered_state(remembered, now)  # type: ignore[attr-defined]
    return {"remembered_by": approved_by, "remembered_made": made}


def _evidence(evidence: Any) -> dict[str, list[dict[str, Any]]]:
    """What the gate saw itself (contract §6.1), for the page: each lookup's answer or error, each
    history aggregate's value and what it matched."""
    if not isinstance(evidence, dict):
        return {"lookups": [], "history": []}
    lookups = [
        {"name": name, **record, "body_json": display.pretty(record.get("body")) if "body" in record else ""}
        for name, record in (evidence.get("lookups") or {}).items()
    ]
    history = [
        {"name": name, **record, "matched_json": display.pretty(record.get("matched", {}))}
        for name, record in (evidence.get("history") or {}).items()
    ]
    return {"lookups": lookups, "history": history}


@reviewer_required
def review_detail(request: HttpRequest, action_id: UUID) -> HttpResponse:
    """One action; a POST here revokes one of the remembered approvals its approval made. Reading
    the page changes nothing: its script claims a held action (``review_claim``) once it is open."""
    _review_check(request, action_id)
    if request.method == "POST":
        return _remembered_revoke(request, action_id)
    try:
        action = selectors.review_action(action_id)
    except ProposedAction.DoesNotExist:
        raise Http404("No such action.") from None
    return _detail_page(request, action)


def _detail_page(
    request: HttpRequest, action: ProposedAction, *, status: int = 200, edit_errors: list[str] | None = None
) -> HttpResponse:
    """The action's page; after a refused edit (``edit_errors``), with the edit form open as typed."""
    reviewer = request_reviewer(request)
    risk = next((f for f in action.findings if f.get("rule") == "risk"), None)
    risk_terms = {f["rule"]: f["risk"] for f in action.findings if f.get("outcome") == "fail" and "risk" in f}
    claim_other = selectors.claim_holder(action) not in (None, reviewer.pk)
    now = timezone.now()
    failing, passing = display.findings_split(action.findings)
    steps, unfolded_why = display.trajectory_steps(
        action.trajectory, action.findings, selectors.rule_requirements(action.action_type_id)
    )
    context = {
        "action": action,
        "params_json": display.pretty(action.params),
        "params_items": action.params.items() if isinstance(action.params, dict) else [],
        "context_json": display.pretty(action.context),
        "failing": failing,
        "passing": passing,
        "steps": steps,
        "unfolded_why": unfolded_why,
        "status_look": display.status_look(),
        "evidence": _evidence(action.evidence),
        "risk": risk,
        "risk_terms": risk_terms,
        "base_risk": action.action_type.base_risk,
        "audit_events": selectors.action_audit_events(action),
        "labels": selectors.action_labels(action.pk),
        "decision": getattr(action, "decision", None),
        "claim_other": claim_other,
        "approve_reasons": APPROVE_REASONS,
        "reject_reasons": REJECT_REASONS,
        "label_tags": LABEL_TAGS,
        "label_values": LabelValue.choices,
        "remember": _remember_offer(action, now),
        **_remembered_context(action, now),
        **_edit_context(action, reviewer, request.POST if edit_errors else None, edit_errors or []),
    }
    return render(request, "approvals/detail.html", context, status=status)


def _edit_context(action: ProposedAction, reviewer: Any, form: Any, errors: list[str]) -> dict[str, Any]:
    """Edit, then approve (contract §6.3): the form's fields, what an approval so far changed, and
    the two-person rule's progress."""
    schema = action.action_type.params_schema
    approved = action.approved_params
    approvals = list(action.approvals.select_related("reviewer")) if action.approvals_count else []
    return {
        "param_fields": params_form.params_fields(schema, action.params, current=approved, form=form),
        "param_changes": params_form.params_changes(action.params, approved) if approved is not None else [],
        "edit_errors": errors,
        "edit_reason": form.get("reason", "") if form is not None else "",
        "approvals": approvals,
        "approved_by_me": any(approval.reviewer_id == reviewer.pk for approval in approvals),
    }


@reviewer_required
@require_POST
def review_claim(request: HttpRequest, action_id: UUID) -> JsonResponse:
    """Claim a held action for a few minutes (advisory: it never blocks a decision). Answers who
    holds it now, so that the page can say when someone else does."""
    reviewer = request_reviewer(request)
    try:
        action = services.action_claim(action_id=str(action_id), user=reviewer)
    except ProposedAction.DoesNotExist:
        raise Http404("No such action.") from None
    except NotReviewerOf as refusal:
        return JsonResponse({"detail": refusal.message}, status=403)
    holder = selectors.claim_holder(action)
    return JsonResponse(
        {
            "status": action.status,
            "claimed_by": action.claimed_by.get_username() if holder is not None and action.claimed_by else None,
            "claimed_until": action.claimed_until.isoformat() if holder is not None and action.claimed_until else None,
            "mine": holder == reviewer.pk,
        }
    )


def _remembered_revoke(request: HttpRequest, action_id: UUID) -> HttpResponse:
    remembered = selectors.remembered_approval_of_action(action_id, request.POST.get("remembered", ""))
    if remembered is None:
        messages.error(request, "Not revoked: no such remembered approval of this action.")
        return redirect("review-detail", action_id=action_id)
    remembered = services.remembered_approval_revoke(remembered=remembered, user=request_reviewer(request))
    messages.success(
        request,
        f"Revoked: similar actions of session {remembered.session_id} are held for review again "
        f"(it approved {remembered.applied_to.count()}).",
    )
    return redirect("review-detail", action_id=action_id)


@reviewer_required
@require_POST
def review_decide(request: HttpRequest, action_id: UUID) -> HttpResponse:
    _review_check(request, action_id)
    verdict = request.POST.get("verdict", "")
    reason = " — ".join(
        part for part in (request.POST.get("preset", "").strip(), request.POST.get("reason", "").strip()) if part
    )
    remember_minutes = None
    if request.POST.get("remember"):
        raw = request.POST.get("remember_minutes", str(REMEMBER_DEFAULT_MINUTES)).strip()
        if not raw.isdigit():
            messages.error(request, "Not applied: choose how long to apply the approval to similar actions.")
            return redirect("review-detail", action_id=action_id)
        remember_minutes = int(raw)
    params = None
    if request.POST.get("edit"):
        # Edit, then approve: the form's fields read by the type's schema; the service checks the rest.
        action = selectors.review_action(action_id)
        try:
            params = params_form.params_from_form(
                action.action_type.params_schema, action.params, request.POST, current=action.approved_params
            )
        except params_form.ParamsFormError as refused:
            return _detail_page(request, action, status=400, edit_errors=refused.errors)
    try:
        decided = services.action_decide(
            action_id=str(action_id),
            user=request_reviewer(request),
            verdict=verdict,
            reason=reason,
            remember_minutes=remember_minutes,
            params=params,
        )
    except NotReviewerOf as refusal:  # the review group changed since the check above
        raise PermissionDenied(refusal.message) from None
    except InvalidParams as refused:  # the edit does not fit the schema: nothing changed
        problems = [f"{problem['path'] or 'params'}: {problem['message']}" for problem in refused.problems]
        return _detail_page(request, selectors.review_action(action_id), status=400, edit_errors=problems)
    except ActionConflict as exc:
        current = selectors.review_action(action_id)
        if current.status == Status.NEEDS_REVIEW:  # the two-person rule refused it (same reviewer, other params)
            messages.error(request, f"Not applied: {exc.message}.")
        else:
            messages.error(
                request, f"Not applied: this action was already {current.get_status_display().lower()} elsewhere."
            )
        return redirect("review-detail", action_id=action_id)
    except ServiceError as exc:
        messages.error(request, exc.message)
        return redirect("review-detail", action_id=action_id)
    if decided.status == Status.NEEDS_REVIEW:
        messages.success(
            request,
            f"Approval recorded ({decided.approvals_count} of {decided.approvals_required}): "
            f"{decided.action_type} needs another reviewer.",
        )
    else:
        messages.success(request, f"{'Approved' if verdict == Verdict.APPROVE else 'Rejected'}: {decided.action_type}.")
    if remember_minutes is not None and decided.decided_at is not None:
        until = decided.decided_at + timedelta(minutes=remember_minutes)
        messages.success(
            request,
            f"Similar {decided.action_type} actions of session {selectors.session_of(decided)} are approved until "
            f"{until:%Y-%m-%d %H:%M} UTC; revoke it on the approved action's page.",
        )
    following = selectors.review_next_action(decided, request_reviewer(request))
    return redirect(reverse("review-detail", args=[following.pk]) if following else reverse("review-queue"))


@reviewer_required
@require_POST
def review_label(request: HttpRequest, action_id: UUID) -> HttpResponse:
    _review_check(request, action_id)
    try:
        action = selectors.review_action(action_id)
    except ProposedAction.DoesNotExist:
        raise Http404("No such action.") from None
    label = request.POST.get("label", "")
    if label not in LabelValue.values:
        messages.error(request, "Choose safe or unsafe.")
        return redirect("review-detail", action_id=action_id)
    tags = request.POST.getlist("tags") + [t.strip() for t in request.POST.get("other_tags", "").split(",")]
    services.label_create(
        action=action,
        author=request_reviewer(request),
        label=label,
        tags=sorted({t for t in tags if t})[:20],
        note=request.POST.get("note", "")[:5000],
    )
    messages.success(request, f"Labelled {label}.")
    return redirect("review-detail", action_id=action_id)
