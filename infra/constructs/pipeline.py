"""The images queue (with its dead-letter queue) feeding the process function, and the presigned-upload path:
S3 ObjectCreated under the topology's prefix on the uploads bucket -> ingest, its failures kept in a queue."""

from __future__ import annotations

from aws_cdk import Acknowledgment, Stack, Validations
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_destinations as destinations
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_s3_notifications as notifications
from constructs import Construct

from infra.constructs.queues import DEPTH, DRAIN, SEND, allow, dead_letter_queue, feed, work_queue
from infra.permissions import FunctionAccess
from infra.topology import BucketNotification, Function, Queue, QueueSource


class Pipeline(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, queue: Queue) -> None:
        super().__init__(scope, construct_id)
        self.images_spec = queue
        self.images_dead_letters = dead_letter_queue(self, "ImagesDeadLetters")
        self.images = work_queue(self, "Images", queue, self.images_dead_letters)
        self.ingest_failures = dead_letter_queue(self, "IngestFailures")
        Validations.of(self.ingest_failures).acknowledge(
            Acknowledgment(
                id="AwsSolutions-SQS3",
                reason="This queue is itself a dead letter: the ingest function's on-failure destination.",
            )
        )

    def connect_process(self, process: lambda_.Function, source: QueueSource, spec: Function) -> None:
        feed(self.images, self.images_spec, process, source, spec)

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
            allow(function, SEND, self.images)
        if access.reads_queue_depths:
            allow(function, DEPTH, self.images)
        if access.drains_dead_letters:
            allow(function, DRAIN, self.images_dead_letters, self.ingest_failures)

    def environment(self) -> dict[str, str]:
        return {"IMAGES_QUEUE_URL": self.images.queue_url}
