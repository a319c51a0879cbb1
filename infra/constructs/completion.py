"""The requests table's stream (infra.constructs.requests_table), filtered to the update that completes or fails a
request, feeding the notify function: bisect on error, and an on-failure queue, so no completion is lost.

The webhook's retries are not the stream's: notify only queues a wake-up, and the webhook function retries through
its queue (ips.completion.service.deliver_webhook). A batch that still fails after the mapping's retries lands,
with its stream position, in the completion-failures queue."""

from __future__ import annotations

from aws_cdk import Acknowledgment, Validations
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_event_sources as sources
from constructs import Construct

from infra.constructs.queues import dead_letter_queue
from infra.topology import StreamSource


class Completion(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, requests: dynamodb.Table) -> None:
        super().__init__(scope, construct_id)
        self.requests = requests
        self.failures = dead_letter_queue(self, "CompletionFailures")
        Validations.of(self.failures).acknowledge(
            Acknowledgment(
                id="AwsSolutions-SQS3",
                reason="This queue is itself a dead letter: the stream mapping's on-failure destination.",
            )
        )

    def connect(self, notify: lambda_.Function, source: StreamSource) -> None:
        """The mapping grants the stream's reads, and dynamodb:ListStreams on * (acknowledged in functions.py)."""
        notify.add_event_source(
            sources.DynamoEventSource(
                self.requests,
                starting_position=lambda_.StartingPosition.TRIM_HORIZON,
                batch_size=source.batch_size,
                filters=[lambda_.FilterCriteria.filter(source.filter_pattern)],
                report_batch_item_failures=True,
                bisect_batch_on_error=True,
                retry_attempts=source.retry_attempts,
                on_failure=sources.SqsDlq(self.failures),
            )
        )
