"""SQS images queue -> fetch, compress, store, record and count a batch of images (chunks of CSV rows are expanded
by the expand function, on their own queue). The batch is processed as one unit of I/O
(ips.processing.service.run_batch); then powertools' BatchProcessor reports each record on its own: a malformed message,
or one for a request that does not exist, is logged with its message ID, counted, and removed without touching the rest
of the batch (a chunk or a webhook wake-up here is malformed like any body that is not an image task); a
failed record is retried alone (after the source's Retry-After when it gave one)."""

from __future__ import annotations

import functools
import time
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.typing import LambdaContext

from ips.processing.image import RetryLater, note_failed_delivery
from ips.processing.service import Delivery, Handled, Removed, run_batch
from ips.shared.model import ImageTask
from ips_runtime.observability import observability
from ips_runtime.roots import PROCESS as root
from ips_runtime.sqs import SqsRecord

logger, metrics, tracer = observability("process")
# Kept back from each fetch's share of the invocation: compressing, storing, recording and counting the batch.
FINISH_RESERVE_S = 8.0
# Kept back from the invocation's remaining time when compressing: storing, recording and counting (decoding stops
# at the deadline this leaves, and an encode starts only when its estimate ends before it:
# ips.shared.imaging.encode_cost).
DECODE_RESERVE_S = 5.0
_REMOVED = {
    Removed.MALFORMED: "malformed message removed",
    Removed.UNKNOWN_REQUEST: "message for an unknown request removed",
}


def deliveries(event: dict[str, Any]) -> list[Delivery]:
    return [
        Delivery(
            str(record.get("messageId", "")),
            str(record.get("body", "")),
            int(record.get("attributes", {}).get("ApproximateReceiveCount") or 1),
        )
        for record in event.get("Records", [])
    ]


@tracer.capture_method
def report(handled: dict[str, Handled], record: SqsRecord) -> None:
    """Tell BatchProcessor what became of the record: return (done, or removed) or raise (retried)."""
    outcome = handled[record.messageId]
    if outcome.task is not None:
        logger.set_correlation_id(outcome.task.request_id)
    if outcome.removed is not None:
        # Retrying cannot mend it, and the rest of the batch must go on: log it (with a bounded excerpt) and drop it.
        extra: dict[str, Any] = {"message_id": record.messageId, "receive_count": _receives(record)}
        if outcome.removed is Removed.MALFORMED:
            extra |= {"problem": outcome.problem, "body": record.body[:200]}
        logger.error(_REMOVED[outcome.removed], extra=extra)
        metrics.add_metric(outcome.removed.value, MetricUnit.Count, 1)
        return
    if outcome.error is not None:
        exc = outcome.error
        if isinstance(outcome.task, ImageTask):  # if it ends dead-lettered, its failure quotes this last error
            note_failed_delivery(outcome.task, exc, root().images.catalog)
        if isinstance(exc, RetryLater) and exc.delay_s is not None:
            # The source host said when: come back then, not after the visibility timeout.
            root().queue.delay(record.receiptHandle, exc.delay_s)
            metrics.add_metric("DelayedBySource", MetricUnit.Count, 1)
        raise exc
    assert outcome.count is not None
    metrics.add_metric("ImagesCounted" if outcome.count.counted else "DuplicateDeliveries", MetricUnit.Count, 1)
    if outcome.count.completed:
        logger.info("last image counted: request complete")


def _receives(record: SqsRecord) -> int:
    return int(record.attributes.ApproximateReceiveCount or 1)


@logger.inject_lambda_context(log_event=False)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    wiring = root()
    remaining_s = context.get_remaining_time_in_millis() / 1000
    handled = run_batch(
        deliveries(event),
        wiring.images,
        wiring.requests,
        fetch_budget=lambda: context.get_remaining_time_in_millis() / 1000 - FINISH_RESERVE_S,
        decode_deadline=time.monotonic() + remaining_s - DECODE_RESERVE_S,
    )
    # A processor per invocation: its state is the batch's, and the local cloud runs invocations in parallel.
    processor = BatchProcessor(event_type=EventType.SQS, model=SqsRecord)
    return process_partial_response(
        event=event, record_handler=functools.partial(report, handled), processor=processor, context=context
    )
