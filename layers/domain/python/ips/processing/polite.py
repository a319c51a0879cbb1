"""Polite fetching: a catalogue puts thousands of URLs on one seller's CDN, so fetches are capped per source host
(per worker process), and a host that asks us to slow down (429 / 503 with Retry-After: ips.shared.fetching) gets
its images' messages delayed by what it asked, not failed and not retried at once."""

from __future__ import annotations

import threading
from collections import defaultdict, deque
from collections.abc import Callable, Iterable
from urllib.parse import urlsplit

from ips.processing.ports import Fetcher, SourceValidators
from ips.shared.fetching import Fetched

DEFAULT_PER_HOST = 4


def host_of(url: str) -> str:
    try:
        parts = urlsplit(url)
        return f"{(parts.hostname or '').lower()}:{parts.port or ''}"
    except ValueError:
        return ""


class HostLimiter:
    """At most `per_host` fetches in flight per source host, shared by every fetch of this process."""

    def __init__(self, per_host: int = DEFAULT_PER_HOST) -> None:
        if per_host < 1:
            raise ValueError("per_host must be at least 1")
        self.per_host = per_host
        self._lock = threading.Lock()
        self._slots: dict[str, threading.BoundedSemaphore] = {}

    def slot(self, url: str) -> threading.BoundedSemaphore:
        host = host_of(url)
        with self._lock:
            if host not in self._slots:
                self._slots[host] = threading.BoundedSemaphore(self.per_host)
            return self._slots[host]


class PoliteFetcher:
    """A Fetcher that waits for a slot of the source's host before fetching."""

    def __init__(self, fetcher: Fetcher, limiter: HostLimiter) -> None:
        self._fetcher = fetcher
        self.limiter = limiter

    def fetch(self, url: str, validators: SourceValidators | None = None, timeout: float | None = None) -> Fetched:
        with self.limiter.slot(url):
            return self._fetcher.fetch(url, validators, timeout=timeout)


def interleave_hosts[T](items: Iterable[T], url: Callable[[T], str]) -> list[T]:
    """Round-robin over hosts, so one host's many images (waiting for its slots) are never ahead of every other
    host's few in a batch's prefetch."""
    queues: dict[str, deque[T]] = defaultdict(deque)
    for item in items:
        queues[host_of(url(item))].append(item)
    ordered: list[T] = []
    while queues:
        for host in list(queues):
            ordered.append(queues[host].popleft())
            if not queues[host]:
                del queues[host]
    return ordered
