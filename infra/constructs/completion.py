"""The requests table (the exact counters) and its stream, filtered to the update that completes a request,
feeding the notify function: bisect on error, and an on-failure queue, so no completion is lost.

The webhook's own retries with backoff happen inside the notify function (ips.webhook); a batch that still fails
after the mapping's retries lands, with its stream position, in the completion-failures queue."""

from __future__ import annotations

from aws_cdk import Acknowledgment, RemovalPolicy, Validations
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_event_sources as sources
from constructs import Construct

from infra.constructs.queues import dead_letter_queue
from infra.permissions import FunctionAccess
from infra.topology import StreamSource
from ips.adapters.dynamodb import TTL_ATTRIBUTE


class Completion(Construct):
    def __init__(self, scope: Construct, construct_id: str) -> None:
        super().__init__(scope, construct_id)
        self.requests = dynamodb.Table(
            self,
            "Requests",
            partition_key=dynamodb.Attribute(name="pk", type=dynamodb.AttributeType.STRING),
            sort_key=dynamodb.Attribute(name="sk", type=dynamodb.AttributeType.STRING),
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
            stream=dynamodb.StreamViewType.NEW_AND_OLD_IMAGES,
            time_to_live_attribute=TTL_ATTRIBUTE,
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True
            ),
            deletion_protection=True,
            removal_policy=RemovalPolicy.RETAIN,
        )
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

    def grant(self, function: lambda_.Function, access: FunctionAccess) -> None:
        if access.table_actions:
            self.requests.grant(function, *access.table_actions)

    def environment(self) -> dict[str, str]:
        return {"REQUESTS_TABLE": self.requests.table_name}
