"""SQS webhook queue (one wake-up per invocation) -> at most one signed POST of an ended request's webhook, within
a short timeout, and the next wake-up on the queue when it is not done (ips.completion.service.deliver_webhook): the
only place a webhook is signed and sent. A message that is not a wake-up (another queue's task included) is malformed
here: logged, counted and removed."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.typing import LambdaContext

from ips.completion.service import Step, deliver_webhook
from ips.shared.messages import MalformedMessage, parse_as
from ips.shared.model import WebhookTask
from ips_runtime.observability import observability
from ips_runtime.roots import WEBHOOK as root
from ips_runtime.sqs import SqsRecord, each_record

logger, metrics, tracer = observability("webhook")
METRICS = {
    Step.DELIVERED: "WebhooksDelivered",
    Step.RETRY: "WebhookAttemptsFailed",
    Step.GAVE_UP: "WebhooksGivenUp",
}


@tracer.capture_method
def handle_record(record: SqsRecord) -> None:
    try:
        task = parse_as(record.body, WebhookTask)
    except MalformedMessage as exc:
        logger.error("malformed message removed", extra={"message_id": record.messageId, "problem": str(exc)})
        metrics.add_metric("MalformedMessages", MetricUnit.Count, 1)
        return
    logger.set_correlation_id(task.request_id)
    step = deliver_webhook(task, root())
    if step in METRICS:
        metrics.add_metric(METRICS[step], MetricUnit.Count, 1)


handle_batch = each_record(handle_record)


@logger.inject_lambda_context(log_event=False)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    return handle_batch(event, context)
