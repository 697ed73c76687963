"""Bench-only: the bare DRF endpoint the ingest and decision benchmarks compare the gate against.

Installed and mounted (at /bench/baseline/) only when GATE_BENCH_BASELINE=1; never in production.
"""
