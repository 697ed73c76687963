"""ASGI entry point: HTTP through Django, websockets through Channels (contract §1), and the MCP
gateway at /mcp (contract §6.4)."""

import os
from typing import Any

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "escalation_app.settings")
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402  (needs the app registry ready)
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402

from approvals.mcp.gateway import mcp_gateway_app  # noqa: E402
from approvals.review.routing import websocket_urlpatterns  # noqa: E402


async def http_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """/mcp (and /mcp/) to the MCP gateway, everything else to Django."""
    if scope["path"].rstrip("/") == "/mcp":
        await mcp_gateway_app(scope, receive, send)
    else:
        await django_asgi_app(scope, receive, send)


application = ProtocolTypeRouter(
    {
        "http": http_app,
        "websocket": AllowedHostsOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
    }
)
