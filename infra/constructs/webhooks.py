"""The webhook queue (with its dead-letter queue) feeding the webhook function one wake-up per invocation: notify
queues a request's first wake-up, the webhook function makes each attempt (one POST within a short timeout) and
queues the next one with a delay, the reconciler wakes a delivery whose wake-up was lost and puts dead wake-ups
back. So no receiver, however slow, holds a completion, and each tenant's attempts are capped where they are made."""

from __future__ import annotations

from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from infra.constructs.queues import DRAIN, SEND, allow, dead_letter_queue, feed, work_queue
from infra.permissions import FunctionAccess
from infra.topology import Function, Queue, QueueSource


class Webhooks(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, queue: Queue) -> None:
        super().__init__(scope, construct_id)
        self.spec = queue
        self.dead_letters = dead_letter_queue(self, "DeadLetters")
        self.queue = work_queue(self, "Queue", queue, self.dead_letters)

    def connect_webhook(self, webhook: lambda_.Function, source: QueueSource, spec: Function) -> None:
        feed(self.queue, self.spec, webhook, source, spec)

    def grant(self, function: lambda_.Function, access: FunctionAccess) -> None:
        if access.sends_to_webhooks_queue:
            allow(function, SEND, self.queue)
        if access.drains_dead_letters:
            allow(function, DRAIN, self.dead_letters)

    def environment(self) -> dict[str, str]:
        return {"WEBHOOKS_QUEUE_URL": self.queue.queue_url}
