"""One image's work, up to its outcome: fetch (prefetched for the whole batch), reuse an earlier output or compress,
store the output. Recording and counting the outcome is `ips.processing.settle`'s, for a whole batch at once; the batch
itself is `ips.processing.service.run_batch`."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field

from ips.processing.polite import interleave_hosts
from ips.processing.ports import ProcessingPorts, ReuseEntry, SourceValidators
from ips.processing.reuse import asset_url, content_hash, newest_entry, previous_entries, reuse_output
from ips.processing.thread_pools import Jobs, pool
from ips.shared.fetching import TIMEOUT, Fetched, FetchError
from ips.shared.imaging import CompressedImage, ImageRejected, OutOfTime, compress_image
from ips.shared.model import ImageOutcome, ImageStatus, ImageTask
from ips.shared.ports import Catalog
from ips.shared.quotas import QuotaExceeded
from ips.shared.redaction import redact_url

logger = logging.getLogger(__name__)
# ips.processing.reuse.ContentMatches.match
MatchContent = Callable[[ImageTask, ReuseEntry | None, str], ReuseEntry | None]


class RetryLater(Exception):
    """A transient failure: the message goes back to the queue and is delivered again; after `delay_s` seconds
    when the source said when (Retry-After), else after the queue's visibility timeout."""

    def __init__(self, message: str, delay_s: float | None = None) -> None:
        super().__init__(message)
        self.delay_s = delay_s


@dataclass(frozen=True)
class Source:
    """A task's source: what the reuse index knew of it, what the fetch brought, and the SHA-256 of its bytes
    (empty for a 304, which brings none)."""

    previous: ReuseEntry | None
    fetched: Fetched
    digest: str


def fetch_source(
    task: ImageTask, previous: ReuseEntry | None, ports: ProcessingPorts, timeout: float | None = None
) -> Source:
    """Fetch the task's source; conditionally when the index had it (`previous`, with its validators).
    `timeout` (what the invocation has left) shortens the fetcher's own limit."""
    validators = previous.validators if previous is not None and previous.validators else None
    fetched = ports.fetcher.fetch(task.url, validators, timeout=timeout)
    return Source(previous, fetched, "" if fetched.not_modified else content_hash(fetched.body))


class Prefetcher:
    """Starts a batch's downloads at once, so they overlap each other and the compression of earlier images.
    Each fetch gets what the invocation has left (`budget`, seconds) as its time limit, so a batch of slow
    sources cannot run past the function timeout."""

    def __init__(self, ports: ProcessingPorts, workers: int, budget: Callable[[], float] | None = None) -> None:
        self._ports = ports
        self._budget = budget
        # The process's prefetch threads, at least `workers` of them (sizes rounded up to a power of two, so a
        # process keeps a few pools whatever its batches' sizes).
        self._jobs = Jobs(pool("prefetch", 1 << (max(1, workers) - 1).bit_length()))
        self._pending: dict[ImageTask, Future[Source]] = {}
        self._previous: dict[ImageTask, ReuseEntry | None] = {}

    def start(self, tasks: Iterable[ImageTask]) -> None:
        # Hosts interleaved: one host's images waiting for its fetch slots never hold up every other host's.
        ordered = interleave_hosts(tasks, lambda task: task.url)
        try:
            # The reuse index asked once for the batch, not once per image.
            self._previous.update(previous_entries(ordered, self._ports.reuse))
        except Exception:  # reuse is an optimisation: the sources are fetched whole (bytes may still match)
            logger.warning("could not look the batch's sources up in the reuse index", exc_info=True)
        for task in ordered:
            if task not in self._pending:
                self._pending[task] = self._jobs.submit(self._fetch, task)

    def fetch(self, task: ImageTask) -> Source:
        future = self._pending.pop(task, None)
        return future.result() if future is not None else self._fetch(task)

    def finished(self) -> Iterator[tuple[ImageTask, str]]:
        """The batch's downloads done by now and not taken yet, with their digests (for ContentMatches)."""
        for task, future in list(self._pending.items()):
            if future.done() and not future.cancelled() and future.exception() is None:
                yield task, future.result().digest

    def _fetch(self, task: ImageTask) -> Source:
        timeout: float | None = None
        if self._budget is not None:
            timeout = self._budget()
            if timeout <= 0:
                raise FetchError(TIMEOUT, "no time left in this invocation to fetch the image", permanent=False)
        return fetch_source(task, self._previous.get(task), self._ports, timeout)

    def close(self) -> None:
        """Drop the fetches that have not started and wait for those that have."""
        for future in self._pending.values():
            future.cancel()
        self._jobs.close()


@dataclass(frozen=True)
class Prepared:
    """What `prepare_image` decided: the image's outcome when it is known already (it failed, or an earlier
    output was reused, with the reuse entry that now names this task's copy), else the compressed image to store
    and what identifies its source."""

    outcome: ImageOutcome | None = None
    image: CompressedImage | None = None
    digest: str = ""
    validators: SourceValidators = field(default_factory=SourceValidators)
    reuse_entry: ReuseEntry | None = None


def prepare_image(
    task: ImageTask,
    ports: ProcessingPorts,
    fetch: Callable[[ImageTask], Source],
    match_content: MatchContent,
    *,
    final_attempt: bool,
    deadline: float | None,
) -> Prepared:
    """The CPU-bound part (and what decides it): take the prefetched source, reuse or compress.

    Permanent problems (a refused address, a 404, not an image, too big, too costly to decode) fail the image
    with their reason. Transient ones raise RetryLater, except on the final delivery, where the image fails
    with the reason instead of going to the dead-letter queue uncounted. `deadline` (a `time.monotonic()`
    instant) is when compressing must have finished for the invocation to end in time: running into it while
    decoding, or an encode estimated to end past it, is transient (a fresh invocation has more time), running out
    of the image's own CPU budget is not. A heavy image's work is charged to its tenant's quota before it is
    decoded (ips.shared.quotas); over the quota, it fails IMAGE_QUOTA_EXCEEDED."""
    try:
        source = fetch(task)
        if source.fetched.not_modified and source.previous is not None:
            # Unchanged since last time (304): reuse the output, no download, no compression.
            if (reused := reuse_output(task, source.previous, ports.reuse)) is not None:
                previous = source.previous
                entry = newest_entry(task, reused, previous.content_sha256, previous.validators, ports.reuse)
                return Prepared(outcome=reused, reuse_entry=entry)
            source = fetch_source(task, None, ports)  # its output is gone: fetch it whole
        fetched = source.fetched
        validators = SourceValidators(fetched.etag, fetched.last_modified)
        # Bytes this tenant already processed with these options: reuse the output, skip the compression.
        match = match_content(task, source.previous, source.digest)
        if match is not None and (reused := reuse_output(task, match, ports.reuse)) is not None:
            entry = newest_entry(task, reused, source.digest, validators, ports.reuse)
            return Prepared(outcome=reused, reuse_entry=entry)
        image = compress_image(
            fetched.body,
            limits=ports.image_limits,
            deadline=deadline,
            options=task.options,
            admit=lambda plan: ports.allowance.charge_work(task, plan.seconds),
        )
    except FetchError as exc:
        if not exc.permanent and not final_attempt:
            raise RetryLater(f"{exc.code}: {exc}", exc.retry_after) from exc
        reason = str(exc) if exc.permanent else f"{exc} (gave up after {ports.max_receive_count} attempts)"
        return Prepared(outcome=ImageOutcome.failure(exc.code, reason))
    except OutOfTime as exc:
        if exc.invocation_deadline and not final_attempt:
            raise RetryLater(f"{exc.code}: {exc}") from exc
        return Prepared(outcome=ImageOutcome.failure(exc.code, str(exc)))
    except (ImageRejected, QuotaExceeded) as exc:
        return Prepared(outcome=ImageOutcome.failure(exc.code, str(exc)))
    except Exception as exc:  # a codec bug must not poison the queue: fail the image on its last delivery
        if not final_attempt:
            raise
        logger.exception("image processing crashed on the final attempt", extra={"url": redact_url(task.url)})
        return Prepared(outcome=ImageOutcome.failure("INTERNAL_ERROR", f"processing failed: {type(exc).__name__}"))
    return Prepared(image=image, digest=source.digest, validators=validators)


def store_output(task: ImageTask, ports: ProcessingPorts, prepared: Prepared) -> tuple[ImageOutcome, ReuseEntry | None]:
    """The prepared image's outcome, its output stored first when it was compressed; and the reuse entry that
    makes it (or a reused output's new copy) the newest for its source, to be written with the batch's."""
    if prepared.outcome is not None:
        return prepared.outcome, prepared.reuse_entry
    image = prepared.image
    assert image is not None, "a prepared image has an outcome or a compressed image"
    ports.processed.put(task.output_key, image.data, task.options.format.content_type)
    outcome = ImageOutcome(
        ImageStatus.SUCCEEDED,
        output_url=asset_url(ports.reuse.asset_base_url, task.output_key),
        input_format=image.input_format,
        input_bytes=image.input_bytes,
        output_bytes=image.output_bytes,
        width=image.width,
        height=image.height,
        kept_original=image.kept_original,
        output_format=image.output_format,
    )
    return outcome, newest_entry(task, outcome, prepared.digest, prepared.validators, ports.reuse)


def failed_delivery_reason(exc: BaseException) -> str:
    """What a failed delivery of an image says about itself, fit for the tenant's eyes: a transient fetch problem
    in its own words, anything else by its kind (the details are in the logs, not in the request's record)."""
    if isinstance(exc, RetryLater):
        return str(exc)
    code = getattr(exc, "response", {}).get("Error", {}).get("Code") if hasattr(exc, "response") else None
    return f"{type(exc).__name__} ({code})" if isinstance(code, str) else type(exc).__name__


def note_failed_delivery(task: ImageTask, exc: BaseException, catalog: Catalog) -> None:
    """Keep the last error of an image whose delivery failed, so that if it is dead-lettered its failure says
    why. Best effort: the store that failed the delivery may be the one that refuses this too."""
    try:
        catalog.note_failed_delivery(task, failed_delivery_reason(exc))
    except Exception:
        logger.warning("could not note a failed delivery", extra={"url": redact_url(task.url)}, exc_info=True)
