"""Faults at every port, injected into the local cloud's functions through IPS_ADAPTER_HOOK (ips_runtime.adapters).

Each call of a wrapped adapter method may, at random (CHAOS_SEED, CHAOS_FAULT_RATE): fail before it runs (S3,
MongoDB or DynamoDB refusing), or run and then fail (a crash between two steps of an image: stored but not
recorded, recorded but not counted, a chunk's group sent but its progress not recorded, ...). Sends to either
queue (images, chunks) may also be repeated (duplicate deliveries), and reading a queue's depth may fail. The
upload route's own writes are left alone (its fan-out onto the chunks queue may only be repeated), so every
request a client was told about exists whole.

A store outage: while the file CHAOS_OUTAGE names exists (the suite creates it for longer than the queues'
retries, then removes it), every call of every MongoDB adapter fails, as a MongoDB that is down refuses them all.

Replay: whether a call fails is a function of the seed and of the call itself (the port, the method, what it is
about, and how many times it was made before, counted across every execution environment of the run in a
shared file, CHAOS_COUNTERS), never of the order in which unrelated calls happened to arrive. What a call is
about is named by what is the same in every run of a seed: an image by its source URL (numbered by the run's
plan), a request by the number in its webhook URL's path (tests/chaos/test_chaos.py), not by its random id."""

from __future__ import annotations

import fcntl
import functools
import hashlib
import mmap
import os
import re
import struct
import sys
import threading
from collections.abc import Callable, Sequence
from typing import Any

from botocore.exceptions import ClientError
from pymongo.errors import AutoReconnect

from ips.shared.model import ImageTask

# port -> (methods, the error that port raises)
PORTS: dict[str, tuple[tuple[str, ...], Callable[[], Exception]]] = {
    "processed": (("put", "put_stream"), lambda: ClientError({"Error": {"Code": "ServiceUnavailable"}}, "PutObject")),
    "uploads": (("get_range",), lambda: ClientError({"Error": {"Code": "SlowDown"}}, "GetObject")),
    "catalog": (
        ("record_images", "add_products", "finalise", "claim_webhook", "record_webhook", "products"),
        lambda: AutoReconnect("chaos: MongoDB connection lost"),
    ),
    "ledger": (
        ("count_many", "counts", "fail"),
        lambda: ClientError({"Error": {"Code": "ProvisionedThroughputExceededException"}}, "TransactWriteItems"),
    ),
    # each chunk's progress (the expand function's resume point, the reconciler's view of what was sent)
    "chunk_progress": (
        ("sent", "advance"),
        lambda: ClientError({"Error": {"Code": "ProvisionedThroughputExceededException"}}, "UpdateItem"),
    ),
}
QUEUES = ("queue", "chunks", "webhook_queue")  # the images, chunks and webhook queues: FaultyQueue
MONGODB = ("catalog", "reuse", "secret_generations", "receivers", "rounds")  # what a MongoDB outage takes down
_REQUEST_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_URL_IN_BODY = re.compile(r'"url":"([^"]+)"')
_CHUNK_IN_BODY = re.compile(r'"requestId":"([^"]+)".*"chunk":\[\d+,\d+,(\d+),')


class SharedCounters:
    """How many times each call was made, across the processes of the run: slots of a file every process maps,
    incremented under an exclusive lock of the file (and of this process's threads). Two calls that share a
    slot share a count: still the same in every run."""

    SLOTS = 1 << 20

    def __init__(self, path: str) -> None:
        self._file = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        if os.fstat(self._file).st_size < self.SLOTS * 4:
            os.ftruncate(self._file, self.SLOTS * 4)
        self._map = mmap.mmap(self._file, self.SLOTS * 4)
        self._lock = threading.Lock()

    def increment(self, key: str) -> int:
        slot = int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest()) % self.SLOTS * 4
        with self._lock:
            fcntl.flock(self._file, fcntl.LOCK_EX)
            try:
                count = struct.unpack_from("<I", self._map, slot)[0] + 1
                struct.pack_into("<I", self._map, slot, count)
            finally:
                fcntl.flock(self._file, fcntl.LOCK_UN)
        return count


class Chaos:
    """The run's fault decisions: `roll(port, method, about)` is uniform in [0, 1) and depends only on the seed,
    the call and how many times the run made the same call before."""

    def __init__(self, seed: int, rate: float, name_request: Callable[[str], str], counters: SharedCounters) -> None:
        self.seed, self.rate = seed, rate
        self._name_request = name_request
        self._names: dict[str, str] = {}
        self._counters = counters
        self._lock = threading.Lock()

    def about(self, args: Sequence[Any]) -> str:
        """What a call concerns, in the terms every run of the seed shares."""
        parts = []
        for arg in args:
            if isinstance(arg, ImageTask):
                parts.append(arg.url)  # the image's number in the run's plan is in its URL
            elif isinstance(arg, str):
                parts.append(arg)
            elif isinstance(arg, int) and not isinstance(arg, bool):
                parts.append(str(arg))
            elif isinstance(arg, Sequence) and arg and hasattr(arg[0], "row"):
                parts.append(f"rows {arg[0].row}+")  # add_products: the chunk's first row
            elif isinstance(arg, Sequence) and arg and (tasks := _tasks(arg)):
                parts.append(" ".join(sorted(task.url for task in tasks)))  # a batch's images (record, count)
        return _REQUEST_ID.sub(lambda match: self._request_name(match.group(0)), "|".join(parts))

    def _request_name(self, request_id: str) -> str:
        with self._lock:
            if request_id in self._names:
                return self._names[request_id]
        name = self._name_request(request_id)
        with self._lock:
            self._names[request_id] = name
        return name

    def roll(self, port: str, method: str, about: str) -> float:
        call = f"{port}.{method}|{about}"
        times = self._counters.increment(call)
        digest = hashlib.blake2b(f"{self.seed}|{call}|{times}".encode(), digest_size=8).digest()
        return int.from_bytes(digest) / 2**64


class FaultyPort:
    def __init__(
        self, real: Any, port: str, methods: Sequence[str], error: Callable[[], Exception], chaos: Chaos
    ) -> None:
        self._real, self._port, self._methods, self._error, self._chaos = real, port, set(methods), error, chaos

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._real, name)
        if name not in self._methods:
            return attribute
        chaos, error, port = self._chaos, self._error, self._port

        def faulty(*args: Any, **kwargs: Any) -> Any:
            roll = chaos.roll(port, name, chaos.about(args))
            if roll < chaos.rate / 2:
                raise error()
            result = attribute(*args, **kwargs)
            if roll < chaos.rate:
                raise RuntimeError(f"chaos: crashed after {name}")
            return result

        return faulty


class FaultyQueue:
    """Sends fail, crash after sending, or send twice; reading the depth fails. `repeat_only`: the upload route's
    fan-out, whose sends are only ever repeated (a duplicate chunk), never refused."""

    def __init__(self, real: Any, port: str, chaos: Chaos, *, repeat_only: bool = False) -> None:
        self._real, self._port, self._chaos, self._repeat_only = real, port, chaos, repeat_only

    def __getattr__(self, name: str) -> Any:  # delay: as it is
        return getattr(self._real, name)

    def backlog(self) -> int:
        if self._chaos.roll(self._port, "backlog", "") < self._chaos.rate:
            raise ClientError({"Error": {"Code": "ServiceUnavailable"}}, "GetQueueAttributes")
        return self._real.backlog()

    def send(self, bodies: Sequence[str]) -> None:
        roll = self._chaos.roll(self._port, "send", self._chaos.about(["|".join(map(_what_is_sent, bodies))]))
        if roll < self._chaos.rate / 2 and not self._repeat_only:
            raise ClientError({"Error": {"Code": "ServiceUnavailable"}}, "SendMessageBatch")
        self._real.send(bodies)
        if roll < self._chaos.rate and not self._repeat_only:
            raise RuntimeError("chaos: crashed after sending")
        if roll < 2 * self._chaos.rate:
            self._real.send(bodies[: max(1, len(bodies) // 3)])  # duplicates
        return None


def _tasks(items: Sequence[Any]) -> list[ImageTask]:
    """The images of a batch call: record_images' (task, outcome) pairs, count_many's ImageCounts."""
    tasks = [item[0] if isinstance(item, tuple) and item else getattr(item, "task", None) for item in items]
    return [task for task in tasks if isinstance(task, ImageTask)]


def _what_is_sent(body: str) -> str:
    """An image message by its source URL; a chunk by its request and first row."""
    if urls := _URL_IN_BODY.findall(body):
        return urls[0]
    chunk = _CHUNK_IN_BODY.search(body)
    return f"{chunk.group(1)} rows {chunk.group(2)}+" if chunk else body[:64]


class Outage:
    """Every call fails while the outage file exists (a MongoDB that is down)."""

    def __init__(self, real: Any, flag: str) -> None:
        self._real, self._flag = real, flag

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._real, name)
        if not callable(attribute):
            return attribute
        flag = self._flag

        def unless_down(*args: Any, **kwargs: Any) -> Any:
            if os.path.exists(flag):
                raise AutoReconnect("chaos: MongoDB is down (a long outage)")
            return attribute(*args, **kwargs)

        return unless_down


def _building_the_upload_root() -> bool:
    """Whether the adapter is being built for the upload function's root (ips_runtime.roots.build_upload)."""
    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_code.co_name == "build_upload" and frame.f_globals.get("__name__") == "ips_runtime.roots":
            return True
        frame = frame.f_back
    return False


class _RequestNames:
    """A request's number in the run (the last segment of its webhook URL), read through the real catalog of
    this process (the first one a root builds); its id when there is no catalog or no such request."""

    catalog: Any = None

    def __call__(self, request_id: str) -> str:
        record = self.catalog.get(request_id) if self.catalog is not None else None
        return f"request {record.webhook_url.rsplit('/', 1)[1]}" if record and record.webhook_url else request_id


_names = _RequestNames()


@functools.cache
def _chaos() -> Chaos:
    """One per process (a local-cloud execution environment), shared by every adapter its functions build."""
    return Chaos(
        int(os.environ["CHAOS_SEED"]),
        float(os.environ.get("CHAOS_FAULT_RATE", "0.03")),
        _names,
        SharedCounters(os.environ["CHAOS_COUNTERS"]),
    )


def inject(name: str, adapter: Any) -> Any:
    """The hook: each adapter a function's root is built with, by port name -> the one it uses."""
    if name == "catalog" and _names.catalog is None:
        _names.catalog = adapter
    if name in QUEUES:
        return FaultyQueue(adapter, name, _chaos(), repeat_only=name == "chunks" and _building_the_upload_root())
    if name in PORTS:
        methods, error = PORTS[name]
        adapter = FaultyPort(adapter, name, methods, error, _chaos())
    if name in MONGODB and os.environ.get("CHAOS_OUTAGE"):
        return Outage(adapter, os.environ["CHAOS_OUTAGE"])
    return adapter
