import os

from celery import Celery
from celery.signals import task_postrun, task_prerun, worker_process_init
from django.db import connections

from approvals.ops import logging as gate_logging
from approvals.ops.health import HeartbeatStep
from approvals.policy import supervised

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "escalation_app.settings")

app = Celery("escalation_app")
app.config_from_object("django.conf:settings", namespace="CELERY")
# The tasks modules: every installed app's (approvals, and bench.baseline when the benchmarks install
# it), then those of approvals' rooms, packages inside the app that are not apps of their own.
app.autodiscover_tasks()
app.autodiscover_tasks(
    [
        "approvals.gate",
        "approvals.lifecycle",
        "approvals.review",
        "approvals.evaluation",
        "approvals.integrations",
        "approvals.notifications",
    ]
)

# Observability: a heartbeat from every worker (read by /readyz, /metrics and /ops/), and the
# action a task handles named on its log lines.
app.steps["worker"].add(HeartbeatStep)
task_prerun.connect(gate_logging.celery_task_started)
task_postrun.connect(gate_logging.celery_task_finished)


@worker_process_init.connect
def start_rule_child(**_: object) -> None:
    """Each pool process starts the child its costly rules run in (approvals.policy.supervised) now,
    so that its first evaluation does not wait for the child's start."""
    supervised.child_start()


@task_prerun.connect
def drop_broken_db_connections(**_: object) -> None:
    """The worker keeps its database connection across tasks (CELERY_DB_REUSE_MAX), so nothing else
    notices one that PostgreSQL dropped (a restart): every later task would fail on it. After an
    error, a connection that no longer answers is closed, and the next query opens a new one."""
    for conn in connections.all(initialized_only=True):
        if conn.connection is not None and conn.errors_occurred and not conn.is_usable():
            conn.close()
