"""The emulator's S3 and SQS on disk, so that a restart of the local cloud loses nothing accepted.

moto keeps every service in memory. Here its backends are snapshotted (pickled whole, at one instant: requests
wait while the snapshot is taken, so S3 and SQS agree with each other) every few seconds when
something changed, and when the emulator stops; a start loads the last snapshot. Written to a temporary file and
renamed, so a crash mid-write leaves the previous snapshot whole.

A snapshot older than MongoDB's state is safe: every message not yet deleted is still in the snapshot's queue and
is delivered again, and the handlers are idempotent against what MongoDB already holds. Messages that were in
flight when the snapshot was taken are made visible again on load: their consumers are gone."""

from __future__ import annotations

import copyreg
import logging
import os
import pickle
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from moto.backends import get_backend
from moto.core.utils import unix_time_millis

logger = logging.getLogger("localcloud.emulator_state")
SERVICES = ("s3", "sqs")
SNAPSHOT_NAME = "aws-emulator.pickle"
SNAPSHOT_SHARE = 0.05  # of the emulator's time, at most, spent holding requests for a snapshot
WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]

# Locks and conditions are recreated, never saved (moto's SQS queues and S3 keys hold them).
copyreg.pickle(type(threading.Lock()), lambda lock: (threading.Lock, ()))
copyreg.pickle(type(threading.RLock()), lambda lock: (threading.RLock, ()))
copyreg.pickle(threading.Condition, lambda condition: (threading.Condition, ()))


class SharedExclusiveLock:
    """Requests share it; a snapshot takes it alone (and new requests wait behind a waiting snapshot)."""

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._shared = 0
        self._exclusive_waiting = False

    @contextmanager
    def shared(self) -> Iterator[None]:
        with self._condition:
            self._condition.wait_for(lambda: not self._exclusive_waiting)
            self._shared += 1
        try:
            yield
        finally:
            with self._condition:
                self._shared -= 1
                self._condition.notify_all()

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        with self._condition:
            self._condition.wait_for(lambda: not self._exclusive_waiting)
            self._exclusive_waiting = True
            self._condition.wait_for(lambda: self._shared == 0)
        try:
            yield
        finally:
            with self._condition:
                self._exclusive_waiting = False
                self._condition.notify_all()


class PersistentState:
    """WSGI middleware counting changes, and the snapshot writer."""

    def __init__(self, app: WsgiApp, folder: Path, interval_s: float = 5.0) -> None:
        self.app, self.path, self.interval_s = app, folder / SNAPSHOT_NAME, interval_s
        self.lock = SharedExclusiveLock()
        self._changes = 0
        self._saved_changes = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        with self.lock.shared():
            body = list(self.app(environ, start_response))  # served whole inside the lock
            if environ.get("REQUEST_METHOD") != "GET":
                self._changes += 1  # POSTs include reads (SQS receive): it only costs a snapshot
        return body

    def load(self) -> bool:
        if not self.path.exists():
            return False
        with self.path.open("rb") as snapshot:
            saved: dict[str, dict[str, Any]] = pickle.load(snapshot)  # noqa: S301 - our own file, in our state folder
        for service, (accounts, extras) in saved.items():
            backends = get_backend(service)  # type: ignore[call-overload]
            backends.clear()
            backends.update(accounts)
            for name, value in extras.items():
                getattr(backends, name).update(value)
        _requeue_in_flight()
        return True

    def save(self) -> None:
        with self.lock.exclusive():
            changes = self._changes
            data = pickle.dumps({service: _backends_of(service) for service in SERVICES})
        self.path.parent.mkdir(parents=True, exist_ok=True)
        partial = self.path.with_suffix(".partial")
        with partial.open("wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        partial.replace(self.path)
        self._saved_changes = changes

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="snapshots", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        wait = self.interval_s
        while not self._stop.wait(wait):
            if self._changes != self._saved_changes:
                started = time.monotonic()
                try:
                    self.save()
                except Exception:
                    logger.exception("snapshot failed; the previous one stays")
                took = time.monotonic() - started
                wait = self.next_wait(took)
                logger.debug("snapshot in %.2fs; the next in %.1fs", took, wait)

    def next_wait(self, took_s: float) -> float:
        """A snapshot holds every request while it pickles the whole state, and the state grows with the stored
        images and counted markers: at a fixed interval the emulator would spend ever more of its time (and of
        the machine's CPU) snapshotting. The wait grows with what the last one cost, so snapshots never take more
        than about `SNAPSHOT_SHARE` of the time; a crash loses up to that wait of work, redone from the queue."""
        return max(self.interval_s, took_s / SNAPSHOT_SHARE)

    def stop(self) -> None:
        """Stop the periodic snapshots and take the last one."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.save()


# State moto keeps beside a service's accounts: S3 finds a bucket's account through `bucket_accounts`, and a
# bucket missing from it is created afresh (empty) by the next CreateBucket.
BACKEND_EXTRAS = {"s3": ("bucket_accounts",)}


def _backends_of(service: str) -> tuple[dict[str, Any], dict[str, Any]]:
    backends = get_backend(service)  # type: ignore[call-overload]
    extras = {name: dict(getattr(backends, name)) for name in BACKEND_EXTRAS.get(service, ())}
    return dict(backends), extras


def _requeue_in_flight() -> None:
    now = unix_time_millis()
    for accounts in get_backend("sqs").values():  # type: ignore[call-overload]
        for backend in accounts.values():
            for queue in backend.queues.values():
                for message in queue._messages:
                    message.visible_at = min(message.visible_at, now)
                queue._pending_messages.clear()
