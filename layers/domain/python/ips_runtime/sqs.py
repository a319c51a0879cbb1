"""The SQS record the queue-fed functions are handed: powertools' model with its body typed as what SQS delivers,
text (the parent's field also admits a model, which only a subclass that declares one is parsed into); and a batch
of them handled record by record, each reported on its own."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.parser.models import SqsRecordModel
from aws_lambda_powertools.utilities.typing import LambdaContext


class SqsRecord(SqsRecordModel):
    body: str


def each_record(
    record_handler: Callable[..., None],
) -> Callable[[dict[str, Any], LambdaContext], PartialItemFailureResponse]:
    """An SQS event through powertools' BatchProcessor: a record that raises is retried alone (a partial batch
    failure), the others are done. A processor per invocation: its state is the batch's, and the local cloud runs
    invocations in parallel."""

    def handle(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
        processor = BatchProcessor(event_type=EventType.SQS, model=SqsRecord)
        return process_partial_response(
            event=event, record_handler=record_handler, processor=processor, context=context
        )

    return handle
