from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from django.core.management.base import BaseCommand, CommandError, CommandParser

from approvals import policy
from approvals.errors import UnsafePolicyChange
from approvals.gate.policies import policies_import_report


def load_policy_file(path: str) -> Any:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CommandError(f"cannot read {path}: {exc}") from exc
    try:
        if path.endswith(".json"):
            return json.loads(text)
        return yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise CommandError(f"{path} is not valid {'JSON' if path.endswith('.json') else 'YAML'}: {exc}") from exc


def plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


class Command(BaseCommand):
    help = (
        "Create or replace the action types a policy file (YAML or JSON) names; all or nothing. The file's "
        "policy tests must pass, and a change that would newly auto-approve an action labelled unsafe in the "
        "recent labelled history is refused unless --accept-risk."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file")
        parser.add_argument(
            "--accept-risk",
            action="store_true",
            help="import even if the change would newly auto-approve actions labelled unsafe (audited with their ids)",
        )

    def handle(self, *args: Any, file: str, accept_risk: bool, **options: Any) -> None:
        document = load_policy_file(file)
        try:
            change = policies_import_report(document=document, actor="command:import_policies", accept_risk=accept_risk)
        except policy.PolicyTestsFailed as exc:
            raise CommandError(
                f"{file}: nothing was imported; {plural(len(exc.failures), 'policy test')} failed:\n  "
                + "\n  ".join(exc.errors)
            ) from exc
        except policy.PolicyError as exc:
            raise CommandError(
                f"{file}: nothing was imported; {len(exc.errors)} problem(s):\n  " + "\n  ".join(exc.errors)
            ) from exc
        except UnsafePolicyChange as exc:
            cases = [f"{c['id']} ({c['action_type']}, now {c['live_status']}): {c['summary']}" for c in exc.cases]
            raise CommandError(
                f"{file}: nothing was imported; it would newly auto-approve "
                f"{plural(len(exc.cases), 'action')} labelled unsafe (and {exc.safe_newly_auto_approved} labelled "
                f"safe) among the {exc.replayed} most recent labelled actions replayed:\n  "
                + "\n  ".join(cases)
                + "\nImport it anyway with --accept-risk (audited with these action ids)."
            ) from exc
        names = ", ".join(item["name"] for item in document["action_types"])
        net = change.safety_net
        self.stdout.write(
            f"imported {len(document['action_types'])} action type(s) ({names}) as policy_version {change.version}"
        )
        self.stdout.write(f"policy tests: {len(change.tests)} passed")
        self.stdout.write(
            f"safety net: replayed {plural(net.replayed, 'labelled action')} in {net.seconds:.2f} s; newly "
            f"auto-approved: {len(net.unsafe)} labelled unsafe, {net.safe_newly_auto_approved} labelled safe"
        )
        for case in change.accepted:
            self.stdout.write(f"accepted risk: {case.line()}")
