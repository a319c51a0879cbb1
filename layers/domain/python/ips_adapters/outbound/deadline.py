"""The whole-request deadline: a watchdog that shuts down a request's sockets when its time is up."""

from __future__ import annotations

import contextlib
import contextvars
import heapq
import itertools
import os
import socket
import threading
import time


class Deadline:
    """A whole-request time limit. Socket timeouts bound each read, not their sum, so a server can trickle a
    byte every few seconds forever; when this deadline passes the process's watchdog thread shuts down the
    sockets in use, which makes any blocked read (plain or TLS, headers or body) return at once."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._end = time.monotonic() + seconds
        self._lock = threading.Lock()
        # dup()s of the sockets in use: shutting down a dup shuts down the connection, even under TLS
        self._watched: set[socket.socket] = set()
        self._fired = False
        self._finished = False
        _WATCHDOG.add(self, self._end)

    def remaining(self) -> float:
        return max(0.0, self._end - time.monotonic())

    @property
    def expired(self) -> bool:
        return self._fired or self.remaining() <= 0

    @property
    def finished(self) -> bool:
        return self._finished

    def watch(self, sock: socket.socket) -> socket.socket | None:
        """Register a connected socket; returns the handle to pass to unwatch()."""
        with self._lock:
            if self._finished:
                return None
            handle = socket.fromfd(sock.fileno(), sock.family, sock.type, sock.proto)
            self._watched.add(handle)
            if self._fired:
                _shutdown(handle)
            return handle

    def unwatch(self, handle: socket.socket) -> None:
        with self._lock:
            if handle in self._watched:
                self._watched.discard(handle)
                handle.close()

    def finish(self) -> bool:
        """Stop watching (the watchdog will not fire it now); returns True if it had already fired (the response
        may then be truncated)."""
        with self._lock:
            self._finished = True
            for handle in self._watched:
                handle.close()
            self._watched.clear()
            return self._fired

    def fire(self) -> None:
        """Shut down the sockets in use (the watchdog calls it when the time is up), unless finished."""
        # Under the lock, so a connection unwatched (returned to the pool) before this point is never touched.
        with self._lock:
            if self._finished:
                return
            self._fired = True
            for handle in self._watched:
                _shutdown(handle)


class _Watchdog:
    """One thread per process fires every deadline that runs out, rather than a timer thread per request: a
    catalogue's fetches are thousands of short requests, and starting and cancelling a thread for each cost
    more CPU than the request itself on a 304. Deadlines wait in a heap by end time; finished ones are dropped
    when they reach its top, so the thread sleeps until the earliest deadline still running."""

    def __init__(self) -> None:
        self._order = itertools.count()  # ties in end time never compare deadlines
        self.reset()

    def reset(self) -> None:
        """Start afresh: in a forked child, whose copy of the lock may be held and which has no thread."""
        self._wakeup = threading.Condition(threading.Lock())
        self._heap: list[tuple[float, int, Deadline]] = []
        self._thread: threading.Thread | None = None

    def add(self, deadline: Deadline, end: float) -> None:
        with self._wakeup:
            heapq.heappush(self._heap, (end, next(self._order), deadline))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="outbound-deadlines", daemon=True)
                self._thread.start()
            elif self._heap[0][2] is deadline:  # sooner than what the thread sleeps until
                self._wakeup.notify()

    def _run(self) -> None:
        while True:
            with self._wakeup:
                due = self._next_due()
            for deadline in due:
                deadline.fire()

    def _next_due(self) -> list[Deadline]:
        """Wait (holding the condition) until some running deadline is due; those due, off the heap."""
        while True:
            while self._heap and self._heap[0][2].finished:
                heapq.heappop(self._heap)
            if not self._heap:
                self._wakeup.wait()
                continue
            wait = self._heap[0][0] - time.monotonic()
            if wait > 0:
                self._wakeup.wait(wait)
                continue
            due = []
            while self._heap and self._heap[0][0] <= time.monotonic():
                due.append(heapq.heappop(self._heap)[2])
            return due


_WATCHDOG = _Watchdog()
os.register_at_fork(after_in_child=_WATCHDOG.reset)


def _shutdown(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


ACTIVE_DEADLINE: contextvars.ContextVar[Deadline | None] = contextvars.ContextVar("ips_outbound_deadline", default=None)
