"""Queues that hold what failed until someone looks: encrypted, TLS-only, kept for SQS's maximum of 14 days."""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_sqs as sqs
from constructs import Construct

DEAD_LETTER_RETENTION = Duration.days(14)


def dead_letter_queue(scope: Construct, construct_id: str) -> sqs.Queue:
    return sqs.Queue(
        scope,
        construct_id,
        retention_period=DEAD_LETTER_RETENTION,
        enforce_ssl=True,
        encryption=sqs.QueueEncryption.SQS_MANAGED,
    )
