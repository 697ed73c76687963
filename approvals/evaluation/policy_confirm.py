"""The confirm step of a policy change the safety net refused (contract §6.2): a page that lists
the labelled-unsafe actions the change would newly auto-approve, with the labelled-safe ones it
would newly automate, and a "go live anyway" button that sends the same form again with those
action ids accepted. Used by the admin's save of a type and the evaluation page's threshold apply.
"""

from __future__ import annotations

from collections.abc import Set
from typing import Any

from django.http import HttpRequest
from django.template.response import TemplateResponse

from approvals.errors import UnsafePolicyChange

ACCEPT_FIELD = "_accept_risk"
NOT_RESENT = frozenset({"csrfmiddlewaretoken", ACCEPT_FIELD})


def accepted_ids(request: HttpRequest) -> Set[str] | bool:
    """The action ids a confirm page accepted (sent back in ACCEPT_FIELD), or False."""
    ids = frozenset(i for i in request.POST.get(ACCEPT_FIELD, "").split(",") if i.strip())
    return ids or False


def policy_change_confirm(
    request: HttpRequest,
    refusal: UnsafePolicyChange,
    *,
    base_template: str,
    cancel_url: str,
    context: dict[str, Any] | None = None,
) -> TemplateResponse:
    """The confirm page for ``refusal``; its button posts the request's own fields again to the
    same address, with the cases' ids accepted."""
    hidden = [(name, value) for name, values in request.POST.lists() if name not in NOT_RESENT for value in values]
    return TemplateResponse(
        request,
        "approvals/policy_change_confirm.html",
        {
            **(context or {}),
            "base_template": base_template,
            "title": "Go live anyway?",
            "cases": refusal.cases,
            "safe_newly_auto_approved": refusal.safe_newly_auto_approved,
            "replayed": refusal.replayed,
            "hidden": hidden,
            "accept_field": ACCEPT_FIELD,
            "accept_ids": ",".join(case["id"] for case in refusal.cases),
            "action_url": request.path,
            "cancel_url": cancel_url,
        },
        status=409,
    )
