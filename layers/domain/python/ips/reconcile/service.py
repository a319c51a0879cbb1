"""The reconciler: a scheduled round that makes sure every request ends, whatever was lost or failed, and that
an outage only pauses the work.

MongoDB's per-image state is the truth; queues carry work, not truth. Each round:
- first reads both stores (MongoDB, DynamoDB): while one fails, the round does nothing (nothing is ended for an
  outage); the first round that finds them answering after more than two schedule periods moves every open
  request's deadline by the time since the last one that did (the clock stopped while nothing could work);
- drains the dead-letter queues: a message whose request is still open and before its deadline is put back on
  its queue (at most DEAD_LETTER_REDRIVES times: its redrive count travels in the message); past those, a dead
  image fails with DEAD_LETTERED, settled as the process function settles its images (ips.processing.settle: recorded,
  counted once, its savings kept), a dead chunk ends its request FAILED; a webhook's wake-up is put back while
  the webhook is pending; a message that is not a task is logged and dropped;
- re-runs the ingestion of each upload whose ingestion failed every try (the ingest failures queue);
- ends presigned uploads that expired (UPLOAD_EXPIRED), ingests a file that came but was never ingested, and
  ends requests past their deadline, awaiting their upload or not: every image not yet terminal fails with
  DEADLINE_EXCEEDED, so the request completes through the normal path (CSV, webhook);
- re-queues the lost work of a request that has not moved for the stall window: its sent but pending images
  when the images queue holds fewer messages than they are, its unfinished chunks when the chunks queue holds
  fewer than they are (so some was lost, not merely waiting in a backlog; see `_requeue_lost`);
- completes a request whose last image was counted but whose completion was lost;
- wakes webhooks whose wake-up was lost (overdue by the stall window): it never sends one itself.

Every step is conditional or idempotent (first terminal state wins, counts are once per image, final states are
set once), so a round may run twice, or beside the pipeline. Rounds run one at a time all the same (a lease in
the table, held for the round or at most the function's timeout): a round that would overlap a slow one is
skipped, not run beside it doing the same work twice."""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from itertools import batched
from typing import Any
from urllib.parse import unquote_plus

from ips.completion.service import complete_request, wake_webhook
from ips.intake.service import OverdueUpload, ingest_upload, settle_overdue_upload
from ips.processing.settle import settle
from ips.reconcile.outstanding import outstanding, product_images
from ips.reconcile.policy import ReconcilePolicy
from ips.reconcile.ports import DeadLetter, DeadLetterQueue, ReconcilePorts
from ips.shared.failing import fail_request
from ips.shared.messages import MalformedMessage, parse_task, redrive_count, redriven
from ips.shared.model import ChunkTask, ImageOutcome, ImageTask, WebhookTask
from ips.shared.ports import RequestRecord, TaskQueue

logger = logging.getLogger(__name__)
DEAD_LETTERED = "DEAD_LETTERED"
DEADLINE_EXCEEDED = "DEADLINE_EXCEEDED"
MAX_DEAD_LETTERS = 2000  # per queue per round; the rest waits for the next round
ROUND_LEASE = "reconciler"
PROBE = "reconciler-probe"  # a request that never exists: reading it tells whether each store answers
SETTLE_GROUP = 99  # images settled together: one transaction holds a marker each and the request's shard update


@dataclass
class RoundReport:
    store_outage: bool = False  # a store failed when the round began: it did nothing
    deadlines_paused: int = 0  # open requests whose deadline moved for an outage
    redriven: int = 0  # dead letters put back on their queue
    dead_images: int = 0
    dead_chunks: int = 0
    dead_dropped: int = 0  # not a task, for no known request, or a webhook's wake-up with nothing left to do
    uploads_reingested: int = 0  # from the ingest failures queue, or a file found never ingested
    uploads_expired: int = 0
    past_deadline: int = 0
    images_failed_at_deadline: int = 0
    stalled: int = 0  # work lost: re-queued
    waiting: int = 0  # no progress, but the queues hold enough messages for all its work: left to them
    requeued: int = 0
    completions_resumed: int = 0
    webhooks_woken: int = 0  # wake-ups sent again for webhooks whose wake-up was lost
    out_of_time: bool = False
    skipped: bool = False  # another round held the lease: this one did nothing

    def as_dict(self) -> dict[str, int | bool]:
        return {field.name: getattr(self, field.name) for field in fields(self)}


def reconcile(ports: ReconcilePorts, time_left: Callable[[], float] = lambda: float("inf")) -> RoundReport:
    """One round, unless another still holds the lease. `time_left` (seconds) lets it stop before its invocation
    does; the next round goes on."""
    now, holder = ports.clock(), uuid.uuid4().hex
    try:
        held = ports.lease.acquire(ROUND_LEASE, holder, now, now + timedelta(seconds=ports.policy.lease_s))
    except Exception:  # the lease lives in the table: DynamoDB failing is an outage, waited out like any other
        logger.exception("a store is failing: this round does nothing, and the deadlines wait for it")
        return RoundReport(store_outage=True)
    if not held:
        logger.info("another reconciler round is running: this one is skipped")
        return RoundReport(skipped=True)
    try:
        return _round(ports, time_left)
    finally:
        try:
            ports.lease.release(ROUND_LEASE, holder)
        except Exception:  # it runs out by itself (ReconcilePolicy.lease_s)
            logger.warning("could not give the round's lease back", exc_info=True)


def _round(ports: ReconcilePorts, time_left: Callable[[], float]) -> RoundReport:
    report = RoundReport()
    now = ports.clock()
    try:
        _probe(ports)
        _pause_deadlines(ports.rounds.last_healthy(), now, ports, report)
        ports.rounds.mark_healthy(now)
    except Exception:  # the stores are the truth: without them nothing may be ended, only waited for
        logger.exception("a store is failing: this round does nothing, and the deadlines wait for it")
        report.store_outage = True
        return report
    for queue in ports.dead_letters:
        drain_dead_letters(queue, ports, report, time_left)
    if ports.ingest_failures is not None:
        _reingest_failures(ports.ingest_failures, ports, report, time_left)
    backlogs = _Backlogs(_Depth(ports.queue), _Depth(ports.chunks))
    for record in ports.catalog.open_requests():
        if time_left() <= 0:
            report.out_of_time = True
            return report
        try:
            _reconcile_request(record, now, ports, report, backlogs)
        except Exception:  # one broken request must not stop the round for the others
            logger.exception("reconciling a request failed", extra={"request_id": record.request_id})
    _wake_webhooks(now, ports, report, time_left)
    try:  # the stores answered to the end: a long round is not taken for an outage by the next one
        _probe(ports)
        ports.rounds.mark_healthy(ports.clock())
    except Exception:
        logger.warning("a store failed during the round", exc_info=True)
    return report


def _probe(ports: ReconcilePorts) -> None:
    """Raises unless both stores answer."""
    ports.catalog.get(PROBE)  # MongoDB
    ports.ledger.counts(PROBE)  # DynamoDB


def _pause_deadlines(last_healthy: datetime | None, now: datetime, ports: ReconcilePorts, report: RoundReport) -> None:
    """After a gap of more than two schedule periods since a round last found the stores answering (at its start
    or at its end: a long round is no outage), a store outage or no round running, every open request's
    deadline moves by the time it spent in the gap: the clock stops while nothing could work, so an outage
    fails nothing that could be done once it is over."""
    gap = now - last_healthy if last_healthy is not None else timedelta(0)
    if gap.total_seconds() <= 2 * ports.policy.interval_s:
        return
    assert last_healthy is not None
    for record in ports.catalog.open_requests():
        if record.deadline_at is None:
            continue
        since = max(last_healthy, record.created_at, record.paused_through or last_healthy)
        if since >= now:
            continue
        moved = record.deadline_at + (now - since)
        if ports.catalog.extend_deadline(record.request_id, moved, now, was=record.paused_through):
            report.deadlines_paused += 1
    logger.warning(
        "the stores were out (or no round ran): deadlines moved",
        extra={"gap_s": gap.total_seconds(), "requests": report.deadlines_paused},
    )


def drain_dead_letters(
    queue: DeadLetterQueue, ports: ReconcilePorts, report: RoundReport, time_left: Callable[[], float]
) -> None:
    for _ in range(0, MAX_DEAD_LETTERS, 10):
        letters = queue.receive(10)
        if not letters:
            return
        for letter in _settle_dead_letters(letters, ports, report, ports.clock()):
            queue.delete(letter)  # only once settled: a crash before this settles it again, idempotently
        if time_left() <= 0:
            report.out_of_time = True
            return


def _settle_dead_letters(
    letters: list[DeadLetter], ports: ReconcilePorts, report: RoundReport, now: datetime
) -> list[DeadLetter]:
    """Settle what the letters were for: put back on its queue what may still be done (ips.shared.messages.redriven),
    fail the rest of their images together (DEAD_LETTERED, counted once), end their dead chunks' requests. The
    letters settled, to delete; one that fails is left in the queue (visible again later) and never stops the
    others."""
    settled: list[DeadLetter] = []
    images: list[tuple[DeadLetter, ImageTask]] = []
    for letter in letters:
        try:
            task = _dead_task(letter, ports, report, now)
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
        results = settle(failures, ports.catalog, ports.ledger, now)
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


def _dead_task(letter: DeadLetter, ports: ReconcilePorts, report: RoundReport, now: datetime) -> ImageTask | None:
    """The image a dead letter was for, to fail; None when there is nothing to fail for it (dropped, put back on
    its queue, or a chunk whose request was ended here)."""
    extra = {"message_id": letter.message_id, "receive_count": letter.receive_count}
    try:
        task = parse_task(letter.body)
        redrives = redrive_count(letter.body)
    except MalformedMessage as exc:
        logger.error("dead letter that is no task dropped", extra={**extra, "problem": str(exc)})
        report.dead_dropped += 1
        return None
    record = ports.catalog.get(task.request_id)
    if record is None:
        logger.error("dead letter for an unknown request dropped", extra={**extra, "request_id": task.request_id})
        report.dead_dropped += 1
        return None
    extra |= {"request_id": task.request_id, "redrives": redrives}
    if isinstance(task, WebhookTask):
        if redrives < ports.policy.dead_letter_redrives and _webhook_pending(record, task, now, ports.policy):
            ports.completion.webhooks.send([redriven(letter.body)])
            report.redriven += 1
        else:  # delivered, given up, superseded, or put back enough: its document says what became of it
            logger.error("a webhook's dead wake-up dropped", extra=extra)
            report.dead_dropped += 1
        return None
    queue = ports.queue if isinstance(task, ImageTask) else ports.chunks
    if redrives < ports.policy.dead_letter_redrives and _before_deadline(record, now):
        # Every delivery failed, perhaps only because a store was down: the work goes round again.
        queue.send([redriven(letter.body)])
        logger.warning("dead letter put back on its queue", extra=extra)
        report.redriven += 1
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


def _before_deadline(record: RequestRecord, now: datetime) -> bool:
    return not record.status.is_final and record.deadline_at is not None and now < record.deadline_at


def _webhook_pending(record: RequestRecord, task: WebhookTask, now: datetime, policy: ReconcilePolicy) -> bool:
    state = record.webhook or {}
    ended = record.completed_at or now
    in_window = now < ended + timedelta(seconds=policy.webhook_resend_window_s)
    expected = state.get("wake") == task.wake
    return in_window and expected and not state.get("delivered") and not state.get("gave_up")


def _reingest_failures(
    queue: DeadLetterQueue, ports: ReconcilePorts, report: RoundReport, time_left: Callable[[], float]
) -> None:
    """Each S3 event whose ingestion failed every try (Lambda's on-failure record) is ingested again: a file that
    is there is always ingested (idempotent), or its request ends by its deadline. A letter whose ingestion
    fails again stays in the queue for the next round."""
    for _ in range(0, MAX_DEAD_LETTERS, 10):
        letters = queue.receive(10)
        if not letters:
            return
        for letter in letters:
            try:
                for key in failed_upload_keys(letter.body):
                    ingest_upload(key, ports.intake)
                    report.uploads_reingested += 1
            except Exception:
                logger.exception("re-ingesting an upload failed", extra={"message_id": letter.message_id})
                continue
            queue.delete(letter)
        if time_left() <= 0:
            report.out_of_time = True
            return


def failed_upload_keys(body: str) -> list[str]:
    """The uploads' keys in an asynchronous invocation's on-failure record (its `requestPayload` is the S3
    event); none from anything else (the letter is dropped)."""
    try:
        record: Any = json.loads(body)
        events = record["requestPayload"]["Records"]
        return [unquote_plus(str(event["s3"]["object"]["key"])) for event in events]
    except (ValueError, KeyError, TypeError):
        logger.error("an ingest failure that carries no S3 event dropped", extra={"body": body[:200]})
        return []


def dead_letter_reason(last_error: str | None) -> str:
    reason = "The image could not be processed: every delivery of its work failed, and it was dead-lettered"
    return f"{reason}. Last error: {last_error}" if last_error else f"{reason}."


def _settle_groups(outcomes: Iterable[tuple[ImageTask, ImageOutcome]], ports: ReconcilePorts) -> int:
    """Settle the images a group at a time (ips.processing.settle: the process function's own path, savings kept); a
    group that fails is logged and left to the next round, so every round makes progress. How many were settled."""
    done = 0
    for group in batched(outcomes, SETTLE_GROUP):
        try:
            done += sum(
                not isinstance(result, LookupError)
                for result in settle(group, ports.catalog, ports.ledger, ports.clock())
            )
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
    past_deadline = record.deadline_at is not None and now > record.deadline_at
    if record.awaiting_upload and past_deadline:
        # A file that never came expired long before; one whose ingestion kept failing ends here.
        report.past_deadline += 1
        message = "The request passed its deadline before its uploaded file could be ingested."
        fail_request(record.request_id, DEADLINE_EXCEEDED, message, ports.failing)
        return
    if record.awaiting_upload:
        overdue = settle_overdue_upload(record, now, ports.intake)
        report.uploads_expired += overdue is OverdueUpload.EXPIRED
        report.uploads_reingested += overdue is OverdueUpload.INGESTED
        return
    if past_deadline:
        report.past_deadline += 1
        _end_past_deadline(record, ports, report)
        return
    counts = ports.ledger.counts(record.request_id)
    if counts is None or counts.progress_at is None:
        return
    if now.timestamp() - counts.progress_at < ports.policy.stall_after_s:
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
        ports.ledger.touch(record.request_id, now)
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
    work = outstanding(record, products, pending, ports.uploads, ports.progress, ports.intake_policy)
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


def _wake_webhooks(now: datetime, ports: ReconcilePorts, report: RoundReport, time_left: Callable[[], float]) -> None:
    """A pending webhook whose next attempt is overdue by the stall window lost its wake-up (a crash between
    ending the request and queueing it, a message gone): a new one goes on the webhook queue. Only a wake-up:
    the webhook function makes the attempt, within the request's caps."""
    window = timedelta(seconds=ports.policy.webhook_resend_window_s)
    overdue = now - timedelta(seconds=ports.policy.stall_after_s)
    for request_id in list(ports.catalog.undelivered_webhooks(now - window, overdue, now)):
        if time_left() <= 0:
            report.out_of_time = True
            return
        try:
            wake_webhook(request_id, now, ports.catalog, ports.completion.webhooks)
        except Exception:  # one failed wake-up must not stop the others; the next round tries it again
            logger.exception("waking a webhook failed", extra={"request_id": request_id})
            continue
        report.webhooks_woken += 1
