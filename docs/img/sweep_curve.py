"""Draw a threshold sweep's curve as a small SVG (no plotting library).

    DATABASE_URL=... .venv/bin/python docs/img/sweep_curve.py ACTION_TYPE [--out docs/img/sweep-ACTION_TYPE.svg]

Runs ``approvals.evaluation.sweep.threshold_sweep(ACTION_TYPE)`` on the database DATABASE_URL names and plots,
against auto_approve_max_risk, how many labelled safe and unsafe actions those thresholds would
auto-approve (a step curve: a candidate holds until the next), with the current threshold and the
recommendation marked. For a type with an amount_path, the amount is fixed at the recommendation's
(else the current) max_auto_amount.
"""

from __future__ import annotations

import argparse
import os
import sys
from html import escape
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]

WIDTH, HEIGHT = 640, 340
LEFT, RIGHT, TOP, BOTTOM = 60, 20, 48, 56
SAFE, UNSAFE, CURRENT, RECOMMENDED = "#2e7d32", "#c62828", "#555555", "#1565c0"


def _x(risk: float) -> float:
    return LEFT + risk * (WIDTH - LEFT - RIGHT)


def _y(count: float, top: float) -> float:
    return HEIGHT - BOTTOM - (count / top) * (HEIGHT - TOP - BOTTOM) if top else HEIGHT - BOTTOM


def _steps(points: list[tuple[float, int]], top: float) -> str:
    """A step path: each candidate's count holds until the next candidate, the last until risk 1."""
    coords: list[str] = []
    for index, (risk, count) in enumerate(points):
        end = points[index + 1][0] if index + 1 < len(points) else 1.0
        coords.append(f"{_x(risk):.1f},{_y(count, top):.1f}")
        coords.append(f"{_x(end):.1f},{_y(count, top):.1f}")
    return " ".join(coords)


def render(sweep: dict[str, Any]) -> str:
    recommendation = sweep["recommendation"]
    current = sweep["current"]
    amount = (recommendation or {}).get("max_auto_amount", current["max_auto_amount"])
    points = [p for p in sweep["points"] if p["max_auto_amount"] == amount]
    points.sort(key=lambda p: p["auto_approve_max_risk"])
    top = float(max([sweep["safe"], 1, *[p["auto_safe"] for p in points], *[p["auto_unsafe"] for p in points]]))
    ticks = sorted({0, round(top / 2), round(top)})
    title = f"Threshold sweep: {sweep['action_type']} ({sweep['labelled']} labelled: {sweep['safe']} safe, " + (
        f"{sweep['unsafe']} unsafe)"
    )
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">',
        f'<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/>',
        f'<text x="{LEFT}" y="20" font-size="14" font-weight="bold">{escape(title)}</text>',
        f'<text x="{LEFT}" y="36" fill="#444">auto-approved labelled actions vs auto_approve_max_risk'
        + (f" (max_auto_amount {amount})" if amount is not None else "")
        + "</text>",
        # axes
        f'<line x1="{LEFT}" y1="{HEIGHT - BOTTOM}" x2="{WIDTH - RIGHT}" y2="{HEIGHT - BOTTOM}" stroke="black"/>',
        f'<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{HEIGHT - BOTTOM}" stroke="black"/>',
    ]
    for tick in [i / 10 for i in range(11)]:
        parts.append(
            f'<line x1="{_x(tick):.1f}" y1="{HEIGHT - BOTTOM}" x2="{_x(tick):.1f}" y2="{HEIGHT - BOTTOM + 4}" '
            'stroke="black"/>'
            f'<text x="{_x(tick):.1f}" y="{HEIGHT - BOTTOM + 17}" text-anchor="middle">{tick:.1f}</text>'
        )
    for tick in ticks:
        parts.append(
            f'<line x1="{LEFT - 4}" y1="{_y(tick, top):.1f}" x2="{WIDTH - RIGHT}" y2="{_y(tick, top):.1f}" '
            'stroke="#dddddd"/>'
            f'<text x="{LEFT - 8}" y="{_y(tick, top) + 4:.1f}" text-anchor="end">{tick}</text>'
        )
    parts.append(
        f'<text x="{(LEFT + WIDTH - RIGHT) / 2}" y="{HEIGHT - 12}" text-anchor="middle">auto_approve_max_risk</text>'
    )
    markers = [(current["auto_approve_max_risk"], CURRENT, "current")]
    if recommendation is not None:
        markers.append((recommendation["auto_approve_max_risk"], RECOMMENDED, "recommended"))
    for index, (risk, colour, name) in enumerate(markers):
        parts.append(
            f'<line x1="{_x(risk):.1f}" y1="{TOP}" x2="{_x(risk):.1f}" y2="{HEIGHT - BOTTOM}" stroke="{colour}" '
            'stroke-dasharray="5,4"/>'
            f'<text x="{_x(risk) + 4:.1f}" y="{TOP + 12 + 14 * index}" fill="{colour}">{name} ({risk:g})</text>'
        )
    for key, colour, name in (("auto_safe", SAFE, "safe auto-approved"), ("auto_unsafe", UNSAFE, "unsafe")):
        series = [(float(p["auto_approve_max_risk"]), int(p[key])) for p in points]
        if series:
            parts.append(f'<polyline points="{_steps(series, top)}" fill="none" stroke="{colour}" stroke-width="2.5"/>')
            for risk, count in series:
                parts.append(f'<circle cx="{_x(risk):.1f}" cy="{_y(count, top):.1f}" r="3.5" fill="{colour}"/>')
                parts.append(
                    f'<text x="{_x(risk) + 6:.1f}" y="{_y(count, top) - 6:.1f}" fill="{colour}">{count}</text>'
                )
        legend_y = TOP + 12 + 14 * (0 if key == "auto_safe" else 1)
        parts.append(
            f'<line x1="{WIDTH - RIGHT - 150}" y1="{legend_y - 4}" x2="{WIDTH - RIGHT - 130}" y2="{legend_y - 4}" '
            f'stroke="{colour}" stroke-width="2.5"/>'
            f'<text x="{WIDTH - RIGHT - 125}" y="{legend_y}" fill="{colour}">{name}</text>'
        )
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action_type")
    parser.add_argument("--out", help="default: docs/img/sweep-ACTION_TYPE.svg")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "escalation_app.settings")
    import django

    django.setup()
    from approvals.evaluation.sweep import threshold_sweep

    out = Path(args.out or ROOT / "docs" / "img" / f"sweep-{args.action_type}.svg")
    out.write_text(render(threshold_sweep(args.action_type)))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
