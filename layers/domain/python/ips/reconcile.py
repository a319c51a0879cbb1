"""The reconciler: a scheduled round that makes sure every request ends, whatever was lost or failed.

MongoDB's per-image state is the truth; queues carry work, not truth. Each round:
- drains the dead-letter queues: a dead image fails with DEAD_LETTERED, settled as the process function
  settles its images (ips.settle: recorded, counted once, its savings kept);
  a dead chunk ends its request FAILED; a message that is not a task is logged and dropped;
- ends presigned uploads that expired (UPLOAD_EXPIRED) and requests past their deadline: every image not yet
  terminal fails with DEADLINE_EXCEEDED, so the request completes through the normal path (CSV, webhook);
- re-queues the lost work of a request that has not moved for the stall window: its sent but pending images
  when the images queue holds fewer messages than they are, its unfinished chunks when the chunks queue holds
  fewer than they are (so some was lost, not merely waiting in a backlog; see `_requeue_lost`);
- completes a request whose last image was counted but whose completion was lost;
- resends webhooks that are not delivered and not claimed by a live holder.

Every step is conditional or idempotent (first terminal state wins, counts are once per image, final states are
set once), so a round may run twice, or beside the pipeline, or beside another round."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from itertools import batched

from ips.completion import CompletionPorts, FailPorts, WebhookBusy, complete_request, fail_request, send_webhook
from ips.context import Settings
from ips.intake import expire_upload
from ips.messages import MalformedMessage, parse_task
from ips.model import ChunkTask, ImageOutcome, ImageTask
from ips.outstanding import outstanding, product_images
from ips.ports import (
    Catalog,
    ChunkProgress,
    Clock,
    DeadLetter,
    DeadLetterQueue,
    Ledger,
    RequestRecord,
    TaskQueue,
    UploadStore,
)
from ips.settle import settle

logger = logging.getLogger(__name__)
DEAD_LETTERED = "DEAD_LETTERED"
DEADLINE_EXCEEDED = "DEADLINE_EXCEEDED"
MAX_DEAD_LETTERS = 2000  # per queue per round; the rest waits for the next round
SETTLE_GROUP = 99  # images settled together: one transaction holds a marker each and the request's shard update


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
    completion: CompletionPorts
    settings: Settings  # grace, stall and resend windows; how a lost chunk's file is re-planned

    @property
    def failing(self) -> FailPorts:
        return FailPorts(self.catalog, self.ledger)


@dataclass
class RoundReport:
    dead_images: int = 0
    dead_chunks: int = 0
    dead_dropped: int = 0  # not a task, or for no known request
    uploads_expired: int = 0
    past_deadline: int = 0
    images_failed_at_deadline: int = 0
    stalled: int = 0  # work lost: re-queued
    waiting: int = 0  # no progress, but the queues hold enough messages for all its work: left to them
    requeued: int = 0
    completions_resumed: int = 0
    webhooks_resent: int = 0
    out_of_time: bool = False

    def as_dict(self) -> dict[str, int | bool]:
        return {field.name: getattr(self, field.name) for field in fields(self)}


def reconcile(ports: ReconcilePorts, time_left: Callable[[], float] = lambda: float("inf")) -> RoundReport:
    """One round. `time_left` (seconds) lets it stop before its invocation does; the next round goes on."""
    report = RoundReport()
    for queue in ports.dead_letters:
        drain_dead_letters(queue, ports, report, time_left)
    now = ports.clock()
    backlogs = _Backlogs(_Depth(ports.queue), _Depth(ports.chunks))
    for record in ports.catalog.open_requests():
        if time_left() <= 0:
            report.out_of_time = True
            return report
        try:
            _reconcile_request(record, now, ports, report, backlogs)
        except Exception:  # one broken request must not stop the round for the others
            logger.exception("reconciling a request failed", extra={"request_id": record.request_id})
    _resend_webhooks(now, ports, report, time_left)
    return report


def drain_dead_letters(
    queue: DeadLetterQueue, ports: ReconcilePorts, report: RoundReport, time_left: Callable[[], float]
) -> None:
    for _ in range(0, MAX_DEAD_LETTERS, 10):
        letters = queue.receive(10)
        if not letters:
            return
        for letter in _settle_dead_letters(letters, ports, report):
            queue.delete(letter)  # only once settled: a crash before this settles it again, idempotently
        if time_left() <= 0:
            report.out_of_time = True
            return


def _settle_dead_letters(letters: list[DeadLetter], ports: ReconcilePorts, report: RoundReport) -> list[DeadLetter]:
    """Settle what the letters were for: their images together (failed DEAD_LETTERED, counted once), their chunks
    by ending the request. The letters settled, to delete; one that fails is left in the queue (visible again
    later) and never stops the others."""
    settled: list[DeadLetter] = []
    images: list[tuple[DeadLetter, ImageTask]] = []
    for letter in letters:
        try:
            task = _dead_task(letter, ports, report)
            if task is not None:
                images.append((letter, task))
            else:
                settled.append(letter)
        except Exception:
            logger.exception("settling a dead letter failed", extra={"message_id": letter.message_id})
    try:
        failures = [
            (task, ImageOutcome.failure(DEAD_LETTERED, dead_letter_reason(ports.catalog.last_error(task))))
            for _, task in images
        ]
        results = settle(failures, ports.catalog, ports.ledger)
    except Exception:
        logger.exception("settling %d dead-lettered image(s) failed", len(images))
        return settled
    for (letter, task), result in zip(images, results, strict=True):
        if isinstance(result, LookupError):
            logger.error(
                "dead letter for an unknown image dropped",
                extra={"message_id": letter.message_id, "request_id": task.request_id},
            )
            report.dead_dropped += 1
        else:
            report.dead_images += 1
        settled.append(letter)
    return settled


def _dead_task(letter: DeadLetter, ports: ReconcilePorts, report: RoundReport) -> ImageTask | None:
    """The image a dead letter was for, to fail; None when there is nothing to settle for it (dropped, or a
    chunk whose request was ended here)."""
    extra = {"message_id": letter.message_id, "receive_count": letter.receive_count}
    try:
        task = parse_task(letter.body)
    except MalformedMessage as exc:
        logger.error("dead letter that is no task dropped", extra={**extra, "problem": str(exc)})
        report.dead_dropped += 1
        return None
    if ports.catalog.get(task.request_id) is None:
        logger.error("dead letter for an unknown request dropped", extra={**extra, "request_id": task.request_id})
        report.dead_dropped += 1
        return None
    if isinstance(task, ChunkTask):
        fail_request(
            task.request_id,
            DEAD_LETTERED,
            f"Rows {task.chunk.first_row}+ could not be read: every delivery of the work failed, and it was "
            "dead-lettered.",
            ports.failing,
        )
        report.dead_chunks += 1
        return None
    return task


def dead_letter_reason(last_error: str | None) -> str:
    reason = "The image could not be processed: every delivery of its work failed, and it was dead-lettered"
    return f"{reason}. Last error: {last_error}" if last_error else f"{reason}."


def _settle_groups(outcomes: Iterable[tuple[ImageTask, ImageOutcome]], ports: ReconcilePorts) -> int:
    """Settle the images a group at a time (ips.settle: the process function's own path, savings kept); a group
    that fails is logged and left to the next round, so every round makes progress. How many were settled."""
    done = 0
    for group in batched(outcomes, SETTLE_GROUP):
        try:
            done += sum(not isinstance(result, LookupError) for result in settle(group, ports.catalog, ports.ledger))
        except Exception:
            logger.exception("a reconciler step failed; the next round retries it")
    return done


class _Depth:
    """A queue's depth (waiting, in flight, delayed), read once per round and only when a request looks stalled."""

    def __init__(self, queue: TaskQueue) -> None:
        self._queue = queue
        self._depth: int | None = None

    def __call__(self) -> int:
        if self._depth is None:
            self._depth = self._queue.backlog()
        return self._depth


@dataclass(frozen=True)
class _Backlogs:
    images: Callable[[], int]
    chunks: Callable[[], int]


def _reconcile_request(
    record: RequestRecord, now: datetime, ports: ReconcilePorts, report: RoundReport, backlogs: _Backlogs
) -> None:
    if record.awaiting_upload:
        if expire_upload(record, now, ports.uploads, ports.settings.upload_grace_s, ports.failing):
            report.uploads_expired += 1
        return
    if record.deadline_at is not None and now > record.deadline_at:
        report.past_deadline += 1
        _end_past_deadline(record, ports, report)
        return
    counts = ports.ledger.counts(record.request_id)
    if counts is None or counts.progress_at is None:
        return
    if now.timestamp() - counts.progress_at < ports.settings.stall_after_s:
        return
    if counts.complete:
        # The last count happened, but its completion never ran through (the stream's retries ran out).
        complete_request(record.request_id, ports.completion)
        report.completions_resumed += 1
        return
    requeued = _requeue_lost(record, ports, backlogs)
    if requeued:
        report.stalled += 1
        report.requeued += requeued
        ports.ledger.touch(record.request_id)
    elif requeued is None:
        report.waiting += 1


def _end_past_deadline(record: RequestRecord, ports: ReconcilePorts, report: RoundReport) -> None:
    request_id = record.request_id
    failure = ImageOutcome.failure(
        DEADLINE_EXCEEDED, "The request passed its deadline before this image was processed."
    )
    images = list(_images(record, ports))
    pending = ((task, failure) for task, outcome in images if outcome is None)
    report.images_failed_at_deadline += _settle_groups(pending, ports)
    counts = ports.ledger.counts(request_id)
    if counts is None or len(images) < record.total_images:
        # Rows that never became products (or no counter at all): no image path can end it.
        fail_request(
            request_id,
            DEADLINE_EXCEEDED,
            "The request passed its deadline before all its rows were read.",
            ports.failing,
        )
        return
    if not counts.complete:
        # Terminal in MongoDB but not counted (a crash between the two steps): count them now, once each.
        _settle_groups(((task, outcome) for task, outcome in images if outcome is not None), ports)
    if (ports.ledger.counts(request_id) or counts).complete:
        complete_request(request_id, ports.completion)  # a no-op when the stream's notify got there first


def _images(record: RequestRecord, ports: ReconcilePorts) -> Iterator[tuple[ImageTask, ImageOutcome | None]]:
    for product in ports.catalog.products(record.request_id):
        yield from product_images(record, product)


def _requeue_lost(record: RequestRecord, ports: ReconcilePorts, backlogs: _Backlogs) -> int | None:
    """Send again what must have been lost, queue by queue; None when all of it may be waiting in a backlog.

    The rule: the pending images whose messages were sent (by the chunk's recorded progress) are re-queued when
    the images queue holds fewer messages than they are; the chunks not fully expanded (rows that never became
    products, or image messages not all sent) when the chunks queue holds fewer than they are. A pending image
    that its chunk has not sent yet is the chunk's work, not the images queue's: it is neither counted against
    the images queue nor re-queued as an image (the chunk, queued or in flight, will send it; re-sent, it
    resumes from its progress). A request that only waits behind a backlog (other requests' work, its own
    retries) is left to it: re-queueing it would double the backlog, slow every request and make more of them
    look stalled. A lost chunk whose queue stays busy with others is re-sent once it drains below it; a chunk
    that dies ends its request through the chunks DLQ, and the deadline ends whatever is still open."""
    products = list(ports.catalog.products(record.request_id))
    pending = [task for product in products for task, outcome in product_images(record, product) if outcome is None]
    missing_rows = record.total_products - len(products)
    if not pending and missing_rows <= 0:
        # Every image is terminal but the count is short: a crash between recording an image and counting it,
        # whose message is gone. Count them now, once each (the ledger's markers skip those counted before).
        terminal = ((task, outcome) for product in products for task, outcome in product_images(record, product))
        _settle_groups(((task, outcome) for task, outcome in terminal if outcome is not None), ports)
        return 0
    # Without reading the file: at most every pending image was sent, and every outstanding chunk has a missing
    # row or a pending image. When both queues hold that much, it may all be waiting.
    if backlogs.images() >= len(pending) and backlogs.chunks() >= missing_rows + len(pending):
        return None
    work = outstanding(record, products, pending, ports.uploads, ports.progress, ports.settings)
    lost_images = work.images if backlogs.images() < len(work.images) else []
    lost_chunks = work.chunks if backlogs.chunks() < len(work.chunks) else []
    if not lost_images and not lost_chunks:
        return None
    ports.chunks.send([chunk.to_message() for chunk in lost_chunks])
    ports.queue.send([image.to_message() for image in lost_images])
    logger.warning(
        "stalled request re-queued",
        extra={"request_id": record.request_id, "images": len(lost_images), "chunks": len(lost_chunks)},
    )
    return len(lost_images) + len(lost_chunks)


def _resend_webhooks(now: datetime, ports: ReconcilePorts, report: RoundReport, time_left: Callable[[], float]) -> None:
    window = timedelta(seconds=ports.settings.webhook_resend_window_s)
    for request_id in list(ports.catalog.undelivered_webhooks(now - window, now, now)):
        if time_left() <= 0:
            report.out_of_time = True
            return
        try:
            if send_webhook(request_id, ports.completion.webhooks):
                report.webhooks_resent += 1
        except WebhookBusy:
            pass  # taken by a live holder since the query: theirs to send
        except Exception:  # one failed resend must not stop the others; the next round tries it again
            logger.exception("resending a webhook failed", extra={"request_id": request_id})
