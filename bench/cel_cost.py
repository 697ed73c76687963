"""Measure the CEL cost model's constants with the reference binding, and check the model.

    .venv/bin/python bench/cel_cost.py [--report bench/results/cel_cost.md]

Each constant of approvals/policy/cel_cost.py is measured here on one core (best of five runs,
so that a busy machine inflates it less): the time per element a comprehension visits and per
value it copies, what map/filter's copy of the list built so far costs, a field selection, a
comparison, a byte of string searched or matched, a call of the gate's Python functions. Then
the model's estimates beside measured times, for rules that run long.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import cel  # noqa: E402

from approvals.policy import cel_cost, language  # noqa: E402
from approvals.policy.cel_syntax import cel_parse  # noqa: E402
from approvals.policy.rewrite import STEPS, for_binding  # noqa: E402

BIG_PATTERN = (
    r"(?i)\b(sick|sickness|ill|illness|unwell|health|medical|hospital|hospitali[sz]ed|injury|injured|surgery"
    r"|doctor|weather|storm|hurricane|snow|snowstorm|blizzard|flood|flooding|typhoon|tornado)\b"
)


def best(expression: str, variables: dict[str, Any], runs: int = 5) -> float:
    """Seconds of the fastest of ``runs`` executions."""
    program = cel.compile(expression)
    context = cel.Context(variables, language.FUNCTIONS)
    fastest = float("inf")
    for _ in range(runs):
        started = time.perf_counter()
        program.execute(context)
        fastest = min(fastest, time.perf_counter() - started)
    return fastest


def element(values: int) -> dict[str, Any]:
    """A map holding about ``values`` values, as tool results do: strings, numbers, small maps."""
    pairs = max(values - 3, 0) // 3
    return {"id": "r-1", "items": [{"name": f"item {i}", "n": i} for i in range(pairs)]}


def values_of(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + sum(values_of(v) for v in value.values())
    if isinstance(value, list):
        return 1 + sum(values_of(v) for v in value)
    return 1


def constants() -> dict[str, float]:
    n = 400
    found: dict[str, float] = {}
    ints = list(range(n))
    big = [element(100) for _ in range(n)]
    small = [element(4) for _ in range(n)]
    # a visited element: scalars, then 100-value maps
    visit_scalar = best("l.all(x, true)", {"l": ints}) / n * 1e9
    visit_big = best("l.all(x, true)", {"l": big}) / n * 1e9
    found["VISIT_VALUE_NS"] = (visit_big - visit_scalar) / (values_of(big[0]) - 1)
    found["VISIT_NS"] = max(visit_scalar - cel_cost.NODE_NS, 0.0)
    # map copies the list built so far at every element: n²/2 copies
    pairs = n * n / 2
    append_scalar = (best("size(l.map(x, x)) > 0", {"l": ints}) - visit_scalar * n / 1e9) / pairs * 1e9
    append_small = (best("size(l.map(x, x)) > 0", {"l": small}) - visit_scalar * n / 1e9) / pairs * 1e9
    found["APPEND_VALUE_NS"] = max(append_small - append_scalar, 0.0) / (values_of(small[0]) - 1)
    found["APPEND_NS"] = max(append_scalar, 0.0)
    # one node more per element: a comparison with a name and a literal (three nodes)
    one = best("l.all(x, x >= 0)", {"l": ints})
    four = best("l.all(x, x >= 0 && x >= 0 && x >= 0 && x >= 0)", {"l": ints})
    found["NODE_NS"] = (four - one) / n / 9 * 1e9
    listed = values_of(big[0]["items"])
    selected = best("l.all(x, x.items != null)", {"l": big}) - best("l.all(x, x.id != null)", {"l": big})
    found["SELECT_VALUE_NS"] = max(selected / n / listed * 1e9, 0.0)
    twins = [{**e, "again": [dict(i) for i in e["items"]]} for e in big]
    equal = best("l.all(x, x.items == x.again)", {"l": twins}) - best("l.all(x, x.id == x.id)", {"l": twins})
    found["EQUAL_VALUE_NS"] = max((equal / n * 1e9 - 2 * listed * found["SELECT_VALUE_NS"]) / listed, 0.0)
    text = ["a" * 65536 for _ in range(50)]
    short = ["a" for _ in range(50)]
    found["BYTE_NS"] = (
        (best("l.all(x, !x.contains('b'))", {"l": text}) - best("l.all(x, !x.contains('b'))", {"l": short}))
        / 50
        / 65535
        * 1e9
    )
    found["MATCH_BYTE_NS"] = (
        (best("l.all(x, !x.matches('b'))", {"l": text}) - best("l.all(x, !x.matches('b'))", {"l": short}))
        / 50
        / 65535
        * 1e9
    )
    found["DYNAMIC_PATTERN_NS"] = best("l.all(x, !x.matches(p))", {"l": short[:10], "p": BIG_PATTERN}) / 10 * 1e9
    # the gate's functions: a call, a value handed over, a byte of text read
    call = best("l.all(x, !negative('b'))", {"l": short}) / 50 * 1e9
    found["PYTHON_CALL_NS"] = call
    said: list[dict[str, Any]] = [{"kind": "message", "role": "user", "content": "a", "tool": "", "args": {}}] * 200
    handed = best("l.all(x, !user_said(trajectory, 'b'))", {"l": short[:10], "trajectory": said}) / 10 * 1e9
    found["PYTHON_VALUE_NS"] = max((handed - call) / (200 * 7), 0.0)
    words = ["word " * 2000 + str(i) for i in range(10)]  # longer than language's cache, distinct
    read = best("l.all(x, !negative(x))", {"l": words}, runs=1) / 10 * 1e9
    found["PYTHON_BYTE_NS (negative)"] = max((read - call) / len(words[0]), 0.0)
    return found


def steps(n: int, values: int = 10) -> list[dict[str, Any]]:
    return [
        {
            "kind": "tool_call",
            "tool": f"t{i % 7}",
            "args": {"x": str(i)},
            "result": element(values),
            "role": "assistant",
            "content": "I would like to change the date of my flight, it is booked for next week." * 2,
        }
        for i in range(n)
    ]


CHECKS: list[tuple[str, str, int]] = [  # (what, rule, steps)
    ("one pass", "trajectory.exists(s, s.tool == 'zz' && s.args.x == 'a')", 1000),
    ("map of the steps", "size(trajectory.map(s, s.tool)) > 0", 1000),
    ("nested exists", "trajectory.exists(a, trajectory.exists(b, a.tool == b.tool + 'x'))", 150),
    ("map in map (the issue's)", "size(trajectory.map(a, trajectory.map(b, a.tool == b.tool))) > 0", 60),
    ("pattern in a pass", f"trajectory.exists(s, s.content.matches(r'{BIG_PATTERN}'))", 100),
]


def checks() -> list[tuple[str, int, float, float, float]]:
    rows = []
    for label, written, count in CHECKS:
        expression = for_binding(written)  # as the gate runs it (approvals.policy.rewrite)
        variables = {"trajectory": steps(count), STEPS: list(range(count))}
        n = len(variables["trajectory"])
        measured = best(expression, variables, runs=2)
        trajectory = variables["trajectory"]
        actual = cel_cost.Assumptions(
            "measured",
            unknown_items=cel_cost.Poly.const(10),
            unknown_values=cel_cost.Poly.const(values_of(trajectory[0]["result"])),
            string_bytes=cel_cost.Poly.const(max(len(s["content"]) for s in trajectory)),
            step_values=cel_cost.Poly.const(values_of(trajectory[0])),
            selective=False,
        )
        estimated = cel_cost.estimate(cel_parse(expression), actual).cost.at(n)
        expected = cel_cost.estimate(cel_parse(expression), cel_cost.expected(1000, 1024 * 1024)).cost.at(1000)
        rows.append((f"{label}: `{written[:70]}`", n, measured, estimated / 1e9, expected / 1e9))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--report", default=str(ROOT / "bench" / "results" / "cel_cost.md"))
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[-1]})
    found = constants()
    machine = platform.processor() or platform.machine()
    machine += f", {os.cpu_count()} cores, Python {platform.python_version()}"
    lines = [
        "# CEL cost model: constants and checks",
        "",
        f"`.venv/bin/python bench/cel_cost.py` on {machine}, one core, load {os.getloadavg()[0]:.1f}, "
        f"{datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}.",
        "",
        "| constant | measured (ns) | in approvals/policy/cel_cost.py |",
        "| --- | ---: | ---: |",
    ]
    for name, value in found.items():
        held = getattr(cel_cost, name.split()[0])
        held = held["negative"] if isinstance(held, dict) else held
        lines.append(f"| `{name}` | {value:,.1f} | {held:,.1f} |")
    lines += [
        "",
        "| rule | steps | measured (s) | estimated at these steps (s) | estimated at import, 1,000 steps (s) |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    lines += [f"| {label} | {n} | {m:.3f} | {e:.3f} | {w:.3f} |" for label, n, m, e, w in checks()]
    report = "\n".join(lines) + "\n"
    print(report)
    Path(args.report).write_text(report)


if __name__ == "__main__":
    main()
