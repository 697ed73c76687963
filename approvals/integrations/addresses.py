"""The address guard of every request the gate sends on its own (webhooks, lookups): the URL's host
is resolved once and every address it resolves to must be public, unless private addresses are
allowed or the host is listed; the request then goes to the very address that was checked, with the
original Host header and TLS server name, so that a DNS answer that changes between the check and
the connection cannot redirect it (DNS rebinding)."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Collection
from typing import Any
from urllib.parse import urlsplit, urlunsplit


class AddressRefused(Exception):
    """The target may not be called (a private address, a bad URL); retrying will not help."""


def address_is_public(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not (ip.is_multicast or ip.is_reserved or ip.is_link_local or ip.is_loopback)


def _how_to_allow(what: str) -> str:
    prefix = "GATE_WEBHOOK" if what == "webhooks" else "GATE_LOOKUP"
    return f"set {prefix}_ALLOW_PRIVATE=1 or list the host in {prefix}_ALLOWED_HOSTS to allow it"


def literal_refusal(url: str, *, allow_private: bool, allowed_hosts: Collection[str], what: str) -> str | None:
    """Why ``url`` is refused on its face (an IP literal or ``localhost`` that may not be called),
    without resolving anything; None when only resolving can tell."""
    host = (urlsplit(url).hostname or "").lower()
    if allow_private or host in allowed_hosts:
        return None
    try:
        private = not address_is_public(host)
    except ValueError:  # a name, not an address
        private = host == "localhost" or host.endswith(".localhost")
    if private:
        return f"{host} is a private, loopback or reserved address; {what} to it are refused: {_how_to_allow(what)}"
    return None


def resolve(url: str, *, allow_private: bool, allowed_hosts: Collection[str], what: str) -> tuple[str, list[str], int]:
    """(host, the addresses to connect to, port) for ``url``, or AddressRefused. Nothing is sent."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise AddressRefused(f"not an http(s) URL: {url!r}")
    host = parts.hostname
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise AddressRefused(f"bad port in {url!r}") from exc
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise AddressRefused(f"cannot resolve {host!r}: {exc}") from exc
    resolved = [str(info[4][0]) for info in infos]
    if not resolved:
        raise AddressRefused(f"{host!r} resolves to no address")
    if not (allow_private or host.lower() in allowed_hosts):
        private = [a for a in resolved if not address_is_public(a)]
        if private:
            raise AddressRefused(
                f"{host!r} resolves to a private, loopback or reserved address ({', '.join(sorted(set(private)))}); "
                + _how_to_allow(what)
            )
    return host, resolved, port


def host_header(url: str, host: str, port: int) -> dict[str, str]:
    """The Host header of a request to ``url`` sent to an address instead of its host."""
    default_port = 443 if urlsplit(url).scheme == "https" else 80
    return {"Host": host if port == default_port else f"{host}:{port}"}


def pinned(url: str, host: str, address: str, port: int) -> tuple[str, dict[str, str], dict[str, Any]]:
    """(the URL with ``address`` in place of the host, the Host header, httpx extensions for TLS)."""
    parts = urlsplit(url)
    netloc_address = f"[{address}]" if ":" in address else address
    target = urlunsplit((parts.scheme, f"{netloc_address}:{port}", parts.path or "/", parts.query, ""))
    return target, host_header(url, host, port), ({"sni_hostname": host} if parts.scheme == "https" else {})
