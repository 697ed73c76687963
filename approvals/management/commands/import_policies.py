from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from django.core.management.base import BaseCommand, CommandError, CommandParser

from approvals import policy
from approvals.errors import NoShadowPolicy
from approvals.gate.policies import policies_import
from approvals.gate.shadow import ShadowImported, shadow_policy_import, shadow_policy_promote

ACTOR = "command:import_policies"


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


def refused(file: str, exc: policy.PolicyError, what: str = "nothing was imported") -> CommandError:
    return CommandError(f"{file}: {what}; {len(exc.errors)} problem(s):\n  " + "\n  ".join(exc.errors))


def shadow_report(imported: ShadowImported) -> list[str]:
    shadow, preview = imported.shadow, imported.preview
    names = ", ".join(t["name"] for t in shadow.document["action_types"])
    replaces = f" (replaces shadow v{imported.replaced})" if imported.replaced else ""
    unsafe = preview["unsafe_newly_auto_approved"]
    lines = [
        f"stored as shadow policy v{shadow.version}{replaces} for {names}: from now on every evaluation of "
        "these types evaluates it too, records its decision and never acts on it",
        f"labelled history replayed under it ({preview['replayed']} actions, the most recent {preview['recent']} "
        f"labelled per type): it would newly auto-approve {preview['safe_newly_auto_approved']} safe and "
        f"{len(unsafe)} unsafe action(s)",
    ]
    lines += [
        f"  unsafe {case['id']} ({case['action_type']}): {case['was']} by the policy then"
        + (f", held by {', '.join(case['held_by'])}" if case["held_by"] else "")
        for case in unsafe
    ]
    if unsafe:
        lines.append("a shadow acts on nothing, so it is stored; promoting it would auto-approve these")
    return lines


class Command(BaseCommand):
    help = (
        "Create or replace the action types a policy file (YAML or JSON) names; all or nothing. "
        "--shadow FILE stores it as the shadow policy instead (evaluated beside the live one, never acted on); "
        "--promote-shadow makes the shadow the live policy."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", nargs="?")
        mode = parser.add_mutually_exclusive_group()
        mode.add_argument(
            "--shadow",
            action="store_true",
            help="store FILE as the shadow policy, replacing an earlier one (contract §6.2)",
        )
        mode.add_argument(
            "--promote-shadow",
            action="store_true",
            help="make the shadow policy the live policy, as an import would, and end shadow mode",
        )

    def handle(
        self, *args: Any, file: str | None, shadow: bool = False, promote_shadow: bool = False, **options: Any
    ) -> None:
        if promote_shadow:
            if file:
                raise CommandError("--promote-shadow takes no FILE: it promotes the stored shadow policy")
            self._promote()
            return
        if not file:
            raise CommandError("a policy FILE is required (or --promote-shadow)")
        document = load_policy_file(file)
        if shadow:
            try:
                imported = shadow_policy_import(document=document, actor=ACTOR)
            except policy.PolicyError as exc:
                raise refused(file, exc, "nothing was stored, the shadow policy is unchanged") from exc
            self.stdout.write("\n".join(shadow_report(imported)))
            return
        try:
            version = policies_import(document=document, actor=ACTOR)
        except policy.PolicyError as exc:
            raise refused(file, exc) from exc
        names = ", ".join(item["name"] for item in document["action_types"])
        self.stdout.write(
            f"imported {len(document['action_types'])} action type(s) ({names}) as policy_version {version}"
        )

    def _promote(self) -> None:
        try:
            shadow, version = shadow_policy_promote(actor=ACTOR)
        except NoShadowPolicy as exc:
            raise CommandError(exc.message) from exc
        except policy.PolicyError as exc:
            raise CommandError(
                "the shadow policy was not promoted, nothing changed; "
                f"{len(exc.errors)} problem(s):\n  " + "\n  ".join(exc.errors)
            ) from exc
        names = ", ".join(t["name"] for t in shadow.document["action_types"])
        self.stdout.write(
            f"promoted shadow policy v{shadow.version} ({names}) as policy_version {version}; "
            "shadow mode is off until the next --shadow import"
        )
