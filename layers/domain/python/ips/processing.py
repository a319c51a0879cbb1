"""Process one image: fetch, compress, store, record, count. Safe to run twice for the same task."""

from __future__ import annotations

import logging

from ips.context import Context
from ips.imaging import ImageRejected, compress_image
from ips.model import ImageOutcome, ImageStatus, ImageTask
from ips.outbound import FetchError
from ips.ports import CountResult

logger = logging.getLogger(__name__)


class RetryLater(Exception):
    """A transient failure: the message goes back to the queue and is delivered again."""


def process_image(task: ImageTask, context: Context, *, final_attempt: bool) -> CountResult:
    """Bring the image to a terminal state and count it once.

    Permanent problems (a refused address, a 404, not an image, too big) fail the image with their reason.
    Transient ones raise RetryLater, except on the final delivery, where the image fails with the reason
    instead of going to the dead-letter queue uncounted."""
    outcome = _compress_and_store(task, context, final_attempt=final_attempt)
    # The catalog keeps the first terminal state it is given, and the count follows what the catalog holds,
    # so a redelivery that ends differently cannot make the counters disagree with the product records.
    stored = context.backends.catalog.record_image(task, outcome)
    return context.backends.ledger.count(task, succeeded=stored.status is ImageStatus.SUCCEEDED)


def _compress_and_store(task: ImageTask, context: Context, *, final_attempt: bool) -> ImageOutcome:
    settings, backends = context.settings, context.backends
    try:
        fetched = backends.fetcher.fetch(task.url)
        image = compress_image(fetched.body, quality=settings.jpeg_quality, limits=settings.image_limits)
    except FetchError as exc:
        if not exc.permanent and not final_attempt:
            raise RetryLater(f"{exc.code}: {exc}") from exc
        reason = str(exc) if exc.permanent else f"{exc} (gave up after {settings.max_receive_count} attempts)"
        return ImageOutcome.failure(exc.code, reason)
    except ImageRejected as exc:
        return ImageOutcome.failure(exc.code, str(exc))
    except Exception as exc:  # a codec bug must not poison the queue: fail the image on its last delivery
        if not final_attempt:
            raise
        logger.exception("image processing crashed on the final attempt", extra={"url": task.url})
        return ImageOutcome.failure("INTERNAL_ERROR", f"processing failed: {type(exc).__name__}")
    backends.processed.put(task.output_key, image.data, "image/jpeg")
    return ImageOutcome(
        ImageStatus.SUCCEEDED,
        output_url=settings.asset_url(task.output_key),
        input_format=image.input_format,
        input_bytes=image.input_bytes,
        output_bytes=image.output_bytes,
        width=image.width,
        height=image.height,
        kept_original=image.kept_original,
    )
