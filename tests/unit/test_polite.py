"""Polite fetching's parts that need no network: the per-host cap, host interleaving, Retry-After parsing."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

from ips.processing.polite import HostLimiter, PoliteFetcher, interleave_hosts
from ips.shared.fetching import MAX_DELAY_S, Fetched, retry_after_seconds


class GatedFetcher:
    """Holds every fetch until released, and records how many were in flight per host at most."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.lock = threading.Lock()
        self.in_flight: dict[str, int] = {}
        self.peak: dict[str, int] = {}
        self.started = threading.Semaphore(0)

    def fetch(self, url: str, validators: object = None, timeout: float | None = None) -> Fetched:
        host = url.split("/")[2]
        with self.lock:
            self.in_flight[host] = self.in_flight.get(host, 0) + 1
            self.peak[host] = max(self.peak.get(host, 0), self.in_flight[host])
        self.started.release()
        self.release.wait(30)
        with self.lock:
            self.in_flight[host] -= 1
        return Fetched(b"", None, url, 200)


def test_fetches_are_capped_per_host_and_other_hosts_are_not_held_up() -> None:
    gated = GatedFetcher()
    fetcher = PoliteFetcher(gated, HostLimiter(per_host=2))
    urls = [f"http://busy.invalid/{n}" for n in range(6)] + ["http://other.invalid/1"]
    with ThreadPoolExecutor(len(urls)) as pool:
        futures = [pool.submit(fetcher.fetch, url) for url in urls]
        for _ in range(3):  # two of the busy host's and the other host's are let through at once
            assert gated.started.acquire(timeout=30)
        assert not gated.started.acquire(timeout=0.2)  # nothing more while the busy host's two are in flight
        assert gated.in_flight == {"busy.invalid": 2, "other.invalid": 1}
        gated.release.set()
        assert all(future.result(30).status == 200 for future in futures)
    assert gated.peak == {"busy.invalid": 2, "other.invalid": 1}


def test_a_batch_is_interleaved_by_host() -> None:
    urls = ["http://a.invalid/1", "http://a.invalid/2", "http://a.invalid/3", "http://b.invalid/1", "http://c:81/1"]
    assert interleave_hosts(urls, str) == [
        "http://a.invalid/1",
        "http://b.invalid/1",
        "http://c:81/1",
        "http://a.invalid/2",
        "http://a.invalid/3",
    ]


def test_retry_after_in_seconds_or_as_a_date() -> None:
    now = datetime(2026, 12, 1, 12, 0, 0, tzinfo=UTC)
    assert retry_after_seconds("120") == 120
    assert retry_after_seconds("Tue, 01 Dec 2026 12:01:30 GMT", now) == 90
    assert retry_after_seconds("Tue, 01 Dec 2026 11:00:00 GMT", now) == 0  # in the past: at once
    assert retry_after_seconds("999999999") == MAX_DELAY_S
    assert retry_after_seconds(None) is None
    assert retry_after_seconds("soon") is None
