"""S3 ObjectCreated on the uploads bucket's incoming/ prefix -> validate the CSV as a stream and fan it out,
or end the request FAILED with every problem (its webhook goes out through the notify function)."""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote_plus

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.data_classes import S3Event, event_source
from aws_lambda_powertools.utilities.typing import LambdaContext

from ips.intake.service import ingest_upload
from ips.shared.model import RequestStatus
from ips_runtime.observability import observability
from ips_runtime.roots import INGEST as root

logger, metrics, tracer = observability("ingest")


@logger.inject_lambda_context(log_event=False)
@tracer.capture_lambda_handler
@metrics.log_metrics
@event_source(data_class=S3Event)
def lambda_handler(event: S3Event, context: LambdaContext) -> dict[str, Any]:
    intake = root()
    outcomes = []
    for record in event.records:
        key = unquote_plus(record.s3.get_object.key)
        status = ingest_upload(key, intake)
        outcomes.append({"key": key, "status": status.value if status else None})
        if status is RequestStatus.FAILED:
            metrics.add_metric("UploadsRefused", MetricUnit.Count, 1)
        elif status is RequestStatus.PENDING:
            metrics.add_metric("UploadsIngested", MetricUnit.Count, 1)
    logger.info("ingestion finished", extra={"outcomes": outcomes})
    return {"outcomes": outcomes}
