"""Who is told of a held action, as a policy file writes it (contract §6.3): ``notify_emails``, a
list of e-mail addresses, checked here with their place; ``notify_slack`` (a project addition) is a
plain boolean of the action type."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.core.validators import EmailValidator

MAX_NOTIFY_EMAILS = 50
_is_email = EmailValidator()


def parse_notify_emails(data: Any, place: str, errors: list[str]) -> tuple[str, ...]:
    """A type's ``notify_emails``: distinct valid addresses, in the order written; each problem is
    appended to ``errors`` as ``place[index]: message``."""
    if data is None:
        return ()
    if not isinstance(data, list):
        errors.append(f"{place}: must be a list of e-mail addresses")
        return ()
    if len(data) > MAX_NOTIFY_EMAILS:
        errors.append(f"{place}: has {len(data)} addresses; at most {MAX_NOTIFY_EMAILS} are allowed")
        return ()
    addresses: list[str] = []
    for index, value in enumerate(data):
        where = f"{place}[{index}]"
        if not isinstance(value, str):
            errors.append(f"{where}: must be an e-mail address (a string)")
            continue
        try:
            _is_email(value.strip())
        except ValidationError:
            errors.append(f"{where}: {value!r} is not a valid e-mail address")
            continue
        if value.strip().lower() in (a.lower() for a in addresses):
            errors.append(f"{where}: {value!r} is listed twice")
            continue
        addresses.append(value.strip())
    return tuple(addresses)
