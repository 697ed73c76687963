"""Walk every audit chain in order, recompute its hashes and report the first broken link."""

from __future__ import annotations

import time
import uuid
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from typing import Any, cast

from django.core.management.base import BaseCommand, CommandError, CommandParser

from approvals.lifecycle import audit_chain
from approvals.models import AuditEvent

FIELDS = ("id", "chain", "seq", "prev_hash", "hash", "action_id", "event", "actor", "from_status", "to_status")


@dataclass(frozen=True)
class Break:
    chain: str
    seq: int
    event_id: int
    problem: str

    def __str__(self) -> str:
        return f"chain {self.chain} seq {self.seq} (audit event id {self.event_id}): {self.problem}"


@dataclass
class Result:
    events: int = 0
    chains: int = 0


def walk(rows: Iterator[tuple[Any, ...]], result: Result) -> Iterator[Break]:
    """Yield every broken link of rows ordered by (chain, seq); count events and chains in result."""
    chain: str | None = None
    expected_seq, prev = 1, audit_chain.GENESIS
    for row in rows:
        (pk, row_chain, seq, prev_hash, stored, action_id, event, actor, from_status, to_status, data, created_at) = row
        result.events += 1
        if row_chain != chain:
            chain, expected_seq, prev = row_chain, 1, audit_chain.GENESIS
            result.chains += 1
        problems: list[str] = []
        if seq != expected_seq:
            if seq > expected_seq:
                missing = f"seq {expected_seq}" if seq == expected_seq + 1 else f"seqs {expected_seq}-{seq - 1}"
                problems.append(f"sequence gap: {missing} missing (deleted events)")
            else:
                problems.append(f"sequence out of order: expected seq {expected_seq}")
        if prev_hash != prev:
            problems.append(f"link to previous broken: prev_hash {prev_hash[:16]}… but previous hash is {prev[:16]}…")
        if row_chain != audit_chain.chain_of(action_id):
            problems.append(f"event filed in the wrong chain (its action is {action_id or 'none'})")
        content = audit_chain.canonical(
            chain=row_chain,
            seq=seq,
            action_id=action_id,
            event=event,
            actor=actor,
            from_status=from_status,
            to_status=to_status,
            data=data,
            created_at=created_at,
        )
        recomputed = audit_chain.link_hash(prev_hash, content)
        if recomputed != stored:
            problems.append(f"content altered: stored hash {stored[:16]}…, recomputed {recomputed[:16]}…")
        if problems:
            yield Break(chain=row_chain, seq=seq, event_id=pk, problem="; ".join(problems))
        # Continue from what the row claims, so one tampered link is reported once, not for the rest of its chain.
        expected_seq, prev = seq + 1, stored


class Command(BaseCommand):
    help = (
        "Verify the audit log's hash chains: walk every chain in order, recompute each event's hash and "
        "check the links. Exits 0 with a summary if intact, non-zero naming the first broken link."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--chain",
            action="append",
            dest="chains",
            metavar="CHAIN",
            help='Verify only this chain: an action id, or "gate" for events without an action (repeatable)',
        )
        parser.add_argument(
            "--max-errors",
            type=int,
            default=1,
            help="Stop after this many broken links (default 1, the first; 0 reports them all)",
        )
        parser.add_argument("--chunk-size", type=int, default=5000, help="Rows fetched per round trip (default 5000)")

    def handle(self, *args: Any, chains: list[str] | None, max_errors: int, chunk_size: int, **options: Any) -> None:
        if max_errors < 0 or chunk_size < 1:
            raise CommandError("--max-errors must be >= 0 and --chunk-size >= 1")
        queryset = AuditEvent.objects.all()
        if chains:
            names: set[str] = set()
            for name in chains:
                try:
                    names.add(name if name == audit_chain.GATE_CHAIN else str(uuid.UUID(name)))
                except ValueError:
                    raise CommandError(f'--chain {name!r}: expected an action id or "gate"') from None
            chains = sorted(names)
            queryset = queryset.filter(chain__in=chains)
        rows = cast(
            Generator[tuple[Any, ...]],
            queryset.order_by("chain", "seq").values_list(*FIELDS, "data", "created_at").iterator(chunk_size),
        )
        started = time.monotonic()
        result = Result()
        breaks: list[Break] = []
        try:
            for found in walk(rows, result):
                breaks.append(found)
                self.stderr.write(f"BROKEN: {found}")
                if max_errors and len(breaks) >= max_errors:
                    break
        finally:
            rows.close()  # stopping early: close the server-side cursor now, inside its transaction
        if breaks:
            stopped = " (stopped at the first)" if max_errors == 1 else ""
            raise CommandError(
                f"audit log NOT intact: {len(breaks)} broken link(s){stopped}; first: {breaks[0]}", returncode=2
            )
        if chains and result.chains < len(chains):
            raise CommandError(f"audit log: {len(chains) - result.chains} requested chain(s) have no events")
        elapsed = time.monotonic() - started
        self.stdout.write(
            f"audit log intact: {result.events} events in {result.chains} chains verified in {elapsed:.2f}s"
        )
