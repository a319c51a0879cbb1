"""Expand one chunk of CSV rows (a message of the chunks queue) into product records and image messages, resumably.

A chunk holds at most `IntakePolicy.chunk_images` images, so its expansion fits one invocation. Its image messages
go out in groups of SEND_GROUP; after each group the chunk's progress (how many were sent) is recorded,
conditionally and only forwards, so a redelivered chunk (after a timeout, a crash, an overlapping delivery) goes
on from there instead of sending it all again: at most the group in flight is sent twice, and image messages are
idempotent anyway. When the invocation's time runs low it stops between two groups and puts the chunk back on the
chunks queue, and the next delivery goes on from the recorded progress."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from ips.expansion.ports import ChunkPorts
from ips.shared.csv_input import ProductRow, read_chunk
from ips.shared.model import ChunkTask, ImageTask
from ips.shared.options import DEFAULT_OPTIONS, ImageOptions

logger = logging.getLogger(__name__)
# Image messages between two progress records (10 SendMessageBatch calls): the most a crash can make us resend.
SEND_GROUP = 100


@dataclass(frozen=True)
class Expansion:
    resumed_at: int  # image messages an earlier delivery had sent already
    sent: int  # image messages this delivery sent
    remaining: int  # left to the chunk's next delivery (re-queued); 0 when the chunk is done

    @property
    def requeued(self) -> bool:
        return self.remaining > 0


def expand_chunk(
    task: ChunkTask, ports: ChunkPorts, *, time_left: Callable[[], float] = lambda: float("inf")
) -> Expansion:
    """The chunk's rows become product records, then image messages, from where earlier deliveries stopped.
    `time_left` (seconds, already less what the caller keeps back) stops it between groups once it reaches 0.
    A failure raises: the delivery is retried, and a chunk that fails every delivery is dead-lettered, where the
    reconciler decides (put back while its request has time, else the request ends FAILED): a store outage on
    the last delivery no longer ends a request whose work could still be done."""
    chunk = task.chunk
    done = ports.progress.sent(task.request_id, chunk.first_row)
    if done >= chunk.images:
        return Expansion(resumed_at=done, sent=0, remaining=0)  # a duplicate delivery of a finished chunk
    data = ports.uploads.get_range(task.key, chunk.start, chunk.end)
    products = read_chunk(data, chunk, task.columns, ports.limits)
    if done == 0:
        # Before any image message, so every image's slot exists when it is recorded. Idempotent (keyed by row).
        ports.catalog.add_products(task.request_id, products)
    tasks = image_tasks(task.request_id, products, task.salt, tenant=task.tenant, options=task.options)
    resumed_at = done
    while done < len(tasks):
        if done > resumed_at and time_left() <= 0:
            # Out of time, with progress made (so a chunk can never loop without moving): the rest goes back on
            # the queue as a fresh message, and this delivery ends well.
            ports.chunks.send([task.to_message()])
            logger.info(
                "chunk stopped for time; re-queued",
                extra={"request_id": task.request_id, "first_row": chunk.first_row, "sent": done},
            )
            return Expansion(resumed_at, done - resumed_at, len(tasks) - done)
        group = tasks[done : done + SEND_GROUP]
        ports.queue.send([image.to_message() for image in group])
        done += len(group)
        ports.progress.advance(task.request_id, chunk.first_row, done)
    return Expansion(resumed_at, done - resumed_at, 0)


def image_tasks(
    request_id: str,
    products: Iterable[ProductRow],
    salt: str,
    *,
    tenant: str = "",
    options: ImageOptions = DEFAULT_OPTIONS,
) -> list[ImageTask]:
    return [
        ImageTask(request_id, product.row, index, url, salt, tenant, options)
        for product in products
        for index, url in enumerate(product.image_urls)
    ]
