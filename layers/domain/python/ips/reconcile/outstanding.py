"""What a stalled request still owes, by the queue that should hold it (the reconciler's re-queue rule reads it):
its file re-planned (chunks are cut the same way every time; the latest plans are kept between rounds), each
chunk's images in the order its expansion sends them, against the chunk's recorded progress."""

from __future__ import annotations

import bisect
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from ips.intake.policy import IntakePolicy
from ips.shared.csv_input import Chunk, Columns, CsvPlan, byte_lines, plan_csv
from ips.shared.model import ChunkTask, ImageOutcome, ImageTask
from ips.shared.ports import ChunkProgress, ProductRecord, RequestRecord, UploadStore


def product_images(record: RequestRecord, product: ProductRecord) -> Iterator[tuple[ImageTask, ImageOutcome | None]]:
    """A stored product's images as tasks, each with its outcome (None while pending)."""
    for index, outcome in enumerate(product.images):
        # The request's stored salt, tenant and options: a re-queued image goes to the key it always had.
        url, salt = product.input_urls[index], record.asset_salt
        yield ImageTask(record.request_id, product.row, index, url, salt, record.tenant, record.options), outcome


@dataclass
class Outstanding:
    """A stalled request's work not done, by the queue that should hold it."""

    images: list[ImageTask]  # pending images whose messages were sent: the images queue should hold them
    chunks: list[ChunkTask]  # chunks not fully expanded: the chunks queue should hold them (resumed if re-sent)


def outstanding(
    record: RequestRecord,
    products: list[ProductRecord],
    pending: list[ImageTask],
    uploads: UploadStore,
    progress: ChunkProgress,
    intake: IntakePolicy,
) -> Outstanding:
    """Which of the pending images were sent, and which chunks are not done: the file re-planned (its chunks are
    cut the same way every time), each chunk's images in the order its expansion sends them, against the
    chunk's recorded progress. Only chunks with work left are looked up."""
    if not record.input_key:
        return Outstanding(pending, [])  # no file to re-plan: every pending image counts as sent
    plan = _PLANS.get(
        (record.input_key, intake.chunk_images),
        lambda key: plan_csv(byte_lines(uploads.stream(key)), intake.presigned_csv_limits, intake.chunk_images),
    )
    rows = [product.row for product in products]
    work = Outstanding([], [])
    for number, chunk in enumerate(plan.chunks):
        first = bisect.bisect_left(rows, chunk.first_row)
        last = bisect.bisect_left(rows, plan.chunks[number + 1].first_row) if number + 1 < len(plan.chunks) else None
        chunk_products = products[first:last]
        if len(chunk_products) < chunk.products:
            work.chunks.append(_chunk_task(record, plan.columns, chunk))  # rows that never became products
            continue
        images = [pair for product in chunk_products for pair in product_images(record, product)]
        if all(outcome is not None for _, outcome in images):
            continue  # every image of the chunk is terminal: nothing of it is needed any more
        sent = progress.sent(record.request_id, chunk.first_row)
        work.images.extend(task for task, outcome in images[:sent] if outcome is None)
        if sent < chunk.images:
            work.chunks.append(_chunk_task(record, plan.columns, chunk))
    return work


class _Plans:
    """Files re-planned by earlier rounds of this execution environment: a request waiting behind a backlog is
    looked at every round, and planning a 100 MB file costs about 17 s of CPU. A stored CSV never changes (the
    direct upload's is written once, a presigned upload's pinned copy is named by its ETag), and a plan holds
    only its chunks' boundaries, so the latest few are kept."""

    def __init__(self, size: int = 32) -> None:
        self._plans: OrderedDict[tuple[str, int], CsvPlan] = OrderedDict()
        self._size = size
        self._lock = threading.Lock()

    def get(self, key: tuple[str, int], plan: Callable[[str], CsvPlan]) -> CsvPlan:
        with self._lock:
            if key in self._plans:
                self._plans.move_to_end(key)
                return self._plans[key]
        planned = plan(key[0])
        with self._lock:
            self._plans[key] = planned
            while len(self._plans) > self._size:
                self._plans.popitem(last=False)
        return planned


_PLANS = _Plans()


def _chunk_task(record: RequestRecord, columns: Columns, chunk: Chunk) -> ChunkTask:
    assert record.input_key is not None
    return ChunkTask(
        record.request_id, record.input_key, columns, chunk, record.asset_salt, record.tenant, record.options
    )
