"""``POST /integrations/slack/interactions``: Slack's requests when someone clicks a button of a
held action's message (contract §6.3). Signed by Slack, not by a session: no CSRF token, no login."""

from __future__ import annotations

import time

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from approvals.notifications.services import slack_interaction_apply


@csrf_exempt
@require_POST
def slack_interactions(request: HttpRequest) -> HttpResponse:
    """Decided here, in one transaction, well within Slack's 3 seconds; replies to the clicking user
    go through the click's response_url, from the worker."""
    result = slack_interaction_apply(
        body=request.body,
        timestamp=request.headers.get("X-Slack-Request-Timestamp", ""),
        signature=request.headers.get("X-Slack-Signature", ""),
        now=time.time(),
    )
    if result.error:
        return JsonResponse({"detail": result.error}, status=result.status)
    return HttpResponse(status=result.status)
