"""The SQS record the queue-fed functions are handed: powertools' model with its body typed as what SQS delivers,
text (the parent's field also admits a model, which only a subclass that declares one is parsed into)."""

from __future__ import annotations

from aws_lambda_powertools.utilities.parser.models import SqsRecordModel


class SqsRecord(SqsRecordModel):
    body: str
