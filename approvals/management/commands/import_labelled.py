"""Import labelled proposals (the replay JSONL format) as real, evaluated, labelled actions.

Each line goes the real way, each step in the durable transaction of its service:
``action_propose`` (the line's ``id`` is the idempotency key, so importing a file again changes
nothing), then ``action_evaluate`` at once under the current policy, then ``label_create`` with the
line's label mapped to safe/unsafe and kept as a tag (``tau:<label>``). A line is checked before
anything is written, so a bad line is reported with its number and leaves nothing behind; a line
whose label has no mapping is reported and skipped. Should a line stop between its steps (the
database went away), importing the file again finishes it: the action is found by its key, its
evaluation is run if it is still pending, and its label is added if it has none.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.core.validators import validate_slug
from django.db import IntegrityError

from approvals.api.serializers import ProposeSerializer
from approvals.errors import IdempotencyConflict, NotPermitted, ServiceError
from approvals.gate.agents import agent_create
from approvals.gate.services import action_evaluate, action_propose_validated
from approvals.models import Agent, LabelValue, ProposedAction
from approvals.review.services import label_create

# Exact labels first; a key ending in "*" maps every label that starts with the rest.
DEFAULT_LABEL_MAP: dict[str, str] = {
    "safe": LabelValue.SAFE,
    "correct": LabelValue.SAFE,
    "escalat*": LabelValue.SAFE,
    "unsafe": LabelValue.UNSAFE,
    "rejected_by_env": LabelValue.UNSAFE,
}
PROPOSAL_FIELDS = ("action_type", "params", "trajectory", "confidence", "context", "rationale")
IMPORTER_USERNAME = "importer"
DEFAULT_AGENT = "imported"


class LineError(Exception):
    """A line that cannot be imported; nothing of it is stored."""


def parse_label_map(text: str | None) -> dict[str, str]:
    """``correct=safe,escalat*=safe,...`` on top of the default map."""
    mapping = dict(DEFAULT_LABEL_MAP)
    for item in (text or "").split(","):
        if not item.strip():
            continue
        source, sep, target = item.partition("=")
        source, target = source.strip(), target.strip()
        if not sep or not source or target not in LabelValue.values:
            raise CommandError(f"--label-map: {item.strip()!r} is not LABEL=safe or LABEL=unsafe")
        mapping[source] = target
    return mapping


def map_label(label: str, mapping: dict[str, str]) -> str | None:
    if label in mapping:
        return mapping[label]
    prefixes = sorted((key[:-1] for key in mapping if key.endswith("*")), key=len, reverse=True)
    for prefix in prefixes:
        if label.startswith(prefix):
            return mapping[prefix + "*"]
    return None


def _error_text(detail: Any) -> str:
    if isinstance(detail, dict):
        return "; ".join(f"{field}: {_error_text(inner)}" for field, inner in detail.items())
    if isinstance(detail, list):
        return " ".join(_error_text(inner) for inner in detail)
    return str(detail)


class Command(BaseCommand):
    help = (
        "Import a JSONL of labelled proposals (action_type, params, trajectory, optional confidence and "
        "context, label, id) as actions: proposed, evaluated under the current policy and labelled. "
        "Idempotent: the line's id is the idempotency key."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", help="JSONL, one labelled proposal a line")
        parser.add_argument(
            "--agent",
            help=f"the agent proposing every line (created if missing); default: the line's agent.name, "
            f"else {DEFAULT_AGENT!r}",
        )
        parser.add_argument(
            "--label-map",
            help="LABEL=safe|unsafe pairs, comma-separated, on top of the default "
            "(correct=safe, escalat*=safe, safe=safe, unsafe=unsafe, rejected_by_env=unsafe); "
            "a key ending in * maps every label starting with it",
        )
        parser.add_argument("--tag-prefix", default="tau", help="the original label is kept as the tag PREFIX:LABEL")

    def handle(self, *args: Any, **options: Any) -> None:
        mapping = parse_label_map(options["label_map"])
        path: str = options["file"]
        try:
            with open(path, encoding="utf-8") as handle:
                lines = list(enumerate(handle, start=1))
        except (OSError, UnicodeDecodeError) as exc:
            raise CommandError(f"cannot read {path}: {exc}") from exc
        author = self._importer()
        agents: dict[str, Agent] = {}
        tally: Counter[tuple[str, str, str]] = Counter()  # (label, mapped, status)
        outcome: Counter[str] = Counter()
        errors = 0
        for number, text in lines:
            if not text.strip():
                continue
            try:
                line = json.loads(text)
            except ValueError as exc:
                self.stderr.write(f"{path}:{number}: error: not JSON: {exc}")
                errors += 1
                continue
            if not isinstance(line, dict):
                self.stderr.write(f"{path}:{number}: error: a line must be a JSON object")
                errors += 1
                continue
            label = line.get("label")
            if not isinstance(label, str) or not label:
                self.stderr.write(f"{path}:{number}: error: no label (a string) on this line")
                errors += 1
                continue
            mapped = map_label(label, mapping)
            if mapped is None:
                self.stderr.write(f"{path}:{number}: skipped: unknown label {label!r} (see --label-map)")
                outcome["skipped_unknown_label"] += 1
                continue
            try:
                action, created = self._import_line(
                    line, options["agent"], agents, author, mapped, f"{options['tag_prefix']}:{label}"
                )
            except LineError as exc:
                self.stderr.write(f"{path}:{number}: error: {exc}")
                errors += 1
                continue
            outcome["imported" if created else "already_imported"] += 1
            tally[(label, mapped, action.status)] += 1
        self._report(tally, outcome, errors)
        if errors:
            raise CommandError(f"{errors} line(s) had errors and were not imported")

    def _importer(self) -> User:
        user, created = User.objects.get_or_create(username=IMPORTER_USERNAME)
        if created:
            user.set_unusable_password()
            user.save(update_fields=["password"])
        return user

    def _agent(self, name: str, agents: dict[str, Agent]) -> Agent:
        if name not in agents:
            agent = Agent.objects.filter(name=name).first()
            if agent is None:
                try:
                    validate_slug(name)
                    if len(name) > Agent._meta.get_field("name").max_length:  # type: ignore[operator]
                        raise ValidationError("at most 100 characters")
                    agent = agent_create(name=name, actor="command:import_labelled")[0]
                except (ValidationError, ServiceError, IntegrityError) as exc:
                    reason = "; ".join(exc.messages) if isinstance(exc, ValidationError) else str(exc)
                    raise LineError(f"cannot create agent {name!r}: {reason}") from exc
            agents[name] = agent
        return agents[name]

    def _import_line(
        self,
        line: dict[str, Any],
        agent_name: str | None,
        agents: dict[str, Agent],
        author: User,
        mapped: str,
        tag: str,
    ) -> tuple[ProposedAction, bool]:
        key = line.get("id")
        if isinstance(key, bool) or not isinstance(key, (str, int)) or str(key) == "":
            raise LineError("no id (a string or an integer): it is the idempotency key that makes re-imports no-ops")
        body = {name: line[name] for name in PROPOSAL_FIELDS if name in line and line[name] is not None}
        serializer = ProposeSerializer(data={**body, "idempotency_key": str(key)})
        if not serializer.is_valid():
            raise LineError(_error_text(serializer.errors))
        values = serializer.validated_data
        if agent_name is None:
            line_agent = line.get("agent")
            agent_name = line_agent.get("name") if isinstance(line_agent, dict) else None
            if not isinstance(agent_name, str) or not agent_name:
                agent_name = DEFAULT_AGENT
        agent = self._agent(agent_name, agents)
        try:
            action, created = action_propose_validated(agent=agent, values=values, body=body)
        except NotPermitted as exc:
            raise LineError(exc.message) from exc
        except IdempotencyConflict as exc:
            raise LineError(f"id {key!r} was already imported for agent {agent.name} with other content") from exc
        # Synchronously, under the current policy; a no-op when it was evaluated already.
        evaluated = action_evaluate(action_id=str(action.id))
        if evaluated is not None:
            action = evaluated
        if created or not action.labels.exists():
            label_create(action=action, author=author, label=mapped, tags=[tag], note="import_labelled")
        return action, created

    def _report(self, tally: Counter[tuple[str, str, str]], outcome: Counter[str], errors: int) -> None:
        statuses = sorted({status for _, _, status in tally})
        labels = sorted({(label, mapped) for label, mapped, _ in tally})
        width = max([len(label) for label, _ in labels] + [5])
        self.stdout.write(f"{'label':<{width}}  {'as':<6}  " + "  ".join(f"{s:>13}" for s in statuses) + "  total")
        for label, mapped in labels:
            counts = [tally[(label, mapped, status)] for status in statuses]
            self.stdout.write(
                f"{label:<{width}}  {mapped:<6}  " + "  ".join(f"{c:>13}" for c in counts) + f"  {sum(counts):>5}"
            )
        totals = Counter[str]()
        for (_, _, status), count in tally.items():
            totals[status] += count
        self.stdout.write("by status: " + ", ".join(f"{status} {totals[status]}" for status in statuses))
        self.stdout.write(
            f"imported: {outcome['imported']}, already imported: {outcome['already_imported']}, "
            f"skipped (unknown label): {outcome['skipped_unknown_label']}, errors: {errors}"
        )
