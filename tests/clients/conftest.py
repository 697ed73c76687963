"""The live stack an agent's client talks to (uvicorn and a Celery worker on the test database), with
an agent and a reviewer: one fixture for the client and example tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.agents_stack import Stack


@pytest.fixture
def stack(asgi_server: str) -> Iterator[Stack]:
    stack = Stack(asgi_server)
    yield stack
    stack.close()
