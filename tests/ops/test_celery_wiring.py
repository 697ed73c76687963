"""Celery wiring that the web processes' speed depends on (bench/results/report.md, profiles)."""

from __future__ import annotations

import threading

from escalation_app.celery import app


def test_one_result_backend_serves_every_thread() -> None:
    # Under ASGI every request runs in a thread of its own; a backend per thread meant a scan of every
    # installed package's entry points on each .delay(). The gate keeps no results: one disabled
    # backend, shared.
    first = app.backend
    seen = []
    threads = [threading.Thread(target=lambda: seen.append(app.backend)) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(backend is first for backend in seen)
    assert type(app.backend).__name__ == "DisabledBackend"


def test_every_room_has_its_tasks_registered_under_their_kept_names() -> None:
    app.loader.import_default_modules()
    names = set(app.tasks)
    assert {
        "approvals.tasks.evaluate_action",
        "approvals.tasks.sweep_pending_actions",
        "approvals.tasks.enforce_deadlines",
        "approvals.tasks.deliver_webhook",
        "approvals.tasks.whatif_replay",
        "approvals.lifecycle.tasks.sweep_outbox",
    } <= names
