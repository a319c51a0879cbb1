"""The webhook queue (with its dead-letter queue) feeding the webhook function one wake-up per invocation: notify
queues a request's first wake-up, the webhook function makes each attempt (one POST within a short timeout) and
queues the next one with a delay, the reconciler wakes a delivery whose wake-up was lost and puts dead wake-ups
back. So no receiver, however slow, holds a completion, and each tenant's attempts are capped where they are made.

As for the other queues, the visibility timeout is at least six times the function's timeout and the mapping's
concurrency is capped at the function's reserved concurrency (its claims share MongoDB's connections)."""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_event_sources as sources
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from infra.constructs.pipeline import VISIBILITY_TIMEOUT_FACTOR
from infra.constructs.queues import dead_letter_queue
from infra.permissions import FunctionAccess
from infra.topology import Function, Queue, QueueSource


class Webhooks(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, queue: Queue) -> None:
        super().__init__(scope, construct_id)
        self.spec = queue
        self.dead_letters = dead_letter_queue(self, "DeadLetters")
        self.queue = sqs.Queue(
            self,
            "Queue",
            visibility_timeout=Duration.seconds(queue.visibility_timeout_s),
            retention_period=Duration.days(queue.retention_days),
            dead_letter_queue=sqs.DeadLetterQueue(queue=self.dead_letters, max_receive_count=queue.max_receive_count),
            enforce_ssl=True,
            encryption=sqs.QueueEncryption.SQS_MANAGED,
        )

    def connect_webhook(self, webhook: lambda_.Function, source: QueueSource, spec: Function) -> None:
        visibility = self.spec.visibility_timeout_s
        if visibility < VISIBILITY_TIMEOUT_FACTOR * spec.timeout_s:
            raise ValueError(
                f"the webhook queue's visibility timeout ({visibility} s) must be at least "
                f"{VISIBILITY_TIMEOUT_FACTOR}x the {spec.name} function's timeout ({spec.timeout_s} s)"
            )
        webhook.add_event_source(
            sources.SqsEventSource(
                self.queue,
                batch_size=source.batch_size,
                max_batching_window=Duration.seconds(source.max_batching_window_s)
                if source.max_batching_window_s
                else None,
                report_batch_item_failures=True,
                max_concurrency=spec.reserved_concurrency,
            )
        )

    def grant(self, function: lambda_.Function, access: FunctionAccess) -> None:
        if access.sends_to_webhooks_queue:
            function.add_to_role_policy(
                iam.PolicyStatement(actions=["sqs:SendMessage"], resources=[self.queue.queue_arn])
            )
        if access.drains_dead_letters:
            function.add_to_role_policy(
                iam.PolicyStatement(
                    actions=["sqs:ReceiveMessage", "sqs:DeleteMessage"], resources=[self.dead_letters.queue_arn]
                )
            )

    def environment(self) -> dict[str, str]:
        return {"WEBHOOKS_QUEUE_URL": self.queue.queue_url}
