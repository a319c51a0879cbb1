"""The queues of the stack: work queues that feed a function (images, chunks, webhooks), each with its dead-letter
queue, and queues that hold what failed until someone looks. All encrypted and TLS-only; dead letters are kept
for SQS's maximum of 14 days.

A work queue's visibility timeout is at least six times its function's timeout (AWS's guidance for SQS event
sources, checked at synth), and the mapping's concurrency is capped at the function's reserved concurrency, so
MongoDB sees no more connections than that and Lambda never throttles the pollers."""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_event_sources as sources
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from infra.topology import Function, Queue, QueueSource

DEAD_LETTER_RETENTION = Duration.days(14)
VISIBILITY_TIMEOUT_FACTOR = 6


def dead_letter_queue(scope: Construct, construct_id: str) -> sqs.Queue:
    return sqs.Queue(
        scope,
        construct_id,
        retention_period=DEAD_LETTER_RETENTION,
        enforce_ssl=True,
        encryption=sqs.QueueEncryption.SQS_MANAGED,
    )


def work_queue(scope: Construct, construct_id: str, spec: Queue, dead_letters: sqs.Queue) -> sqs.Queue:
    """The topology's queue `spec`, its messages moved to `dead_letters` after `spec.max_receive_count` receives."""
    return sqs.Queue(
        scope,
        construct_id,
        visibility_timeout=Duration.seconds(spec.visibility_timeout_s),
        retention_period=Duration.days(spec.retention_days),
        dead_letter_queue=sqs.DeadLetterQueue(queue=dead_letters, max_receive_count=spec.max_receive_count),
        enforce_ssl=True,
        encryption=sqs.QueueEncryption.SQS_MANAGED,
    )


def feed(queue: sqs.Queue, spec: Queue, function: lambda_.Function, source: QueueSource, reader: Function) -> None:
    """`queue` (the topology's `spec`) invokes `function` (the topology's `reader`) as `source` says, with partial
    batch responses; refused at synth when the queue would deliver a message again while its invocation runs."""
    if spec.visibility_timeout_s < VISIBILITY_TIMEOUT_FACTOR * reader.timeout_s:
        raise ValueError(
            f"the {spec.name} queue's visibility timeout ({spec.visibility_timeout_s} s) must be at least "
            f"{VISIBILITY_TIMEOUT_FACTOR}x the {reader.name} function's timeout ({reader.timeout_s} s)"
        )
    window = Duration.seconds(source.max_batching_window_s) if source.max_batching_window_s else None
    function.add_event_source(
        sources.SqsEventSource(
            queue,
            batch_size=source.batch_size,
            max_batching_window=window,
            report_batch_item_failures=True,
            max_concurrency=reader.reserved_concurrency,
        )
    )


def allow(function: lambda_.Function, actions: list[str], *queues: sqs.IQueue) -> None:
    """Let `function` call `actions` on those queues, and nothing else."""
    function.add_to_role_policy(iam.PolicyStatement(actions=actions, resources=[queue.queue_arn for queue in queues]))


SEND = ["sqs:SendMessage"]
DEPTH = ["sqs:GetQueueAttributes"]
DRAIN = ["sqs:ReceiveMessage", "sqs:DeleteMessage"]
