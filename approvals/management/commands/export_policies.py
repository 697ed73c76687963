from __future__ import annotations

import json
from typing import Any

import yaml
from django.core.management.base import BaseCommand, CommandError, CommandParser

from approvals import policy
from approvals.gate.selectors import policy_document_current
from approvals.models import PolicyVersion


class Command(BaseCommand):
    help = "Print the policy (current, or as of --policy-version N) in the import_policies format."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--policy-version", type=int, help="a recorded policy_version (default: the current policy)"
        )
        parser.add_argument("--format", choices=["yaml", "json"], default="yaml")

    def handle(self, *args: Any, policy_version: int | None, format: str, **options: Any) -> None:
        if policy_version is None:
            document = policy_document_current()
        else:
            record = PolicyVersion.objects.filter(number=policy_version).first()
            if record is None:
                raise CommandError(f"no policy_version {policy_version}")
            # jsonb keeps no key order: rebuild the document in the format's own order.
            document = policy.build_document(policy.parse_document(record.document))
        if format == "json":
            self.stdout.write(json.dumps(document, indent=2))
        else:
            self.stdout.write(yaml.safe_dump(document, sort_keys=False, allow_unicode=True, width=120))
