"""DynamoDB stream (filtered to the update that completes or fails a request) -> complete it (output CSV, final
status) and queue its webhook's delivery on the webhook queue (functions/webhook sends it): a receiver, however
slow, never holds a completion, nor another tenant's on the same shard."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import DynamoDBRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from ips.completion.service import complete_request
from ips_runtime.observability import observability
from ips_runtime.roots import NOTIFY as root

logger, metrics, tracer = observability("notify")


@tracer.capture_method
def handle_record(record: DynamoDBRecord) -> None:
    keys = record.dynamodb.keys if record.dynamodb else {}
    request_id = str(keys["pk"])
    logger.set_correlation_id(request_id)
    status = complete_request(request_id, root())
    if status is not None:
        metrics.add_metric("RequestsCompleted", MetricUnit.Count, 1)
        logger.info("request completed", extra={"status": status.value})


@logger.inject_lambda_context(log_event=False)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    # A processor per invocation: its state is the batch's, and the local cloud runs invocations in parallel.
    processor = BatchProcessor(event_type=EventType.DynamoDBStreams)
    return process_partial_response(event=event, record_handler=handle_record, processor=processor, context=context)
