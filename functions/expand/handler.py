"""SQS chunks queue (one message per invocation) -> expand a chunk of CSV rows into product records and image
messages, going on from where an earlier delivery stopped (ips.expansion.service). A message that is not a chunk
(another queue's task included: it is malformed here), or is for a request that does not exist, is logged with its
message ID, counted, and removed. A chunk that fails every delivery goes to the dead-letter queue, where the reconciler
puts it back while its request has time (an outage pauses the work), or ends the request."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.typing import LambdaContext

from ips.expansion.service import expand_chunk
from ips.shared.messages import MalformedMessage, parse_as
from ips.shared.model import ChunkTask
from ips_runtime.observability import observability
from ips_runtime.roots import EXPAND as root
from ips_runtime.sqs import SqsRecord, each_record

logger, metrics, tracer = observability("expand")
# Kept back from the invocation's remaining time: the group in flight (10 SendMessageBatch calls and a progress
# write) and the re-queue of the rest must finish before the timeout.
STOP_RESERVE_S = 15.0


def _removed(record: SqsRecord, metric: str, message: str, **extra: Any) -> None:
    logger.error(message, extra={"message_id": record.messageId, **extra})
    metrics.add_metric(metric, MetricUnit.Count, 1)


@tracer.capture_method
def handle_record(record: SqsRecord, lambda_context: LambdaContext) -> None:
    try:
        task = parse_as(record.body, ChunkTask)
    except MalformedMessage as exc:
        _removed(record, "MalformedMessages", "malformed message removed", problem=str(exc), body=record.body[:200])
        return
    logger.set_correlation_id(task.request_id)
    ports = root()
    if ports.catalog.get(task.request_id) is None:
        _removed(record, "UnknownRequestMessages", "chunk for an unknown request removed")
        return
    expansion = expand_chunk(
        task, ports, time_left=lambda: lambda_context.get_remaining_time_in_millis() / 1000 - STOP_RESERVE_S
    )
    metrics.add_metric("ImagesQueued", MetricUnit.Count, expansion.sent)
    if expansion.resumed_at:
        metrics.add_metric("ChunksResumed", MetricUnit.Count, 1)
    if expansion.requeued:
        metrics.add_metric("ChunksRequeued", MetricUnit.Count, 1)
    logger.info(
        "chunk expanded",
        extra={
            "first_row": task.chunk.first_row,
            "resumed_at": expansion.resumed_at,
            "sent": expansion.sent,
            "remaining": expansion.remaining,
        },
    )


handle_batch = each_record(handle_record)


@logger.inject_lambda_context(log_event=False)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    return handle_batch(event, context)
