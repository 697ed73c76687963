from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.contrib.auth.decorators import login_required, permission_required
from django.contrib.auth.models import User
from django.http import HttpResponse
from rest_framework.exceptions import PermissionDenied
from rest_framework.permissions import BasePermission
from rest_framework.request import Request

from approvals.models import Agent

REVIEW_PERMISSION = "approvals.review_action"


def reviewer_required(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """For pages (not the API): anonymous visitors are sent to log in; logged-in users without the
    permission get 403."""
    return login_required(permission_required(REVIEW_PERMISSION, raise_exception=True)(view))


def is_reviewer(user: Any) -> bool:
    return (
        user is not None and not isinstance(user, Agent) and user.is_authenticated and user.has_perm(REVIEW_PERMISSION)
    )


class IsAgent(BasePermission):
    message = "This endpoint is for agents (Authorization: Bearer <agent token>)."

    def has_permission(self, request: Request, view: Any) -> bool:
        return isinstance(request.user, Agent)


class IsEnabledAgent(IsAgent):
    message = "This agent is disabled."

    def has_permission(self, request: Request, view: Any) -> bool:
        return isinstance(request.user, Agent) and request.user.enabled


class IsReviewer(BasePermission):
    message = "Reviewers only: this needs the approvals.review_action permission."

    def has_permission(self, request: Request, view: Any) -> bool:
        return is_reviewer(request.user)


class IsAgentOrReviewer(BasePermission):
    message = "Agents (their own actions) and reviewers only."

    def has_permission(self, request: Request, view: Any) -> bool:
        if isinstance(request.user, Agent):
            return request.user.enabled
        return is_reviewer(request.user)


def request_agent(request: Request) -> Agent:
    """The agent behind a request that an agent permission already let through."""
    if not isinstance(request.user, Agent):
        raise PermissionDenied(IsAgent.message)
    return request.user


def request_reviewer(request: Any) -> User:
    """The reviewer behind a request that a reviewer permission already let through."""
    if not isinstance(request.user, User) or not is_reviewer(request.user):
        raise PermissionDenied(IsReviewer.message)
    return request.user
