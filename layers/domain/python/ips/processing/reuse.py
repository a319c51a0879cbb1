"""Reuse of unchanged images, per tenant: a catalogue re-sent every day mostly names images already done.

For each (tenant, options, source URL) the index remembers the last output and what identified its source: the
server's validators (ETag, Last-Modified) and the SHA-256 of the source bytes. A new task for the same source
and options is fetched conditionally; a 304 reuses the output without downloading or compressing. Otherwise
bytes that hash to a source this tenant already processed with these options (under any URL) reuse that output
without compressing.

A reused output is copied (S3 server-side, no bytes through the function) to the new request's own key rather
than referenced: each request's outputs stay its own (their keys, their retention, their deletion), so one
request expiring or being deleted never breaks another's URLs, and no URL shows another request's id. The copy
becomes the index's newest output, so the entry's expiry follows the newest copy's retention."""

from __future__ import annotations

import hashlib
import logging
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from datetime import timedelta

from ips.processing.ports import ReuseEntry, ReusePorts, SourceValidators
from ips.shared.model import ImageOutcome, ImageStatus, ImageTask

logger = logging.getLogger(__name__)


def content_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def asset_url(base_url: str, key: str) -> str:
    """Where a processed object is publicly readable: CloudFront in AWS, the gateway locally."""
    return f"{base_url.rstrip('/')}/{key}"


def previous_entries(tasks: Iterable[ImageTask], ports: ReusePorts) -> dict[ImageTask, ReuseEntry | None]:
    """What the index knows of each task's source (a live entry for its tenant, options and URL, else None), in
    one lookup per (tenant, options) among them: a batch's images usually all belong to one request."""
    index = ports.index
    found: dict[ImageTask, ReuseEntry | None] = {}
    groups: dict[tuple[str, str], list[ImageTask]] = defaultdict(list)
    for task in tasks:
        if index is None or not task.tenant:
            found[task] = None
        else:
            groups[(task.tenant, task.options.fingerprint())].append(task)
    if index is None:
        return found
    now = ports.clock()
    for (tenant, options_key), members in groups.items():
        entries = index.find_by_urls(tenant, options_key, {task.url for task in members}, now)
        for task in members:
            found[task] = entries.get(task.url)
    return found


def reuse_output(task: ImageTask, entry: ReuseEntry, ports: ReusePorts) -> ImageOutcome | None:
    """Copy the entry's output to this task's key; None when it is gone (expired early, deleted)."""
    if entry.output_key != task.output_key and not ports.processed.copy(
        entry.output_key, task.output_key, task.options.format.content_type
    ):
        return None
    # The same key is this task's own earlier attempt (a redelivery): its output, not a reuse.
    reused = True if entry.output_key != task.output_key else None
    return replace(entry.outcome, output_url=asset_url(ports.asset_base_url, task.output_key), reused=reused)


class ContentMatches:
    """One batch's lookups of source bytes in the index. A lookup asks for the digest it needs and for every
    other digest of the batch known by then (`known`: the downloads finished so far) that was not asked yet, so
    a batch asks once or a few times, never once per image, and no image waits for another's download."""

    def __init__(self, ports: ReusePorts, known: Callable[[], Iterable[tuple[ImageTask, str]]]) -> None:
        self._ports, self._known = ports, known
        self._found: dict[tuple[str, str, str], ReuseEntry | None] = {}  # (tenant, options, digest) -> entry

    def match(self, task: ImageTask, previous: ReuseEntry | None, digest: str) -> ReuseEntry | None:
        """The output of bytes identical to these, processed by this tenant with these options, if any."""
        if previous is not None and previous.content_sha256 == digest:
            return previous
        if self._ports.index is None or not task.tenant:
            return None
        key = (task.tenant, task.options.fingerprint(), digest)
        if key not in self._found:
            self._look_up(key)
        return self._found[key]

    def _look_up(self, needed: tuple[str, str, str]) -> None:
        tenant, options_key, _ = needed
        digests = {needed[2]} | {
            digest
            for task, digest in self._known()
            if digest
            and (task.tenant, task.options.fingerprint()) == (tenant, options_key)
            and (tenant, options_key, digest) not in self._found
        }
        index = self._ports.index
        assert index is not None
        try:
            found = index.find_by_contents(tenant, options_key, digests, self._ports.clock())
        except Exception:  # reuse is an optimisation: these images are compressed instead
            logger.warning("could not look %d source(s) up in the reuse index", len(digests), exc_info=True)
            found = {}
        for digest in digests:
            self._found[(tenant, options_key, digest)] = found.get(digest)


def newest_entry(
    task: ImageTask, outcome: ImageOutcome, digest: str, validators: SourceValidators, ports: ReusePorts
) -> ReuseEntry | None:
    """The entry that makes this task's output the newest for its source; None when nothing is to be recorded
    (no index, no tenant, or the image did not succeed)."""
    if ports.index is None or not task.tenant or outcome.status is not ImageStatus.SUCCEEDED:
        return None
    stored = replace(outcome, output_url=None, reused=None)
    # A day short of the outputs' retention, so an entry never names an output the lifecycle already removed.
    lifetime = timedelta(days=max(ports.output_retention_days - 1, 0.5))
    return ReuseEntry(
        tenant=task.tenant,
        options_key=task.options.fingerprint(),
        url=task.url,
        content_sha256=digest,
        validators=validators,
        output_key=task.output_key,
        outcome=stored,
        expires_at=ports.clock() + lifetime,
    )


def remember_entries(entries: Sequence[ReuseEntry], ports: ReusePorts) -> None:
    """Record entries made by `newest_entry` (a batch's), all in one write. Best effort: reuse is an optimisation."""
    index = ports.index
    if index is None or not entries:
        return
    try:
        index.remember_many(entries)
    except Exception:  # the images are done; only later reuses of them are lost
        logger.warning("could not record %d image(s) for reuse", len(entries), exc_info=True)
