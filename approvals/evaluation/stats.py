"""Statistics for the evaluation figures: the exact Clopper-Pearson bound (through the incomplete
beta function), percentiles in PostgreSQL and their Python equivalents for the embedded SQLite mode.
"""

from __future__ import annotations

import math
from typing import Any

from django.db import connection
from django.db.models import Aggregate, FloatField

BOUND = "one-sided 95% Clopper\u2013Pearson"


def _beta_continued_fraction(a: float, b: float, x: float) -> float:
    """Lentz's continued fraction for the incomplete beta function (Numerical Recipes, betacf)."""
    tiny, eps = 1e-300, 1e-15
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 1000):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < eps:
            break
    return h


def regularized_incomplete_beta(a: float, b: float, x: float) -> float:
    """I_x(a, b), the CDF at x of Beta(a, b)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    front = math.exp(log_front)
    # The continued fraction converges fast below the mean; above it use the symmetry I_x(a,b) = 1 - I_1-x(b,a).
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _beta_continued_fraction(a, b, x) / a
    return 1.0 - front * _beta_continued_fraction(b, a, 1.0 - x) / b


def clopper_pearson_upper(unsafe: int, n: int, confidence: float = 0.95) -> float | None:
    """Exact one-sided upper bound on a binomial proportion after ``unsafe`` events in ``n`` trials.

    The p with P(X <= unsafe; n, p) = 1 - confidence, i.e. the ``confidence`` quantile of
    Beta(unsafe + 1, n - unsafe), found by bisection. None when n == 0; 1.0 when unsafe == n.
    """
    if not 0 <= unsafe <= n:
        raise ValueError("need 0 <= unsafe <= n")
    if not 0.0 < confidence < 1.0:
        raise ValueError("confidence must be between 0 and 1")
    if n == 0:
        return None
    if unsafe == n:
        return 1.0
    a, b = unsafe + 1.0, float(n - unsafe)
    low, high = 0.0, 1.0
    for _ in range(200):
        mid = (low + high) / 2.0
        if regularized_incomplete_beta(a, b, mid) < confidence:
            low = mid
        else:
            high = mid
        if high - low < 1e-13:
            break
    return high


def percentile_cont(values: list[float], fraction: float) -> float | None:
    """PostgreSQL's percentile_cont (linear interpolation) in Python, for SQLite."""
    if not values:
        return None
    ordered = sorted(values)
    position = fraction * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


class PercentileCont(Aggregate):
    """``percentile_cont(f) WITHIN GROUP (ORDER BY expr)`` (PostgreSQL only)."""

    function = "percentile_cont"
    name = "PercentileCont"
    template = "%(function)s(%(fraction)s) WITHIN GROUP (ORDER BY %(expressions)s)"
    output_field = FloatField()

    def __init__(self, expression: Any, fraction: float, **extra: Any) -> None:
        if not 0.0 <= fraction <= 1.0:
            raise ValueError("fraction must be between 0 and 1")
        super().__init__(expression, fraction=repr(float(fraction)), **extra)


class PercentilesDisc(Aggregate):
    """``percentile_disc(ARRAY[...]) WITHIN GROUP (ORDER BY expr)``: several quantiles in one sort."""

    function = "percentile_disc"
    name = "PercentilesDisc"
    template = "%(function)s(ARRAY[%(fractions)s]::double precision[]) WITHIN GROUP (ORDER BY %(expressions)s)"

    def __init__(self, expression: Any, fractions: list[float], **extra: Any) -> None:
        from django.contrib.postgres.fields import ArrayField

        text = ", ".join(repr(float(f)) for f in fractions if 0.0 <= f <= 1.0)
        super().__init__(expression, fractions=text, output_field=ArrayField(FloatField()), **extra)


def quantiles(values: list[float], count: int) -> list[float]:
    """PostgreSQL's percentile_disc at 0, 1/count, ..., 1 in Python, for SQLite."""
    ordered = sorted(values)
    if not ordered:
        return []
    return [ordered[max(0, math.ceil(i * len(ordered) / count) - 1)] for i in range(count + 1)]


def is_postgres() -> bool:
    """Percentiles and JSON arrays are aggregated in SQL on PostgreSQL, in Python on SQLite."""
    return connection.vendor == "postgresql"


def rate(part: int, whole: int) -> float | None:
    """part / whole to 6 places; None, not zero, when there is nothing to divide by."""
    return round(part / whole, 6) if whole else None
