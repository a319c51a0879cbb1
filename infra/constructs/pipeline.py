"""The images queue (with its dead-letter queue) feeding the process function, and the presigned-upload path:
S3 ObjectCreated under the topology's prefix on the uploads bucket -> ingest.

The queue's visibility timeout is at least six times the process function's timeout (AWS's guidance for SQS
event sources); the mapping's concurrency is capped at the function's reserved concurrency, so MongoDB sees no
more connections than that and Lambda never throttles the pollers."""

from __future__ import annotations

from aws_cdk import Acknowledgment, Duration, Stack, Validations
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_destinations as destinations
from aws_cdk import aws_lambda_event_sources as sources
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_s3_notifications as notifications
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from infra.constructs.queues import dead_letter_queue
from infra.permissions import FunctionAccess
from infra.topology import BucketNotification, Function, Queue, QueueSource

VISIBILITY_TIMEOUT_FACTOR = 6


class Pipeline(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, queue: Queue) -> None:
        super().__init__(scope, construct_id)
        self.images_spec = queue
        self.images_dead_letters = dead_letter_queue(self, "ImagesDeadLetters")
        self.images = sqs.Queue(
            self,
            "Images",
            visibility_timeout=Duration.seconds(queue.visibility_timeout_s),
            retention_period=Duration.days(queue.retention_days),
            dead_letter_queue=sqs.DeadLetterQueue(
                queue=self.images_dead_letters, max_receive_count=queue.max_receive_count
            ),
            enforce_ssl=True,
            encryption=sqs.QueueEncryption.SQS_MANAGED,
        )
        self.ingest_failures = dead_letter_queue(self, "IngestFailures")
        Validations.of(self.ingest_failures).acknowledge(
            Acknowledgment(
                id="AwsSolutions-SQS3",
                reason="This queue is itself a dead letter: the ingest function's on-failure destination.",
            )
        )

    def connect_process(self, process: lambda_.Function, source: QueueSource, spec: Function) -> None:
        visibility = self.images_spec.visibility_timeout_s
        if visibility < VISIBILITY_TIMEOUT_FACTOR * spec.timeout_s:
            raise ValueError(
                f"the images queue's visibility timeout ({visibility} s) must be at least "
                f"{VISIBILITY_TIMEOUT_FACTOR}x the {spec.name} function's timeout ({spec.timeout_s} s)"
            )
        process.add_event_source(
            sources.SqsEventSource(
                self.images,
                batch_size=source.batch_size,
                max_batching_window=Duration.seconds(source.max_batching_window_s),
                report_batch_item_failures=True,
                max_concurrency=spec.reserved_concurrency,
            )
        )

    def connect_uploads(self, uploads: s3.Bucket, ingest: lambda_.Function, notification: BucketNotification) -> None:
        """ObjectCreated under the prefix invokes ingest asynchronously; what still fails after Lambda's retries is
        kept (with the event) in the ingest-failures queue, which the reconciler drains by ingesting it again."""
        ingest.configure_async_invoke(
            on_failure=destinations.SqsDestination(self.ingest_failures), retry_attempts=notification.retry_attempts
        )
        uploads.add_event_notification(
            s3.EventType.OBJECT_CREATED,
            notifications.LambdaDestination(ingest),
            s3.NotificationKeyFilter(prefix=notification.prefix),
        )
        self._acknowledge_notifications_handler()

    def _acknowledge_notifications_handler(self) -> None:
        """CDK configures bucket notifications with its own singleton function, created at the stack's root."""
        stack = Stack.of(self)
        handler = next(child for child in stack.node.children if child.node.id.startswith("BucketNotificationsHandler"))
        Validations.of(handler).acknowledge(
            Acknowledgment(
                id="AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
                "AWSLambdaBasicExecutionRole]",
                reason="CDK's bucket-notifications handler (not ours to change) logs with the basic execution role.",
            )
        )

    def grant(self, function: lambda_.Function, access: FunctionAccess) -> None:
        if access.sends_to_images_queue:
            function.add_to_role_policy(
                iam.PolicyStatement(actions=["sqs:SendMessage"], resources=[self.images.queue_arn])
            )
        if access.reads_queue_depths:
            function.add_to_role_policy(
                iam.PolicyStatement(actions=["sqs:GetQueueAttributes"], resources=[self.images.queue_arn])
            )
        if access.drains_dead_letters:
            function.add_to_role_policy(
                iam.PolicyStatement(
                    actions=["sqs:ReceiveMessage", "sqs:DeleteMessage"],
                    resources=[self.images_dead_letters.queue_arn, self.ingest_failures.queue_arn],
                )
            )

    def environment(self) -> dict[str, str]:
        return {"IMAGES_QUEUE_URL": self.images.queue_url}
