"""Lookups (contract §6.1): the HTTP GETs an action type declares, sent by the worker before the
rules run, so that rules judge what the systems of record say and not only the agent's account.

Each lookup's URL is built from the proposal (approvals.policy.evidence), checked by the address
guard (approvals.integrations.addresses, with GATE_LOOKUP_ALLOW_PRIVATE and
GATE_LOOKUP_ALLOWED_HOSTS) and sent to the address it checked, with its own timeout; several are sent
concurrently. A 2xx JSON answer becomes ``lookups.<name>`` in CEL; anything else (a refused address,
a timeout, a non-2xx status, a body that is not JSON or is larger than GATE_LOOKUP_MAX_BYTES, a URL
expression that fails, a missing environment variable) is an ``error`` finding
``lookup:<name>`` and ``lookups.<name>`` is null: the action is held, never passed on missing
evidence. With ``cache_seconds``, answers are kept in the Django cache (Redis when deployed) under
the URL and headers.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import urllib3
from django.conf import settings
from django.core.cache import cache

from approvals.integrations import addresses
from approvals.policy import CompiledPolicy, LookupSpec, Proposal
from approvals.policy.engine import rule_context
from approvals.policy.evidence import EvidenceError, UrlTemplate, headers_from_environment
from approvals.policy.findings import finding

CACHE_PREFIX = "gate:lookup:"
MAX_CONCURRENT = 8


@dataclass(frozen=True)
class Answer:
    """One lookup's outcome: ``value`` for CEL (None when it failed) and ``record`` for the action."""

    name: str
    value: Any
    record: dict[str, Any]
    error: str = ""


class _Clients:
    """Keep-alive connection pools (urllib3: a few hundred microseconds less per request than a
    general-purpose client, which counts when every evaluation waits on its lookups), one per checked
    address, and one thread pool, per process, made lazily: a forked worker child makes its own."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pid = 0
        self._pools: dict[tuple[str, str, int, str], urllib3.HTTPConnectionPool] = {}
        self._threads: ThreadPoolExecutor | None = None

    def _fresh(self) -> None:
        if self._pid != os.getpid():
            with self._lock:
                if self._pid != os.getpid():
                    self._pools = {}
                    self._threads = ThreadPoolExecutor(MAX_CONCURRENT, thread_name_prefix="gate-lookup")
                    self._pid = os.getpid()

    def connections(self, scheme: str, address: str, port: int, host: str) -> urllib3.HTTPConnectionPool:
        """The pool of connections to ``address`` (checked by the guard) for ``host``: TLS names and
        verifies ``host``, whatever address it connects to."""
        self._fresh()
        key = (scheme, address, port, host)
        pool = self._pools.get(key)
        if pool is None:
            with self._lock:
                pool = self._pools.get(key)
                if pool is None:
                    options: dict[str, Any] = {"maxsize": MAX_CONCURRENT, "block": False, "retries": False}
                    if scheme == "https":
                        pool = urllib3.HTTPSConnectionPool(
                            address, port, server_hostname=host, assert_hostname=host, **options
                        )
                    else:
                        pool = urllib3.HTTPConnectionPool(address, port, **options)
                    self._pools[key] = pool
        return pool

    def pool(self) -> ThreadPoolExecutor:
        self._fresh()
        assert self._threads is not None
        return self._threads


_clients = _Clients()


def lookups_fetch(policy: CompiledPolicy, proposal: Proposal) -> list[Answer]:
    """Every lookup of ``policy`` for ``proposal``, in the policy's order; never raises."""
    specs = policy.spec.lookups
    if not specs:
        return []
    try:
        context = rule_context(policy, proposal, policy.evidence_variables)
    except Exception as exc:  # a value CEL cannot take: every lookup fails, the action is held
        return [_failed(spec, "", f"could not read the proposal: {exc}") for spec in specs]
    requests = [_request(spec, template, context) for spec, template in zip(specs, policy.lookup_urls, strict=True)]
    if len(requests) == 1:
        return [_answer(*requests[0])]
    return list(_clients.pool().map(lambda request: _answer(*request), requests))


def lookup_findings(answers: list[Answer]) -> list[dict]:
    return [
        finding(
            f"lookup:{answer.name}",
            "error",
            "review",
            f"lookup {answer.name} failed: the gate could not check the facts itself, so a person decides",
            error=answer.error,
        )
        for answer in answers
        if answer.error
    ]


def _request(spec: LookupSpec, template: UrlTemplate, context: Any) -> tuple[LookupSpec, str, dict[str, str], str]:
    """(spec, URL, headers, error) with the URL and headers built now, in the caller's thread."""
    try:
        url = template.render(context)
    except Exception as exc:  # EvidenceError, or a CEL error in an expression
        return spec, "", {}, f"URL: {exc}"
    try:
        headers = headers_from_environment(spec.headers)
    except EvidenceError as exc:
        return spec, url, {}, f"headers: {exc}"
    return spec, url, headers, ""


def _failed(spec: LookupSpec, url: str, error: str, **extra: Any) -> Answer:
    return Answer(spec.name, None, {"url": url, "error": error, **extra}, error)


def _answer(spec: LookupSpec, url: str, headers: dict[str, str], error: str) -> Answer:
    if error:
        return _failed(spec, url, error)
    key = ""
    if spec.cache_seconds:
        key = CACHE_PREFIX + hashlib.sha256(json.dumps([url, sorted(headers.items())]).encode()).hexdigest()
        try:
            cached = cache.get(key)
        except Exception:
            cached = None  # a cache that is down only costs the request
        if cached is not None:
            return Answer(spec.name, cached["body"], {"url": url, **cached, "cached": True})
    started = time.perf_counter()
    try:
        status, body = _get(url, headers, spec.timeout_ms / 1000)
    except addresses.AddressRefused as exc:
        return _failed(spec, url, f"address refused: {exc}")
    except urllib3.exceptions.NewConnectionError as exc:  # before timeouts: urllib3 counts it as one
        return _failed(spec, url, f"request failed: {exc}", ms=_ms(started))
    except (TimeoutError, urllib3.exceptions.TimeoutError):
        return _failed(spec, url, f"timed out after {spec.timeout_ms} ms", ms=_ms(started))
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        return _failed(spec, url, f"request failed: {type(exc).__name__}: {exc}", ms=_ms(started))
    except _TooLarge:
        return _failed(spec, url, f"answer larger than {settings.GATE_LOOKUP_MAX_BYTES} bytes", ms=_ms(started))
    ms = _ms(started)
    if not 200 <= status < 300:
        return _failed(spec, url, f"answered HTTP {status}", status=status, ms=ms)
    try:
        value = json.loads(body)
    except ValueError:
        return _failed(spec, url, "answer is not JSON", status=status, ms=ms)
    if key:
        with contextlib.suppress(Exception):  # the answer stands; only the next one is not saved a trip
            cache.set(key, {"status": status, "body": value}, timeout=spec.cache_seconds)
    return Answer(spec.name, value, {"url": url, "status": status, "ms": ms, "body": value})


class _TooLarge(Exception):
    pass


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 2)


def _get(url: str, headers: dict[str, str], timeout: float) -> tuple[int, bytes]:
    """GET ``url`` through the address the guard checked; (status, body) read up to the limit."""
    host, resolved, port = addresses.resolve(
        url,
        allow_private=settings.GATE_LOOKUP_ALLOW_PRIVATE,
        allowed_hosts={h.strip().lower() for h in settings.GATE_LOOKUP_ALLOWED_HOSTS if h.strip()},
        what="lookups",
    )
    parts = urlsplit(url)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    sent = {"Accept": "application/json", **headers, **addresses.host_header(url, host, port)}
    limit = settings.GATE_LOOKUP_MAX_BYTES
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    for address in dict.fromkeys(resolved):  # each checked address once, in resolver order
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("no time left to try another address")
        connections = _clients.connections(parts.scheme, address, port, host)
        try:
            response = connections.urlopen(
                "GET",
                target,
                headers=sent,
                redirect=False,
                retries=False,
                preload_content=False,
                timeout=urllib3.Timeout(connect=left, read=left),
            )
        except urllib3.exceptions.NewConnectionError as exc:
            last_error = exc
            continue
        try:
            chunks, size = [], 0
            for chunk in response.stream(64 * 1024):
                if time.monotonic() > deadline:  # a slow drip is a timeout too
                    raise TimeoutError("the answer took longer than the lookup's timeout")
                size += len(chunk)
                if size > limit:
                    raise _TooLarge
                chunks.append(chunk)
            return response.status, b"".join(chunks)
        except BaseException:
            response.close()  # never read the rest of an answer cut short: the connection goes
            raise
        finally:
            response.release_conn()
    assert last_error is not None
    raise last_error
