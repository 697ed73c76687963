from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from django.core.management.base import BaseCommand, CommandError, CommandParser

from approvals import policy
from approvals.errors import NoShadowPolicy, UnsafePolicyChange
from approvals.gate.policies import policies_import_report
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


def plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def refused(what: str, exc: policy.PolicyError) -> CommandError:
    if isinstance(exc, policy.PolicyTestsFailed):
        return CommandError(f"{what}; {plural(len(exc.failures), 'policy test')} failed:\n  " + "\n  ".join(exc.errors))
    return CommandError(f"{what}; {len(exc.errors)} problem(s):\n  " + "\n  ".join(exc.errors))


def unsafe_refused(what: str, exc: UnsafePolicyChange, hint: str) -> CommandError:
    cases = [f"{c['id']} ({c['action_type']}, now {c['live_status']}): {c['summary']}" for c in exc.cases]
    return CommandError(
        f"{what}; it would newly auto-approve {plural(len(exc.cases), 'action')} labelled unsafe (and "
        f"{exc.safe_newly_auto_approved} labelled safe) among the {exc.replayed} most recent labelled actions "
        "replayed:\n  " + "\n  ".join(cases) + f"\n{hint} (audited with these action ids)."
    )


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
        "Create or replace the action types a policy file (YAML or JSON) names; all or nothing. The file's "
        "policy tests must pass, and a change that would newly auto-approve an action labelled unsafe in the "
        "recent labelled history is refused unless --accept-risk. --shadow FILE stores it as the shadow policy "
        "instead (evaluated beside the live one, never acted on); --promote-shadow makes the shadow live."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", nargs="?")
        parser.add_argument(
            "--accept-risk",
            action="store_true",
            help="go live even if the change would newly auto-approve actions labelled unsafe (audited with their ids)",
        )
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
        self,
        *args: Any,
        file: str | None,
        accept_risk: bool = False,
        shadow: bool = False,
        promote_shadow: bool = False,
        **options: Any,
    ) -> None:
        if promote_shadow:
            if file:
                raise CommandError("--promote-shadow takes no FILE: it promotes the stored shadow policy")
            self._promote(accept_risk=accept_risk)
            return
        if not file:
            raise CommandError("a policy FILE is required (or --promote-shadow)")
        document = load_policy_file(file)
        if shadow:
            try:
                imported = shadow_policy_import(document=document, actor=ACTOR)
            except policy.PolicyError as exc:
                raise refused(f"{file}: nothing was stored, the shadow policy is unchanged", exc) from exc
            self.stdout.write("\n".join(shadow_report(imported)))
            return
        try:
            change = policies_import_report(document=document, actor=ACTOR, accept_risk=accept_risk)
        except policy.PolicyError as exc:
            raise refused(f"{file}: nothing was imported", exc) from exc
        except UnsafePolicyChange as exc:
            raise unsafe_refused(f"{file}: nothing was imported", exc, "Import it anyway with --accept-risk") from exc
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

    def _promote(self, *, accept_risk: bool) -> None:
        try:
            shadow, version = shadow_policy_promote(actor=ACTOR, accept_risk=accept_risk)
        except NoShadowPolicy as exc:
            raise CommandError(exc.message) from exc
        except policy.PolicyError as exc:
            raise refused("the shadow policy was not promoted, nothing changed", exc) from exc
        except UnsafePolicyChange as exc:
            raise unsafe_refused(
                "the shadow policy was not promoted, nothing changed", exc, "Promote it anyway with --accept-risk"
            ) from exc
        names = ", ".join(t["name"] for t in shadow.document["action_types"])
        self.stdout.write(
            f"promoted shadow policy v{shadow.version} ({names}) as policy_version {version}; "
            "shadow mode is off until the next --shadow import"
        )
