"""What a reconciler round needs from outside: the dead-letter queues, its lease and its own note of healthy rounds,
and the bundle the reconcile function's root builds (ReconcilePorts, with the intake and completion ports it
runs those use cases with)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from ips.completion.ports import CompletionPorts
from ips.intake.policy import IntakePolicy
from ips.intake.ports import IntakePorts
from ips.reconcile.policy import ReconcilePolicy
from ips.shared.failing import FailPorts
from ips.shared.ports import Catalog, ChunkProgress, Clock, Ledger, TaskQueue, UploadStore


class Lease(Protocol):
    """A named lease: one holder at a time, until it is released or its time is up (a holder that died)."""

    def acquire(self, name: str, holder: str, now: datetime, until: datetime) -> bool:
        """Hold `name` until `until`; False while another holder's lease has not run out."""
        ...

    def release(self, name: str, holder: str) -> None:
        """Give it up, if `holder` still holds it."""
        ...


@dataclass(frozen=True)
class DeadLetter:
    message_id: str
    body: str
    receipt: str
    receive_count: int  # deliveries before it was dead-lettered


class DeadLetterQueue(Protocol):
    """A dead-letter queue, drained by the reconciler: each message is settled, then deleted."""

    def receive(self, max_messages: int) -> list[DeadLetter]: ...
    def delete(self, letter: DeadLetter) -> None: ...


class RoundLog(Protocol):
    """The reconciler's own note (beside the catalog): when a round last found every store answering (it looks
    when it starts and when it ends)."""

    def last_healthy(self) -> datetime | None: ...
    def mark_healthy(self, at: datetime) -> None: ...


@dataclass(frozen=True)
class ReconcilePorts:
    """What a round needs: every request's state, its queues (the work and the dead letters), and completion."""

    catalog: Catalog
    ledger: Ledger
    queue: TaskQueue  # the images queue: a stalled request's pending images
    chunks: TaskQueue  # the chunks queue: a stalled request's lost chunks
    progress: ChunkProgress  # how far each chunk was expanded: which pending images were sent, which chunks left
    uploads: UploadStore
    dead_letters: tuple[DeadLetterQueue, ...]
    clock: Clock
    completion: CompletionPorts  # also the tenants' allowance and the webhook queue
    policy: ReconcilePolicy  # when work counts as lost, dead letters' redrives, the rounds' lease and schedule
    intake_policy: IntakePolicy  # how an overdue upload is ingested and a lost chunk's file re-planned
    lease: Lease  # one round at a time
    rounds: RoundLog  # when a round last found the stores answering
    ingest_failures: DeadLetterQueue | None = None  # S3 events whose ingestion failed every try (AWS only)

    @property
    def failing(self) -> FailPorts:
        return FailPorts(self.catalog, self.ledger, self.clock)

    @property
    def intake(self) -> IntakePorts:
        """What re-running an upload's ingestion needs."""
        return IntakePorts(
            self.uploads,
            self.catalog,
            self.ledger,
            self.chunks,
            self.completion.allowance,
            self.clock,
            self.intake_policy,
        )
