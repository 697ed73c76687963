"""The README's screenshots of rule insight and of a policy version diff, from a realistic labelled
history: the tau-bench airline proposals (examples/tau_bench_airline/proposals.jsonl) imported the
real way under the trajectory-only policy, then one policy change an owner might make.

    .venv/bin/python bench/insight_screens.py [--out docs/screenshots] [--type cancel_reservation]

Uses its own PostgreSQL database (GATE_BENCH_SCREENS_DATABASE_URL, default gate_insight_screens on
127.0.0.1), dropped and made again on each run, and no Redis (tasks run in-process). Serves the app
with uvicorn on a free loopback port and drives Debian's Chromium with Playwright. Also prints how
long rule_insight takes for each type (the median of five calls, after one warm-up).
"""

from __future__ import annotations

import argparse
import copy
import os
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DATABASE_URL = os.environ.get(
    "GATE_BENCH_SCREENS_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/gate_insight_screens"
)
os.environ["DATABASE_URL"] = DATABASE_URL
os.environ.pop("REDIS_URL", None)
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "escalation_app.settings")
os.environ.setdefault("GATE_LOG_LEVEL", "WARNING")
os.environ.setdefault("GATE_LOG_FORMAT", "plain")

import django  # noqa: E402
import psycopg  # noqa: E402

AIRLINE = ROOT / "examples" / "tau_bench_airline"
CHROMIUM = os.environ.get("GATE_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]
ADMIN, PASSWORD = "owner", "screens-only-password"


def recreate_database() -> None:
    name = DATABASE_URL.rsplit("/", 1)[1]
    with psycopg.connect(DATABASE_URL.rsplit("/", 1)[0] + "/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')


def owner_change(document: dict[str, Any]) -> dict[str, Any]:
    """One change of a type an owner might make: a lower refund limit in a rule's CEL and its
    message, a larger audit sample, and a new rule."""
    changed = copy.deepcopy(document)
    for item in changed["action_types"]:
        if item["name"] != "cancel_reservation":
            continue
        item["audit_sample_rate"] = 0.1
        for rule in item["rules"]:
            if rule["name"] == "large_refund":
                rule["require"] = rule["require"].replace("<= 5000.0", "<= 2000.0")
                rule["message"] = rule["message"].replace("$5,000", "$2,000")
        item["rules"].append(
            {
                "name": "reason_stated",
                "require": "trajectory.exists(s, s.kind == 'message' && s.role == 'user'\n"
                "  && s.content.matches(r'(?i)\\b(cancel|refund)'))",
                "on_fail": "review",
                "message": "The user never asked to cancel or for a refund.",
            }
        )
    return changed


def seed() -> tuple[int, int]:
    from django.contrib.auth.models import User
    from django.core.management import call_command

    from approvals.gate.policies import policies_import
    from approvals.gate.selectors import policy_document_current, policy_versions

    call_command("migrate", verbosity=0)
    call_command("import_policies", str(AIRLINE / "policy_trajectory_only.yaml"))
    call_command("import_labelled", str(AIRLINE / "proposals.jsonl"))
    before = policy_versions()[0].number
    after = policies_import(document=owner_change(policy_document_current()), actor="user:owner", source="import")
    User.objects.create_superuser(ADMIN, password=PASSWORD)
    return before, after


def timings() -> None:
    from approvals.evaluation.rule_insight import rule_insight
    from approvals.evaluation.selectors import gated_action_type_names

    for name in gated_action_type_names():
        rule_insight(name)
        runs = []
        for _ in range(5):
            start = time.perf_counter()
            insight = rule_insight(name)
            runs.append(time.perf_counter() - start)
        stops = {r["rule"]: len(r["alone_stops_unsafe"]) for r in insight["rules"] if r["alone_stops_unsafe"]}
        print(
            f"{name}: {insight['labelled']} labelled ({insight['unsafe']} unsafe), "
            f"{statistics.median(runs) * 1000:.1f} ms; alone stops unsafe: {stops or 'none'}; "
            f"disagreements: {len(insight['disagreements'])}; unstopped unsafe: {len(insight['unstopped_unsafe'])}"
        )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def serve() -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "escalation_app.asgi:application",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        cwd=ROOT,
        env=os.environ.copy(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(f"{base}/healthz", timeout=2)
            return server, base
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start") from None
            time.sleep(0.3)


def screenshots(base: str, out: Path, type_name: str, before: int, after: int) -> None:
    from playwright.sync_api import sync_playwright

    out.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        page = browser.new_context(viewport={"width": 1440, "height": 900}).new_page()
        page.goto(f"{base}/admin/login/?next=/admin/")
        page.fill("#id_username", ADMIN)
        page.fill("#id_password", PASSWORD)
        page.click("input[type=submit]")
        page.wait_for_url(f"{base}/admin/")
        page.goto(f"{base}/evaluation/?window=all&sweep={type_name}#insight")
        page.locator("#insight").screenshot(path=str(out / "rule-insight.png"))
        page.goto(f"{base}/admin/approvals/policyversion/compare/?a={before}&b={after}")
        page.locator("#content").screenshot(path=str(out / "policy-diff.png"))
        if os.environ.get("GATE_SCREENS_EDITOR"):  # the rules editor, to look at (not in the README)
            page.goto(f"{base}/admin/approvals/actiontype/?name={type_name}")
            page.click(f"text={type_name}")
            page.locator("#rules-group").screenshot(path=str(out / "rules-editor.png"))
        browser.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(ROOT / "docs" / "screenshots"))
    parser.add_argument("--type", default="cancel_reservation", help="the action type of the insight screenshot")
    options = parser.parse_args()
    recreate_database()
    django.setup()
    before, after = seed()
    timings()
    server, base = serve()
    try:
        screenshots(base, Path(options.out), options.type, before, after)
    finally:
        server.terminate()
        server.wait(timeout=20)
    print(f"screenshots: {options.out}/rule-insight.png, {options.out}/policy-diff.png")


if __name__ == "__main__":
    main()
