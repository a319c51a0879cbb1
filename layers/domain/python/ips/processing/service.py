"""A batch of the images queue's messages, processed as one unit of I/O: `run_batch`.

Each record is parsed once (a malformed one, which is anything but an image task, or one for a request that does
not exist is removed alone)
and its request looked up once (a container keeps the requests it has seen: `KnownRequests`). The same image
delivered twice in the batch is processed once. Then:
- the downloads all start at once (`Prefetcher`; the reuse index asked once, by URL, for the batch);
- the compressions run one after another in record order (in Lambda an invocation has about one vCPU, so two
  at once would only share it); the reuse index is asked by content for all the downloads finished by then
  (`ContentMatches`), not once per image;
- each compressed output's S3 put starts at once, beside the next compression (at most STORE_IN_FLIGHT outputs
  held, waiting for their puts);
- the outcomes are settled together (`ips.processing.settle`: one catalog write, one ledger call), and the reuse entries
  of the batch's outputs written in one write (best effort).

What each record is told is its own: its count, or what failed it (RetryLater, a store that failed, the settle
that failed), so the handler reports partial batch failures per record, and a redelivery does only what is left
(the catalog keeps the first terminal state, the ledger counts each image once)."""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Collection, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from enum import StrEnum

from ips.processing.image import Prefetcher, Prepared, prepare_image, store_output
from ips.processing.ports import ProcessingPorts, ReuseEntry
from ips.processing.reuse import ContentMatches, remember_entries
from ips.processing.settle import DUPLICATE, settle
from ips.processing.thread_pools import Jobs, pool
from ips.shared.messages import MalformedMessage, parse_as
from ips.shared.model import ImageOutcome, ImageTask
from ips.shared.ports import Catalog, CountResult

logger = logging.getLogger(__name__)
# Compressed outputs waiting for their S3 puts, at most: bounds the outputs a batch holds in memory, and a few
# puts at once keep small images (compressed in about a millisecond) from waiting on one another's.
STORE_IN_FLIGHT = 4
Stored = tuple[ImageOutcome, ReuseEntry | None]  # a stored image's outcome, and its reuse entry to write


class Removed(StrEnum):
    """Why a record was removed without being processed (retrying cannot mend it)."""

    MALFORMED = "MalformedMessages"  # not an image task (a chunk or a wake-up included: they have queues of their own)
    UNKNOWN_REQUEST = "UnknownRequestMessages"


@dataclass(frozen=True)
class Delivery:
    """One record of the batch: `key` names it (the SQS message ID)."""

    key: str
    body: str
    receive_count: int


@dataclass(frozen=True)
class Handled:
    """What became of one record: counted (`count`), failed to be retried (`error`), or removed (`removed`)."""

    task: ImageTask | None = None
    count: CountResult | None = None
    error: Exception | None = None
    removed: Removed | None = None
    problem: str = ""  # what is wrong with a malformed body


class KnownRequests:
    """The requests a container has seen, so that a batch looks up only those it has not: a request's existence
    and identity never change once it has image messages. Only found requests are kept (bounded, oldest out)."""

    def __init__(self, catalog: Catalog, size: int = 1024) -> None:
        self._catalog, self._size = catalog, size
        self._known: OrderedDict[str, bool] = OrderedDict()
        self._lock = threading.Lock()

    def look_up(self, request_ids: Collection[str]) -> dict[str, bool | Exception]:
        """Whether each request exists, or the exception its lookup raised (its records are retried)."""
        found: dict[str, bool | Exception] = {}
        for request_id in request_ids:
            with self._lock:
                if request_id in self._known:
                    self._known.move_to_end(request_id)
                    found[request_id] = True
                    continue
            try:
                found[request_id] = self._catalog.get(request_id) is not None
            except Exception as exc:
                found[request_id] = exc
                continue
            if found[request_id]:
                with self._lock:
                    self._known[request_id] = True
                    while len(self._known) > self._size:
                        self._known.popitem(last=False)
        return found


def run_batch(
    deliveries: Sequence[Delivery],
    ports: ProcessingPorts,
    requests: KnownRequests,
    *,
    fetch_budget: Callable[[], float] | None = None,
    decode_deadline: float | None = None,
) -> dict[str, Handled]:
    """Process the batch (see the module docstring); what became of each record, by its key. `fetch_budget`
    gives each download what the invocation has left (seconds); `decode_deadline` (a `time.monotonic()`
    instant) is when decoding must have finished for the invocation to end in time."""
    handled: dict[str, Handled] = {}
    parsed: dict[str, ImageTask] = {}
    for delivery in deliveries:
        try:
            parsed[delivery.key] = parse_as(delivery.body, ImageTask)
        except MalformedMessage as exc:
            handled[delivery.key] = Handled(removed=Removed.MALFORMED, problem=str(exc))
    known = requests.look_up({task.request_id for task in parsed.values()})
    images: dict[ImageTask, list[Delivery]] = {}  # in record order; the same image twice is one entry
    for delivery in deliveries:
        if (task := parsed.get(delivery.key)) is None:
            continue
        exists = known[task.request_id]
        if isinstance(exists, Exception):
            handled[delivery.key] = Handled(task, error=exists)
        elif not exists:
            handled[delivery.key] = Handled(task, removed=Removed.UNKNOWN_REQUEST)
        else:
            images.setdefault(task, []).append(delivery)
    if images:
        for task, result in _settled(images, ports, fetch_budget, decode_deadline).items():
            for number, delivery in enumerate(images[task]):
                if isinstance(result, Exception):
                    handled[delivery.key] = Handled(task, error=result)
                else:  # a second delivery of the image in this batch is a duplicate of the first
                    handled[delivery.key] = Handled(task, count=result if number == 0 else DUPLICATE)
    return handled


def _settled(
    images: dict[ImageTask, list[Delivery]],
    ports: ProcessingPorts,
    fetch_budget: Callable[[], float] | None,
    decode_deadline: float | None,
) -> dict[ImageTask, CountResult | Exception]:
    """Each image's count, or the exception that stopped it."""
    results: dict[ImageTask, CountResult | Exception] = {}
    stored: dict[ImageTask, Stored] = {}
    prefetcher = Prefetcher(ports, len(images), fetch_budget)  # as many downloads in flight as images
    puts = _Puts(ports)
    try:
        prefetcher.start(images)
        content = ContentMatches(ports.reuse, prefetcher.finished)
        for task, deliveries in images.items():
            # Two deliveries of one image: the last delivery's rules (fail with the reason, not dead-lettered).
            final_attempt = max(delivery.receive_count for delivery in deliveries) >= ports.max_receive_count
            try:
                prepared = prepare_image(
                    task,
                    ports,
                    prefetcher.fetch,
                    content.match,
                    final_attempt=final_attempt,
                    deadline=decode_deadline,
                )
            except Exception as exc:  # RetryLater, or a crash before the final attempt: this record is retried
                results[task] = exc
                continue
            if prepared.image is None:
                stored[task] = store_output(task, ports, prepared)
            else:
                puts.start(task, prepared)
    finally:
        puts.close()
        prefetcher.close()
    for task, put in puts.results().items():
        if isinstance(put, Exception):
            results[task] = put
        else:
            stored[task] = put
    order = [task for task in images if task in stored]
    counts: Sequence[CountResult | Exception]
    try:
        counts = settle([(task, stored[task][0]) for task in order], ports.catalog, ports.ledger, ports.clock())
    except Exception as exc:  # nothing of it is known counted: every one of these records is retried
        counts = [exc] * len(order)
    results.update(zip(order, counts, strict=True))
    # Outputs stored are worth remembering whatever their settle did (a retry records and counts them).
    remember_entries([entry for task in order if (entry := stored[task][1]) is not None], ports.reuse)
    return {task: results[task] for task in images}


class _Puts:
    """The batch's S3 puts, each started as its image is compressed, at most STORE_IN_FLIGHT waiting at once."""

    def __init__(self, ports: ProcessingPorts) -> None:
        self._ports = ports
        self._jobs = Jobs(pool("store", STORE_IN_FLIGHT))
        self._slots = threading.BoundedSemaphore(STORE_IN_FLIGHT)
        self._started: dict[ImageTask, Future[Stored]] = {}

    def start(self, task: ImageTask, prepared: Prepared) -> None:
        self._slots.acquire()  # released when the put ends: the lane waits here rather than hold more outputs
        self._started[task] = self._jobs.submit(self._put, task, prepared)

    def _put(self, task: ImageTask, prepared: Prepared) -> Stored:
        try:
            return store_output(task, self._ports, prepared)
        finally:
            self._slots.release()

    def close(self) -> None:
        """Wait for every put started (one is never abandoned half-way)."""
        self._jobs.close()

    def results(self) -> dict[ImageTask, Stored | Exception]:
        done: dict[ImageTask, Stored | Exception] = {}
        for task, future in self._started.items():
            exc = future.exception()
            done[task] = exc if isinstance(exc, Exception) else future.result()
        return done
