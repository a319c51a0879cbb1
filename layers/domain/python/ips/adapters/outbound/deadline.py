"""The whole-request deadline: a watchdog that shuts down a request's sockets when its time is up."""

from __future__ import annotations

import contextlib
import contextvars
import socket
import threading
import time


class Deadline:
    """A whole-request time limit. Socket timeouts bound each read, not their sum, so a server can trickle a
    byte every few seconds forever; when this deadline passes a timer thread shuts down the sockets in use,
    which makes any blocked read (plain or TLS, headers or body) return at once."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._end = time.monotonic() + seconds
        self._lock = threading.Lock()
        # dup()s of the sockets in use: shutting down a dup shuts down the connection, even under TLS
        self._watched: set[socket.socket] = set()
        self._fired = False
        self._finished = False
        self._timer = threading.Timer(seconds, self._fire)
        self._timer.daemon = True
        self._timer.start()

    def remaining(self) -> float:
        return max(0.0, self._end - time.monotonic())

    @property
    def expired(self) -> bool:
        return self._fired or self.remaining() <= 0

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
        """Stop the watchdog; returns True if it had already fired (the response may then be truncated)."""
        self._timer.cancel()
        with self._lock:
            self._finished = True
            for handle in self._watched:
                handle.close()
            self._watched.clear()
            return self._fired

    def _fire(self) -> None:
        # Under the lock, so a connection unwatched (returned to the pool) before this point is never touched.
        with self._lock:
            if self._finished:
                return
            self._fired = True
            for handle in self._watched:
                _shutdown(handle)


def _shutdown(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


ACTIVE_DEADLINE: contextvars.ContextVar[Deadline | None] = contextvars.ContextVar("ips_outbound_deadline", default=None)
