from __future__ import annotations

import json
from typing import Any

import yaml
from django.core.management.base import BaseCommand, CommandError, CommandParser

from approvals import policy
from approvals.gate.policy_diff import policy_diff, policy_diff_text
from approvals.gate.selectors import (
    mcp_servers_document_latest,
    policy_document_current,
    policy_version_numbered,
    policy_versions,
)
from approvals.models import PolicyVersion


def recorded_version(number: int) -> PolicyVersion:
    record = policy_version_numbered(number)
    if record is None:
        numbers = [v.number for v in policy_versions()]
        known = f"recorded: {min(numbers)} to {max(numbers)}" if numbers else "none is recorded yet"
        raise CommandError(f"no policy_version {number} ({known})")
    return record


def version_label(record: PolicyVersion) -> str:
    by = f" by {record.created_by}" if record.created_by else ""
    return f"policy_version {record.number} ({record.source}{by}, {record.created_at:%Y-%m-%d %H:%M})"


class Command(BaseCommand):
    help = (
        "Print the policy (current, or as of --policy-version N) in the import_policies format, or "
        "with --diff A B what changed from policy_version A to B (text)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--policy-version", type=int, help="a recorded policy_version (default: the current policy)"
        )
        parser.add_argument("--format", choices=["yaml", "json"], default="yaml")
        parser.add_argument(
            "--diff",
            nargs=2,
            type=int,
            metavar=("A", "B"),
            help="print what changed from policy_version A to B: types, fields and rules with the CEL of each side",
        )

    def handle(
        self, *args: Any, policy_version: int | None, format: str, diff: list[int] | None, **options: Any
    ) -> None:
        if diff is not None:
            if policy_version is not None:
                raise CommandError("--diff A B names both versions; leave out --policy-version")
            before, after = (recorded_version(number) for number in diff)
            changes = policy_diff(before.document, after.document)
            self.stdout.write(f"from {version_label(before)}\nto   {version_label(after)}")
            self.stdout.write(
                policy_diff_text(changes, before_label=f"v{before.number}", after_label=f"v{after.number}"),
                ending="",
            )
            return
        if policy_version is None:
            document = policy_document_current()
            servers = mcp_servers_document_latest()
        else:
            record = recorded_version(policy_version)
            # jsonb keeps no key order: rebuild the document in the format's own order.
            document = policy.build_document(policy.parse_document(record.document))
            servers = policy.mcp_servers_document(record.document) or []
        if servers:  # the MCP gateway's upstream servers (contract §6.4), as the file names them
            document["mcp_servers"] = servers
        if format == "json":
            self.stdout.write(json.dumps(document, indent=2))
        else:
            self.stdout.write(yaml.safe_dump(document, sort_keys=False, allow_unicode=True, width=120))
