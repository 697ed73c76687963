"""Template filters of the reviewer pages."""

from __future__ import annotations

import json
from typing import Any

from django import template

from approvals.review import display

register = template.Library()


@register.filter
def params_summary(params: Any, length: int = 90) -> str:
    """``order_id=A-1 · amount=42.5``: the params at a glance (escaped by the template, like all text)."""
    if isinstance(params, dict):
        parts = [
            f"{key}={value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)}"
            for key, value in params.items()
        ]
        text = " · ".join(parts)
    else:
        text = json.dumps(params, ensure_ascii=False)
    return text if len(text) <= length else text[: length - 1] + "…"


@register.filter
def why_held(findings: Any) -> dict[str, Any]:
    """The failing checks of an action, short, for the queue's "why held" cell."""
    return display.why_held(findings)


@register.filter
def banner_kind(status: str) -> str:
    """info, warning or error: the colour of an action's status banner."""
    return display.banner_kind(status)
