from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from approvals import policy
from approvals.management.commands.import_policies import load_policy_file, plural


class Command(BaseCommand):
    help = (
        "Run the policy tests of a policy file (YAML or JSON) without importing it: each test's proposal "
        "through its type's policy, its decision against what the test expects. Exits non-zero when one fails."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file")

    def handle(self, *args: Any, file: str, **options: Any) -> None:
        try:
            specs = policy.parse_document(load_policy_file(file))
        except policy.PolicyError as exc:
            raise CommandError(f"{file}: {len(exc.errors)} problem(s):\n  " + "\n  ".join(exc.errors)) from exc
        results = policy.policy_tests_run(specs)
        by_type: dict[str, list[policy.PolicyTestResult]] = {}
        for result in results:
            by_type.setdefault(result.action_type, []).append(result)
        for spec in specs:
            if spec.name not in by_type:
                self.stdout.write(f"{spec.name}: no tests")
                continue
            self.stdout.write(spec.name)
            for result in by_type[spec.name]:
                if result.passed:
                    self.stdout.write(f"  ok    {result.test.name} ({result.decision.status})")
                    continue
                self.stdout.write(
                    f"  FAIL  {result.test.name}: expected {result.test.expect}, got {result.decision.status}"
                )
                for line in result.explanation:
                    self.stdout.write(f"          {line}")
        failed = sum(not result.passed for result in results)
        summary = f"{plural(len(results), 'test')}: {len(results) - failed} passed, {failed} failed"
        if failed:
            raise CommandError(summary)
        self.stdout.write(summary)
