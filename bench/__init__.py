"""Benchmarks and the soak (bench/README in each script's docstring); importable for tests."""
