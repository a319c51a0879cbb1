"""SQS images queue -> fetch, compress, store and count each image (chunks of CSV rows are expanded by the expand
function, on their own queue). Each record is parsed and handled on its own: a malformed message, or one for a
request that does not exist, is logged with its message ID, counted, and removed without touching the rest of
the batch; failed records are retried alone. The batch's images go through an `ImageBatch`, which overlaps one
image's storing, recording and counting with the next one's compression; each record's handler still waits for
its own image, so its success or failure is reported for that record alone."""

from __future__ import annotations

import contextvars
import time
from collections.abc import Callable
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.parser.models import SqsRecordModel
from aws_lambda_powertools.utilities.typing import LambdaContext

from ips.image_batch import BatchImage, ImageBatch
from ips.messages import MalformedMessage, parse_task
from ips.model import ImageTask
from ips.ports import Catalog
from ips.processing import Prefetcher, RetryLater, note_failed_delivery
from ips_runtime.observability import observability
from ips_runtime.roots import PROCESS as root

logger, metrics, tracer = observability("process")
# Kept back from each fetch's share of the invocation: compressing, storing, recording and counting the image.
FINISH_RESERVE_S = 8.0
# Kept back from the invocation's remaining time when compressing: storing, recording and counting (decoding stops
# at the deadline this leaves, and an encode starts only when its estimate ends before it: ips.encode_cost).
DECODE_RESERVE_S = 5.0
_batch: contextvars.ContextVar[ImageBatch] = contextvars.ContextVar("image_batch")
_known: contextvars.ContextVar[dict[str, bool]] = contextvars.ContextVar("known_requests")


def _is_known(request_id: str, catalog: Catalog) -> bool:
    """One catalog read per request per batch (a batch usually holds one or two requests)."""
    known = _known.get()
    if request_id not in known:
        known[request_id] = catalog.get(request_id) is not None
    return known[request_id]


def _removed(record: SqsRecordModel, metric: str, message: str, **extra: Any) -> None:
    logger.error(message, extra={"message_id": record.messageId, "receive_count": _receives(record), **extra})
    metrics.add_metric(metric, MetricUnit.Count, 1)


def _receives(record: SqsRecordModel) -> int:
    return int(record.attributes.ApproximateReceiveCount or 1)


@tracer.capture_method
def handle_record(record: SqsRecordModel) -> None:
    try:
        task = parse_task(record.body)
    except MalformedMessage as exc:
        # Retrying cannot mend it, and the rest of the batch must go on: log it (with a bounded excerpt) and drop it.
        _removed(record, "MalformedMessages", "malformed message removed", problem=str(exc), body=record.body[:200])
        return
    if not isinstance(task, ImageTask):
        # Chunks go to the chunks queue; one left here by an older deployment is removed, and the reconciler
        # re-plans the rows of its stalled request onto the chunks queue.
        _removed(record, "MisroutedMessages", "a task of another queue removed", request_id=task.request_id)
        return
    logger.set_correlation_id(task.request_id)
    wiring = root()
    if not _is_known(task.request_id, wiring.images.catalog):
        _removed(record, "UnknownRequestMessages", "message for an unknown request removed")
        return
    final_attempt = _receives(record) >= wiring.max_receive_count
    try:
        result = _batch.get().result(BatchImage(record.messageId, task, final_attempt))
    except Exception as exc:  # retried; if it ends dead-lettered, its failure quotes this last error
        note_failed_delivery(task, exc, wiring.images.catalog)
        if isinstance(exc, RetryLater) and exc.delay_s is not None:
            # The source host said when: come back then, not after the visibility timeout.
            wiring.queue.delay(record.receiptHandle, exc.delay_s)
            metrics.add_metric("DelayedBySource", MetricUnit.Count, 1)
        raise
    if result.counted:
        metrics.add_metric("ImagesCounted", MetricUnit.Count, 1)
    else:
        metrics.add_metric("DuplicateDeliveries", MetricUnit.Count, 1)
    if result.completed:
        logger.info("last image counted: request complete")


def _batch_images(
    records: list[dict[str, Any]], is_known: Callable[[str], bool], max_receive_count: int
) -> list[BatchImage]:
    """The batch's images of known requests, in record order, to start ahead of their records' handlers; a body
    that does not parse, a chunk, or a request that does not exist is left to its record handler."""
    images = []
    for record in records:
        try:
            task = parse_task(str(record.get("body", "")))
        except MalformedMessage:
            continue
        if not isinstance(task, ImageTask):
            continue
        try:
            known = is_known(task.request_id)
        except Exception:  # the catalog cannot be read now: left to the record handlers, which fail for a retry
            logger.warning("could not look the batch's requests up", exc_info=True)
            return images
        if known:
            receives = int(record.get("attributes", {}).get("ApproximateReceiveCount") or 1)
            images.append(BatchImage(str(record.get("messageId", "")), task, receives >= max_receive_count))
    return images


@logger.inject_lambda_context(log_event=False)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    wiring = root()
    known = _known.set({})
    images = _batch_images(
        event.get("Records", []),
        lambda request_id: _is_known(request_id, wiring.images.catalog),
        wiring.max_receive_count,
    )

    def budget() -> float:
        return context.get_remaining_time_in_millis() / 1000 - FINISH_RESERVE_S

    # As many downloads in flight as the batch has images: a slow source delays only its own record.
    prefetcher = Prefetcher(wiring.images, len(images), budget)
    prefetcher.start(image.task for image in images)
    decode_deadline = time.monotonic() + context.get_remaining_time_in_millis() / 1000 - DECODE_RESERVE_S
    batch = ImageBatch(wiring.images, prefetcher, deadline=decode_deadline)
    batch.start(images)
    token = _batch.set(batch)
    try:
        # A processor per invocation: its state is the batch's, and the local cloud runs invocations in parallel.
        processor = BatchProcessor(event_type=EventType.SQS, model=SqsRecordModel)
        return process_partial_response(event=event, record_handler=handle_record, processor=processor, context=context)
    finally:
        _batch.reset(token)
        _known.reset(known)
        batch.close()
        prefetcher.close()
