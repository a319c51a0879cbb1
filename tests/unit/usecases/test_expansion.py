"""Expansion's rules over the fakes (ExpansionFakes), GIVEN/WHEN/THEN, beside those tests/unit/test_expansion.py
holds (groups and progress, a redelivery resuming, a duplicate of a finished chunk, out of time re-queued, a chunk
failing every delivery): its products are recorded before any of its image messages is sent, and each image
message carries its request's salt, tenant and options."""

from __future__ import annotations

import pytest

from ips.expansion.fakes import ExpansionFakes
from ips.expansion.service import expand_chunk
from ips.intake.fakes import IntakeFakes, refuse_nothing
from ips.intake.service import accept_csv
from ips.shared.messages import parse_task
from ips.shared.model import ChunkTask
from ips.shared.options import ImageOptions, OutputFormat
from tests.unit.usecases.given import Refusing, image_tasks, products_csv, urls


class World(IntakeFakes, ExpansionFakes):
    """A request accepted (intake), then its chunk expanded."""


def a_chunk(world: World, options: ImageOptions | None = None) -> ChunkTask:
    csv = products_csv(urls("a.jpg", "b.jpg"), urls("c.jpg"))
    extra = {"options": options} if options else {}
    accept_csv(csv, "tenant-a", None, world.intake(), check_url=refuse_nothing, **extra)
    task = parse_task(world.chunks_queue.sent.pop())
    assert isinstance(task, ChunkTask)
    return task


def test_no_image_message_is_sent_before_the_chunks_products_are_recorded() -> None:
    # given: a chunk, and the catalog refusing to add products
    world = World()
    task = a_chunk(world)
    catalog = Refusing(world.catalog, "add_products")
    world.catalog = catalog  # type: ignore[assignment]
    # when
    with pytest.raises(ConnectionError):
        expand_chunk(task, world.chunks())
    # then: nothing sent, no progress recorded: the redelivery starts from the beginning
    assert world.queue.sent == [] and world.chunk_progress.sent(task.request_id, task.chunk.first_row) == 0
    catalog.down = False
    assert expand_chunk(task, world.chunks()).sent == 3


def test_each_image_message_carries_its_requests_salt_tenant_and_options() -> None:
    # given: a request asking for WebP outputs
    world = World()
    options = ImageOptions(format=OutputFormat.WEBP, quality=70)
    task = a_chunk(world, options)
    # when
    expand_chunk(task, world.chunks())
    # then: every image of every row, in row order, with the request's salt, tenant and options
    record = world.catalog.get(task.request_id)
    assert record is not None
    images = image_tasks(world.queue.sent)
    assert [(image.row, image.index) for image in images] == [(2, 0), (2, 1), (3, 0)]
    assert {(image.salt, image.tenant, image.options) for image in images} == {(record.asset_salt, "tenant-a", options)}
