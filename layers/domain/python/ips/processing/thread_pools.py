"""Thread pools kept for the life of the process, so a batch does not start (and stop) its own threads.

A Lambda environment runs one invocation after another; each batch used to start a pool of fetch threads, a
compression lane and a few finishers and shut them down at its end: about fifteen threads per ten images, a
few per cent of a reused image's CPU. The pools here are made once per (purpose, size) and per process (a
forked child starts with none), and a batch waits for its own work in them (`Jobs`), never for another's."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Any

_LOCK = threading.Lock()
_POOLS: dict[tuple[str, int], ThreadPoolExecutor] = {}


def pool(purpose: str, size: int) -> ThreadPoolExecutor:
    """The process's pool of `size` threads for `purpose` (threads start as work needs them, then stay)."""
    key = (purpose, max(1, size))
    with _LOCK:
        if key not in _POOLS:
            _POOLS[key] = ThreadPoolExecutor(max_workers=key[1], thread_name_prefix=purpose)
        return _POOLS[key]


def _forget_pools() -> None:
    global _LOCK
    _LOCK = threading.Lock()
    _POOLS.clear()  # their threads did not survive the fork


os.register_at_fork(after_in_child=_forget_pools)


class Jobs:
    """One batch's work in a shared pool: `close()` waits for all of it (as shutting down a pool of its own
    would), not for other batches' work."""

    def __init__(self, executor: ThreadPoolExecutor) -> None:
        self._executor = executor
        self._futures: list[Future[Any]] = []

    def submit(self, function: Callable[..., Any], *args: Any) -> Future[Any]:
        future = self._executor.submit(function, *args)
        self._futures.append(future)
        return future

    def close(self) -> None:
        wait(self._futures)  # a future cancelled by its owner counts as done
