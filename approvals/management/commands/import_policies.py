from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from django.core.management.base import BaseCommand, CommandError, CommandParser

from approvals import policy
from approvals.gate.policies import policies_import


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
    help = "Create or replace the action types a policy file (YAML or JSON) names; all or nothing."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file")

    def handle(self, *args: Any, file: str, **options: Any) -> None:
        document = load_policy_file(file)
        try:
            version = policies_import(document=document, actor="command:import_policies")
        except policy.PolicyError as exc:
            raise CommandError(
                f"{file}: nothing was imported; {len(exc.errors)} problem(s):\n  " + "\n  ".join(exc.errors)
            ) from exc
        names = ", ".join(item["name"] for item in document["action_types"])
        self.stdout.write(
            f"imported {len(document['action_types'])} action type(s) ({names}) as policy_version {version}"
        )
