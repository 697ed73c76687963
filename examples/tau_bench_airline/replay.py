"""Replay tau-bench airline runs through the gate, end to end, against the airline's system of record.

    python examples/tau_bench_airline/replay.py --runs FILE [--trials 0,1] [--policy FILE] [--json] [--details]

For every run, in order: the airline's service of record (``service.py``, on 127.0.0.1) starts
from the database every run starts from, and the gate (embedded: a temporary SQLite database, tasks
in-process, the same code as the deployed worker) from an empty history. Each state-changing call
and each transfer of the run is proposed to the gate and evaluated there, lookups answered by the
service as the world stands at that moment; then the call the run made is applied to the world
(whatever the gate decided: the run did make it), and for an auto-approved action its outcome is
reported (executed, or not when the airline answered an error), as an agent would. So history
aggregates, ``repeat_of_executed`` and the lookups all see what a deployed gate would have seen.

Prints, per label (convert.py), how many calls the gate auto-approved, held and blocked; ``--json``
prints that table as ``{"<label>": {"auto_approved": n, "needs_review": n, "blocked": n}, ...}``.
The policy's lookup URLs name the service as ``http://127.0.0.1:8100``; the replay serves it on a
free port and points them there.
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import shutil
import sys
import tempfile
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parents[1]
sys.path[:0] = [str(HERE), str(REPO_ROOT)]

import convert  # noqa: E402
from service import running_service  # noqa: E402
from world import AirlineWorld  # noqa: E402

DEFAULT_POLICY = HERE / "policy.yaml"
SERVICE_BASE = "http://127.0.0.1:8100"  # as the policy file names the service of record
STATUSES = ("auto_approved", "needs_review", "blocked")
# forge.py's hook: (the line about to be proposed, propose(line, agent) -> action, another agent).
BeforeCall = Callable[[dict[str, Any], Callable[[dict[str, Any], Any], Any], Any], None]


_WORKDIR: Path | None = None


def embedded_gate() -> Path:
    """Django as the embedded demo runs it, on a SQLite file of its own in a temporary directory
    (removed at exit), migrated once per process; lookups may call loopback. Returns the file."""
    global _WORKDIR
    if _WORKDIR is None:
        _WORKDIR = Path(tempfile.mkdtemp(prefix="tau-replay-"))
        atexit.register(shutil.rmtree, _WORKDIR, True)
        for name in ("DATABASE_URL", "REDIS_URL"):
            os.environ.pop(name, None)
        os.environ["GATE_SQLITE_PATH"] = str(_WORKDIR / "replay.sqlite3")
        os.environ["GATE_LOOKUP_ALLOWED_HOSTS"] = "127.0.0.1"
        os.environ.setdefault("GATE_LOG_LEVEL", "ERROR")
        os.environ["DJANGO_SETTINGS_MODULE"] = "escalation_app.settings"
        import django

        django.setup()
        from django.core.management import call_command

        call_command("migrate", verbosity=0, interactive=False)
    return _WORKDIR / "replay.sqlite3"


def pointed_at(document: dict[str, Any], base_url: str) -> dict[str, Any]:
    """The policy with its lookups pointed at ``base_url`` instead of the service's usual address."""
    for action_type in document.get("action_types", []):
        for lookup in action_type.get("lookups", []) or []:
            lookup["url"] = lookup["url"].replace(SERVICE_BASE, base_url)
    return document


class History:
    """The gate's database as it stood before the first run (policy and agent, no actions): every run
    starts from it again, as its world starts from the same airline database. A file copy: the
    audit log is append-only, so nothing is deleted."""

    def __init__(self, path: Path) -> None:
        from django.db import connections

        self.path, self.snapshot = path, path.with_suffix(".start")
        connections.close_all()
        shutil.copyfile(self.path, self.snapshot)

    def forget(self) -> None:
        from django.db import connections

        connections.close_all()
        shutil.copyfile(self.snapshot, self.path)


def propose(line: dict[str, Any], agent: Any) -> Any:
    """Propose one converted line as ``agent``; the gate evaluates it in-process on commit."""
    from approvals.gate.services import action_propose, request_fingerprint
    from approvals.models import ActionType, ProposedAction

    body = {k: line[k] for k in ("action_type", "params", "trajectory", "context")}
    action, _ = action_propose(
        agent=agent,
        action_type=ActionType.objects.get(name=line["action_type"]),
        params=line["params"],
        fingerprint=request_fingerprint(body),
        trajectory_raw=line["trajectory"],
        context=line["context"],
    )
    return ProposedAction.objects.get(pk=action.pk)


def replay_run(
    run: dict[str, Any],
    world: AirlineWorld,
    history: History,
    agents: tuple[Any, Any],
    on_result: Callable[[dict[str, Any], Any], None],
    before_call: BeforeCall | None = None,
) -> None:
    from approvals.gate.services import action_report_outcome
    from approvals.models import Status

    world.reset()
    history.forget()
    agent, other = agents
    proposals = iter(convert.convert_run(run))
    for call in convert.iter_calls(run["traj"]):
        if call.name not in convert.WRITE_TOOLS and call.name != convert.TRANSFER_TOOL:
            continue
        line = next(proposals)
        if before_call is not None:
            before_call(line, propose, other)
        action = propose(line, agent)
        on_result(line, action)
        if call.name in convert.WRITE_TOOLS and isinstance(call.arguments, dict):
            result = world.call(call.name, call.arguments)
            if action.status == Status.AUTO_APPROVED:
                action_report_outcome(action_id=str(action.pk), agent=agent, executed=not result.startswith("Error"))


def _agent(name: str) -> Any:
    from approvals.gate.agents import agent_create
    from approvals.models import Agent

    found = Agent.objects.filter(name=name).first()
    return found if found is not None else agent_create(name=name)[0]


def replay_runs(
    runs: list[dict[str, Any]],
    policy: Path,
    *,
    on_result: Callable[[dict[str, Any], Any], None],
    before_call: BeforeCall | None = None,
) -> None:
    """Replay ``runs`` under ``policy``, each from the same world and an empty gate history.
    ``before_call(line, propose, other_agent)`` may propose more (forge.py) before each call."""
    import yaml

    database = embedded_gate()
    from approvals.gate.policies import policies_import

    document = yaml.safe_load(policy.read_text(encoding="utf-8"))
    world = AirlineWorld()
    with running_service(world) as base_url:
        policies_import(document=pointed_at(document, base_url), actor="replay")
        agents = (_agent(convert.AGENT["name"]), _agent(convert.AGENT["name"] + "-other"))
        history = History(database)
        for run in runs:
            replay_run(run, world, history, agents, on_result, before_call)


def load_runs(path: Path, trials: str) -> list[dict[str, Any]]:
    runs: list[dict[str, Any]] = json.loads(path.read_text(encoding="utf-8"))
    if trials:
        wanted = {int(t) for t in trials.split(",")}
        runs = [run for run in runs if int(run["trial"]) in wanted]
    return runs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=Path, default=convert.DEFAULT_RUNS, help="runs JSON (tau-bench format)")
    parser.add_argument("--trials", default="", help="comma-separated trials to replay (default: all)")
    parser.add_argument("--policy", type=Path, default=DEFAULT_POLICY, help=f"policy file (default: {DEFAULT_POLICY})")
    parser.add_argument("--json", action="store_true", help="print the overall table as JSON")
    parser.add_argument("--details", action="store_true", help="list each call with its failing checks")
    args = parser.parse_args(argv)

    runs = load_runs(args.runs, args.trials)
    overall: dict[str, Counter[str]] = defaultdict(Counter)
    by_type: dict[tuple[str, str], Counter[str]] = defaultdict(Counter)
    details: list[str] = []

    def on_result(line: dict[str, Any], action: Any) -> None:
        overall[line["label"]][action.status] += 1
        by_type[(line["action_type"], line["label"])][action.status] += 1
        if args.details:
            failing = [f"{f['rule']}({f['outcome']})" for f in action.findings if f["outcome"] != "pass"]
            details.append(f"{line['id']:10} {line['label']:22} {action.status:14} {', '.join(failing)}")

    replay_runs(runs, args.policy, on_result=on_result)

    table = {label: {s: overall[label][s] for s in STATUSES} for label in sorted(overall)}
    if args.json:
        print(json.dumps(table))
        return 0
    print(f"{len(runs)} runs, {sum(sum(c.values()) for c in overall.values())} proposed actions, policy {args.policy}")
    print(f"{'label':24}{'total':>7}{'auto':>7}{'review':>8}{'blocked':>9}")
    for label, counts in table.items():
        print(
            f"{label:24}{sum(counts.values()):>7}{counts['auto_approved']:>7}{counts['needs_review']:>8}{counts['blocked']:>9}"
        )
    print("\nper action type (auto/review/blocked):")
    for (action_type, label), counts in sorted(by_type.items()):
        print(f"  {action_type:31} {label:22} {'/'.join(str(counts[s]) for s in STATUSES)}")
    if details:
        print("\n" + "\n".join(details))
    return 0


if __name__ == "__main__":
    sys.exit(main())
