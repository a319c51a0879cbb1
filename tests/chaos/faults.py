"""Faults at every port, injected into the local cloud's functions through IPS_ADAPTER_HOOK (ips_runtime.adapters).

Each call of a wrapped adapter method may, at random (CHAOS_SEED, CHAOS_FAULT_RATE): fail before it runs (S3,
MongoDB or DynamoDB refusing), or run and then fail (a crash between two steps of an image: stored but not
recorded, recorded but not counted, ...). Queue sends may also be repeated (duplicate deliveries). The upload
route's own writes are left alone, so every request a client was told about exists whole."""

from __future__ import annotations

import functools
import os
import random
import threading
from collections.abc import Callable, Sequence
from typing import Any

from botocore.exceptions import ClientError
from pymongo.errors import AutoReconnect

# port -> (methods, the error that port raises)
PORTS: dict[str, tuple[tuple[str, ...], Callable[[], Exception]]] = {
    "processed": (("put", "put_stream"), lambda: ClientError({"Error": {"Code": "ServiceUnavailable"}}, "PutObject")),
    "uploads": (("get_range",), lambda: ClientError({"Error": {"Code": "SlowDown"}}, "GetObject")),
    "catalog": (
        ("record_image", "add_products", "finalise", "claim_webhook", "record_webhook", "products"),
        lambda: AutoReconnect("chaos: MongoDB connection lost"),
    ),
    "ledger": (
        ("count", "counts", "fail"),
        lambda: ClientError({"Error": {"Code": "ProvisionedThroughputExceededException"}}, "TransactWriteItems"),
    ),
}


class Chaos:
    def __init__(self, seed: int, rate: float) -> None:
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        self.rate = rate

    def roll(self) -> float:
        with self._lock:
            return self._random.random()


class FaultyPort:
    def __init__(self, real: Any, methods: Sequence[str], error: Callable[[], Exception], chaos: Chaos) -> None:
        self._real, self._methods, self._error, self._chaos = real, set(methods), error, chaos

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._real, name)
        if name not in self._methods:
            return attribute
        chaos, error = self._chaos, self._error

        def faulty(*args: Any, **kwargs: Any) -> Any:
            roll = chaos.roll()
            if roll < chaos.rate / 2:
                raise error()
            result = attribute(*args, **kwargs)
            if roll < chaos.rate:
                raise RuntimeError(f"chaos: crashed after {name}")
            return result

        return faulty


class FaultyQueue:
    """Sends fail, crash after sending, or send twice; chunk messages (the upload route's fan-out) are spared."""

    def __init__(self, real: Any, chaos: Chaos) -> None:
        self._real, self._chaos = real, chaos

    def send(self, bodies: Sequence[str]) -> None:
        if any('"type":"chunk"' in body for body in bodies):
            return self._real.send(bodies)
        roll = self._chaos.roll()
        if roll < self._chaos.rate / 2:
            raise ClientError({"Error": {"Code": "ServiceUnavailable"}}, "SendMessageBatch")
        self._real.send(bodies)
        if roll < self._chaos.rate:
            raise RuntimeError("chaos: crashed after sending")
        if roll < 2 * self._chaos.rate:
            self._real.send(bodies[: max(1, len(bodies) // 3)])  # duplicates


@functools.cache
def _chaos() -> Chaos:
    """One per process (a local-cloud execution environment), shared by every adapter its functions build."""
    return Chaos(int(os.environ["CHAOS_SEED"]), float(os.environ.get("CHAOS_FAULT_RATE", "0.03")))


def inject(name: str, adapter: Any) -> Any:
    """The hook: each adapter a function's root is built with, by port name -> the one it uses."""
    if name == "queue":
        return FaultyQueue(adapter, _chaos())
    if name in PORTS:
        methods, error = PORTS[name]
        return FaultyPort(adapter, methods, error, _chaos())
    return adapter
