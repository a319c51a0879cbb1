"""ips.processing.thread_pools: batches share the process's threads, and each waits for its own work only."""

from __future__ import annotations

import threading

from ips.processing.thread_pools import Jobs, pool


def test_one_batch_after_another_runs_on_the_same_threads() -> None:
    seen: set[int] = set()
    for _ in range(5):
        jobs = Jobs(pool("test-reuse", 2))
        for _ in range(4):
            jobs.submit(lambda: seen.add(threading.get_ident()))
        jobs.close()
    assert len(seen) <= 2  # a pool per batch would have started up to ten threads
    assert pool("test-reuse", 2) is pool("test-reuse", 2)


def test_close_waits_for_its_own_work_and_not_for_another_batchs() -> None:
    gate = threading.Event()
    slow = Jobs(pool("test-waits", 2))
    held = slow.submit(gate.wait, 10)
    quick = Jobs(pool("test-waits", 2))
    done = quick.submit(lambda: "done")
    quick.close()
    assert done.result(timeout=0) == "done" and not held.done()
    gate.set()
    slow.close()
    assert held.result(timeout=0) is True
