"""SQS images queue -> fetch, compress, store and count each image, or expand a chunk of CSV rows into image
messages (the asynchronous fan-out). Failed records are retried alone."""

from __future__ import annotations

import contextvars
import time
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from ips.completion import notify
from ips.intake import expand_chunk
from ips.model import ChunkTask, ImageTask, parse_task
from ips.processing import Prefetcher, RetryLater, process_image
from ips_runtime.observability import observability
from ips_runtime.wiring import shared_context

logger, metrics, tracer = observability("process")
FETCH_WORKERS = 8  # downloads of one batch (up to 10 images) in flight at once
# Kept back from the invocation's remaining time when decoding: encoding, storing, recording and counting.
DECODE_RESERVE_S = 5.0
_prefetcher: contextvars.ContextVar[Prefetcher | None] = contextvars.ContextVar("prefetcher", default=None)
_decode_deadline: contextvars.ContextVar[float | None] = contextvars.ContextVar("decode_deadline", default=None)


@tracer.capture_method
def handle_record(record: SQSRecord) -> None:
    task = parse_task(record.body)
    logger.set_correlation_id(task.request_id)
    context = shared_context()
    final_attempt = int(record.attributes.approximate_receive_count or 1) >= context.settings.max_receive_count
    if isinstance(task, ChunkTask):
        try:
            queued = expand_chunk(task, context, final_attempt=final_attempt)
        except Exception:
            if final_attempt:
                notify(task.request_id, context)  # the request just ended FAILED: its webhook says so
            raise
        metrics.add_metric("ImagesQueued", MetricUnit.Count, queued)
        return
    try:
        result = process_image(
            task, context, final_attempt=final_attempt, prefetcher=_prefetcher.get(), deadline=_decode_deadline.get()
        )
    except RetryLater as exc:
        if exc.delay_s is not None:  # the source host said when: come back then, not after the visibility timeout
            context.backends.queue.delay(record.receipt_handle, exc.delay_s)
            metrics.add_metric("DelayedBySource", MetricUnit.Count, 1)
        raise
    if result.counted:
        metrics.add_metric("ImagesCounted", MetricUnit.Count, 1)
    else:
        metrics.add_metric("DuplicateDeliveries", MetricUnit.Count, 1)
    if result.completed:
        logger.info("last image counted: request complete")


@logger.inject_lambda_context(log_event=False)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    prefetcher = Prefetcher(shared_context(), FETCH_WORKERS)
    tasks = [parse_task(record["body"]) for record in event.get("Records", [])]
    prefetcher.start(task for task in tasks if isinstance(task, ImageTask))
    token = _prefetcher.set(prefetcher)
    deadline = _decode_deadline.set(time.monotonic() + context.get_remaining_time_in_millis() / 1000 - DECODE_RESERVE_S)
    try:
        # A processor per invocation: its state is the batch's, and the local cloud runs invocations in parallel.
        processor = BatchProcessor(event_type=EventType.SQS)
        return process_partial_response(event=event, record_handler=handle_record, processor=processor, context=context)
    finally:
        _prefetcher.reset(token)
        _decode_deadline.reset(deadline)
        prefetcher.close()
