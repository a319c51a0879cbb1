"""The GIVENs the use-case tests share: a products CSV, a request accepted and expanded over the fakes, its image
messages as tasks, and a store that refuses calls (an outage, or one method failing)."""

from __future__ import annotations

from typing import Any

from ips.expansion.service import expand_chunk
from ips.intake.fakes import refuse_nothing
from ips.intake.service import accept_csv
from ips.reconcile.fakes import ReconcileFakes
from ips.shared.messages import parse_task
from ips.shared.model import ChunkTask, ImageTask

HOOK = "http://hooks.invalid/done"
TENANT = "tenant-a"


def products_csv(*rows: list[str]) -> bytes:
    """A products CSV: one row per product, each with its image URLs."""
    lines = ["S. No.,Product Name,Input Image Urls"]
    for number, urls in enumerate(rows, start=1):
        lines.append(f'{number},Product {number},"{",".join(urls)}"')
    return ("\n".join(lines) + "\n").encode()


def urls(*names: str) -> list[str]:
    return [f"http://images.invalid/{name}" for name in names]


def accepted(world: ReconcileFakes, csv: bytes, webhook: str | None = HOOK, tenant: str = TENANT) -> str:
    """Accepted on the direct route: its chunks are on the chunks queue, nothing expanded yet."""
    return accept_csv(csv, tenant, webhook, world.intake(), check_url=refuse_nothing).request_id


def expanded(world: ReconcileFakes, csv: bytes, webhook: str | None = HOOK, tenant: str = TENANT) -> str:
    """Accepted and every chunk expanded: its products recorded, its image messages on the images queue."""
    request_id = accepted(world, csv, webhook, tenant)
    while world.chunks_queue.sent:
        chunk = parse_task(world.chunks_queue.sent.pop(0))
        assert isinstance(chunk, ChunkTask)
        expand_chunk(chunk, world.chunks())
    return request_id


def image_tasks(bodies: list[str]) -> list[ImageTask]:
    tasks = [parse_task(body) for body in bodies]
    assert all(isinstance(task, ImageTask) for task in tasks)
    return tasks  # type: ignore[return-value]


class Refusing:
    """A store whose calls raise while `down` (all of them, or only those named in `methods`): an outage."""

    def __init__(self, real: Any, *methods: str) -> None:
        self.real, self.methods, self.down = real, set(methods), True

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self.real, name)
        if not self.down or not callable(attribute) or (self.methods and name not in self.methods):
            return attribute

        def refused(*args: Any, **kwargs: Any) -> Any:
            raise ConnectionError("the store is down")

        return refused
