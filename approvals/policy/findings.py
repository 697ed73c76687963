"""A finding: what one check of the decision procedure found, as actions store it."""

from __future__ import annotations

from typing import Any


def finding(rule: str, outcome: str, effect: str, message: str, **extra: Any) -> dict:
    """``outcome``: pass | fail | error; ``effect``: none | review | block | risk."""
    return {"rule": rule, "outcome": outcome, "effect": effect, "message": message, **extra}
