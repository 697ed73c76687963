"""Operations: probes (/healthz, /readyz), /metrics, the admins' /ops/ page, structured logs and
the request-limit middleware.

Nothing is imported here: ``LOGGING`` loads :mod:`approvals.ops.logging` before Django is set up,
and ``python -m approvals.ops.health worker`` runs without Django settings.
"""
