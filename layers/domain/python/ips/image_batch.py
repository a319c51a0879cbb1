"""A batch of images as a small bounded pipeline, so that one image's I/O overlaps the next one's compression.

Downloads all start at once (`Prefetcher`). Compressions run one after another in record order on one lane
(`prepare_image`: in Lambda an invocation has about one vCPU, so two at once would only share it). As each
image is compressed, its finish (`finish_image`: the S3 put, the reuse record, the MongoDB record, the count)
goes to a small pool, and the lane goes on to the next image. At most `in_flight` images are compressed and not
yet finished, which bounds the outputs held in memory.

Nothing about what is reported changes: each record's handler waits for its own image (`result`) and returns
what it returned or raises what it raised (RetryLater included), so the batch's partial failures are reported
per record as before; the finish is the same code as the sequential path's, so counting stays exactly once.

One thing is gathered for the batch: the reuse entries of reused outputs (each now naming its new copy) are
written together when the batch closes, one MongoDB write instead of one per image (a catalogue sent again is
all reused images). Like every reuse record they are best effort; only a later request reads them."""

from __future__ import annotations

import threading
from collections.abc import Iterable
from concurrent.futures import Future
from dataclasses import dataclass

from ips.model import ImageTask
from ips.ports import CountResult, ReuseEntry
from ips.processing import Prefetcher, Prepared, ProcessingPorts, finish_image, prepare_image, process_image
from ips.reuse import remember_entries
from ips.thread_pools import Jobs, pool

# Images compressed and not yet finished. The finish is I/O (tens of ms against the services), so a few at
# once keep small images, whose compression takes about a millisecond, from waiting on one another's writes.
IN_FLIGHT = 4


@dataclass(frozen=True)
class BatchImage:
    """One record's image: `key` names its record (the SQS message ID), `final_attempt` its delivery's rules."""

    key: str
    task: ImageTask
    final_attempt: bool


class ImageBatch:
    """Runs a batch's images through prepare -> finish with the stages overlapped (see the module docstring)."""

    def __init__(
        self,
        ports: ProcessingPorts,
        prefetcher: Prefetcher,
        *,
        deadline: float | None = None,
        in_flight: int = IN_FLIGHT,
    ) -> None:
        self._ports, self._prefetcher, self._deadline = ports, prefetcher, deadline
        # The process's threads (ips.thread_pools): one lane, and finishers enough for `in_flight` at once.
        self._lane = Jobs(pool("compress", 1))
        self._finishers = Jobs(pool("finish", in_flight))
        self._slots = threading.BoundedSemaphore(max(1, in_flight))
        self._results: dict[str, Future[CountResult]] = {}
        self._reuse_entries: list[ReuseEntry] = []  # appended by the finishers, written by close()

    def start(self, images: Iterable[BatchImage]) -> None:
        """Queue the images, in order; each starts compressing when the lane reaches it."""
        tasks: set[ImageTask] = set()
        for image in images:
            # The same image twice in a batch (a duplicate delivery): the second is processed by its own record's
            # handler, after the first's finish, never at the same time as it.
            if image.key in self._results or image.task in tasks:
                continue
            tasks.add(image.task)
            result: Future[CountResult] = Future()
            self._results[image.key] = result
            self._lane.submit(self._prepare, image, result)

    def result(self, image: BatchImage) -> CountResult:
        """This record's image's count, once its finish is done; raises what processing it raised. An image that
        was not started (or was started under other rules) is processed here, sequentially."""
        result = self._results.pop(image.key, None)
        if result is None:
            return process_image(
                image.task,
                self._ports,
                final_attempt=image.final_attempt,
                prefetcher=self._prefetcher,
                deadline=self._deadline,
            )
        return result.result()

    def close(self) -> None:
        """Wait for what is running (a finish started is never abandoned half-way) and drop what has not; then
        write the reused outputs' reuse entries."""
        for result in self._results.values():
            result.cancel()
        self._lane.close()  # before the finishers: the lane is what submits finishes
        self._finishers.close()
        entries, self._reuse_entries = self._reuse_entries, []
        remember_entries(entries, self._ports.reuse)

    def _prepare(self, image: BatchImage, result: Future[CountResult]) -> None:
        if not result.set_running_or_notify_cancel():
            return  # its record was never handled (the batch ended first): SQS delivers it again
        self._slots.acquire()
        try:
            prepared = prepare_image(
                image.task,
                self._ports,
                self._prefetcher.fetch,
                final_attempt=image.final_attempt,
                deadline=self._deadline,
            )
        except BaseException as exc:
            self._slots.release()
            result.set_exception(exc)
            return
        self._finishers.submit(self._finish, image, prepared, result)

    def _finish(self, image: BatchImage, prepared: Prepared, result: Future[CountResult]) -> None:
        try:
            result.set_result(finish_image(image.task, self._ports, prepared, self._reuse_entries.append))
        except BaseException as exc:
            result.set_exception(exc)
        finally:
            self._slots.release()
