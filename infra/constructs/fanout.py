"""The fan-out's own queue: chunks of CSV rows (with their dead-letter queue) feeding the expand function one
message per invocation, so a chunk never waits behind another, nor image work behind a chunk."""

from __future__ import annotations

from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from infra.constructs.queues import DEPTH, DRAIN, SEND, allow, dead_letter_queue, feed, work_queue
from infra.permissions import FunctionAccess
from infra.topology import Function, Queue, QueueSource


class Fanout(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, queue: Queue) -> None:
        super().__init__(scope, construct_id)
        self.spec = queue
        self.dead_letters = dead_letter_queue(self, "ChunksDeadLetters")
        self.chunks = work_queue(self, "Chunks", queue, self.dead_letters)

    def connect_expand(self, expand: lambda_.Function, source: QueueSource, spec: Function) -> None:
        feed(self.chunks, self.spec, expand, source, spec)

    def grant(self, function: lambda_.Function, access: FunctionAccess) -> None:
        if access.sends_to_chunks_queue:
            allow(function, SEND, self.chunks)
        if access.reads_queue_depths:
            allow(function, DEPTH, self.chunks)
        if access.drains_dead_letters:
            allow(function, DRAIN, self.dead_letters)

    def environment(self) -> dict[str, str]:
        return {"CHUNKS_QUEUE_URL": self.chunks.queue_url}
