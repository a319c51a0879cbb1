"""Fakes for the reconcile use case: dead-letter queues, the round's lease and log, and `ReconcileFakes`. The
reconciler mends what intake, expansion, processing and completion left undone, so its tests run those use cases
over the same stores: `ReconcileFakes` is their fakes at once, with the reconciler's own ports added (test code
only: see ips/shared/fakes.py)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from ips.completion.fakes import CompletionFakes
from ips.expansion.fakes import ExpansionFakes
from ips.intake.fakes import IntakeFakes
from ips.processing.fakes import ProcessingFakes
from ips.reconcile.policy import ReconcilePolicy
from ips.reconcile.ports import DeadLetter, DeadLetterQueue, Lease, ReconcilePorts, RoundLog


class MemoryDeadLetters:
    """A dead-letter queue: what is received is invisible until deleted, or until `reappear` (its visibility
    timeout passed)."""

    def __init__(self) -> None:
        self.letters: list[DeadLetter] = []
        self.received: list[DeadLetter] = []  # taken and not deleted
        self.deleted: list[DeadLetter] = []

    def put(self, body: str) -> None:
        number = len(self.letters) + len(self.received) + len(self.deleted)
        self.letters.append(DeadLetter(f"m-{number}", body, f"r-{number}", receive_count=5))

    def receive(self, max_messages: int) -> list[DeadLetter]:
        taken, self.letters = self.letters[:max_messages], self.letters[max_messages:]
        self.received.extend(taken)
        return taken

    def delete(self, letter: DeadLetter) -> None:
        self.received.remove(letter)
        self.deleted.append(letter)

    def reappear(self) -> None:
        self.letters, self.received = self.received + self.letters, []


class MemoryLease:
    """Named leases: one holder each until released or run out (the port's contract)."""

    def __init__(self) -> None:
        self.held: dict[str, tuple[str, datetime]] = {}

    def acquire(self, name: str, holder: str, now: datetime, until: datetime) -> bool:
        current = self.held.get(name)
        if current is not None and current[1] >= now:
            return False
        self.held[name] = (holder, until)
        return True

    def release(self, name: str, holder: str) -> None:
        if name in self.held and self.held[name][0] == holder:
            del self.held[name]


class MemoryRoundLog:
    def __init__(self) -> None:
        self.healthy: datetime | None = None

    def last_healthy(self) -> datetime | None:
        return self.healthy

    def mark_healthy(self, at: datetime) -> None:
        self.healthy = at


@dataclass
class ReconcileFakes(IntakeFakes, ExpansionFakes, ProcessingFakes, CompletionFakes):
    """The reconciler's own ports (the dead-letter queues, the ingest failures queue, its lease and its log) beside
    the fakes of the use cases whose work it mends, over one set of stores."""

    dead_images: MemoryDeadLetters = field(default_factory=MemoryDeadLetters)  # the images queue's DLQ
    dead_chunks: MemoryDeadLetters = field(default_factory=MemoryDeadLetters)  # the chunks queue's
    dead_webhooks: MemoryDeadLetters = field(default_factory=MemoryDeadLetters)  # the webhook queue's
    ingest_failures: MemoryDeadLetters = field(default_factory=MemoryDeadLetters)  # on-failure records of ingest
    rounds: MemoryRoundLog = field(default_factory=MemoryRoundLog)
    lease: MemoryLease = field(default_factory=MemoryLease)
    reconcile_policy: ReconcilePolicy = field(default_factory=ReconcilePolicy)

    def reconcile(self) -> ReconcilePorts:
        return ReconcilePorts(
            self.catalog,
            self.ledger,
            self.queue,
            self.chunks_queue,
            self.chunk_progress,
            self.uploads,
            (self.dead_images, self.dead_chunks, self.dead_webhooks),
            self.clock,
            self.completion(),
            self.reconcile_policy,
            self.intake_policy,
            self.lease,
            self.rounds,
            self.ingest_failures,
        )


# Each fake is its port: mypy checks these assignments, so a fake missing a member of its Protocol or with a
# different signature is a type error here (make lint), not a surprise in a test.
_dead_letter_queue: type[DeadLetterQueue] = MemoryDeadLetters
_lease: type[Lease] = MemoryLease
_round_log: type[RoundLog] = MemoryRoundLog
