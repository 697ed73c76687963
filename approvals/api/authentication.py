from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions
from rest_framework.request import Request

from approvals.gate.agents import agent_authenticate
from approvals.models import Agent
from approvals.ops import logging as gate_logging


class AgentTokenAuthentication(authentication.BaseAuthentication):
    """``Authorization: Bearer <agent token>``; the principal is the Agent itself."""

    keyword = "Bearer"

    def authenticate(self, request: Request) -> tuple[Agent, Agent] | None:
        header = authentication.get_authorization_header(request).split()
        if not header or header[0].lower() != self.keyword.lower().encode():
            return None
        if len(header) != 2:
            raise exceptions.AuthenticationFailed("Invalid Authorization header: expected 'Bearer <token>'.")
        try:
            token = header[1].decode()
        except UnicodeDecodeError:
            raise exceptions.AuthenticationFailed("Invalid token.") from None
        agent = agent_authenticate(token)
        if agent is None:
            raise exceptions.AuthenticationFailed("Invalid token.")
        gate_logging.bind(agent=agent.name)  # every log line of this request names its agent
        return agent, agent

    def authenticate_header(self, request: Request) -> str:
        return f'{self.keyword} realm="api"'


class AgentTokenScheme(OpenApiAuthenticationExtension):
    target_class = "approvals.api.authentication.AgentTokenAuthentication"
    name = "agentToken"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {"type": "http", "scheme": "bearer"}
