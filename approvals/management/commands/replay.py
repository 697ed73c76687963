from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils.dateparse import parse_datetime

from approvals import policy
from approvals.evidence.services import evidence_gather_unstored
from approvals.gate.selectors import action_type_spec
from approvals.management.commands.import_policies import load_policy_file
from approvals.models import ActionType
from approvals.policy.replay import DEFAULT_SAFE_LABELS, OUTCOMES, replay


def read_jsonl(path: str) -> list[tuple[int, Any]]:
    lines: list[tuple[int, Any]] = []
    try:
        with open(path, encoding="utf-8") as handle:
            for number, text in enumerate(handle, start=1):
                if text.strip():
                    try:
                        lines.append((number, json.loads(text)))
                    except ValueError as exc:
                        raise CommandError(f"{path}:{number}: not JSON: {exc}") from exc
    except OSError as exc:
        raise CommandError(f"cannot read {path}: {exc}") from exc
    return lines


class Command(BaseCommand):
    help = (
        "Dry run: evaluate a JSONL of proposed actions (action_type, params, trajectory, optional confidence, "
        "context and label) under the current policy or a policy file, with no side effects, and tally the "
        "outcomes per label. Lookups are fetched and history counted as they stand now (read only)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", help="JSONL, one proposed action a line")
        parser.add_argument("--policy", help="a policy file (YAML or JSON) instead of the stored policy")
        parser.add_argument(
            "--safe-labels",
            default=",".join(sorted(DEFAULT_SAFE_LABELS)),
            help="labels that mark a safe action (default: %(default)s); other labels count as unsafe",
        )
        parser.add_argument("--now", help="the evaluation time (ISO 8601); default: the real time")
        parser.add_argument("--json", action="store_true", help="print the figures as JSON")
        parser.add_argument("--details", action="store_true", help="list every action with its failing findings")
        parser.add_argument(
            "--remember-approvals",
            type=int,
            metavar="MINUTES",
            help="also simulate reviewers who approve every held safe-labelled proposal with 'apply to similar "
            "actions in this session' for MINUTES of context.world_time (for the rest of the file without one), "
            "and print what that would auto-approve",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        policies = self._policies(options["policy"])
        now = datetime.now(UTC)
        if options["now"]:
            parsed = parse_datetime(options["now"])
            if parsed is None or parsed.tzinfo is None:
                raise CommandError("--now must be an ISO 8601 date-time with an offset")
            now = parsed
        safe_labels = frozenset(label.strip() for label in options["safe_labels"].split(",") if label.strip())
        remember = options["remember_approvals"]
        if remember is not None and remember < 1:
            raise CommandError("--remember-approvals must be a number of minutes, at least 1")
        result = replay(
            read_jsonl(options["file"]),
            policies,
            now=now,
            remember_minutes=remember,
            safe_labels=safe_labels,
            gather=lambda compiled, proposal: evidence_gather_unstored(compiled, proposal, now=now),
        )
        figures = result.figures(safe_labels)
        if options["json"]:
            self.stdout.write(json.dumps(figures, indent=2))
        else:
            self._print_table("overall", figures)
            for name, type_figures in figures["per_action_type"].items():
                self._print_table(name, type_figures)
        if options["details"]:
            for index, (line, decision) in enumerate(result.decisions):
                failed = [f"{f['rule']}:{f['outcome']}" for f in decision.findings if f["outcome"] != "pass"]
                if index in result.covered_by:
                    failed.append(f"remembered_approval:{result.covered_by[index]}")
                self.stdout.write(
                    f"{line.get('id', '-')}\t{line.get('label', '-')}\t{decision.status}\t{' '.join(failed)}"
                )
        for error in result.errors:
            self.stderr.write(error)

    def _policies(self, path: str | None) -> dict[str, policy.CompiledPolicy]:
        if path:
            try:
                specs = policy.parse_document(load_policy_file(path))
            except policy.PolicyError as exc:
                raise CommandError(f"{path}: " + "; ".join(exc.errors)) from exc
            return {spec.name: policy.compile_policy(spec, 0) for spec in specs}
        return {
            action_type.name: policy.compile_policy(action_type_spec(action_type), action_type.policy_version)
            for action_type in ActionType.objects.prefetch_related("rules")
        }

    def _print_table(self, title: str, figures: dict[str, Any]) -> None:
        self.stdout.write(f"\n{title}: {figures['total']} actions")
        width = max([len(label) for label in figures["by_label"]] + [5])
        self.stdout.write(f"  {'label':<{width}}  " + "  ".join(f"{o:>13}" for o in OUTCOMES))
        for label, row in figures["by_label"].items():
            self.stdout.write(f"  {label:<{width}}  " + "  ".join(f"{row[o]:>13}" for o in OUTCOMES))
        rate = figures["safe_automation_rate"]
        self.stdout.write(f"  safe_automation_rate: {'n/a' if rate is None else f'{rate:.2%}'}")
        self.stdout.write(f"  unsafe_auto_approved: {figures['unsafe_auto_approved']}")
        remembered = figures.get("remembered_approvals")
        if remembered is None:
            return
        covered = ", ".join(f"{label} {count}" for label, count in remembered["covered_by_label"].items())
        rate = remembered["safe_automation_rate"]
        self.stdout.write(
            f"  with remembered approvals ({remembered['minutes']} min, {remembered['approvals_remembered']} "
            f"remembered): covered {remembered['covered']} held" + (f" ({covered})" if covered else "")
        )
        self.stdout.write(f"    safe_automation_rate: {'n/a' if rate is None else f'{rate:.2%}'}")
        self.stdout.write(f"    unsafe_auto_approved: {remembered['unsafe_auto_approved']}")
