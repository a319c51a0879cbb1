"""Run a function's handler the way Lambda calls it: an event, a context, a JSON result.

Lambda never runs two invocations in one execution environment at once, and handlers rely on it: powertools'
resolver keeps the current event in class-level state, and a module's clients and caches are the
environment's. So here too an environment serves one invocation at a time:

- `FunctionPool` (the local cloud): execution environments are child processes, each importing the handler
  once (a warm container) and running one invocation at a time; concurrent invocations get more
  environments, up to a cap. Processes also put compression on every core (Pillow's encoder holds the GIL).
  A function's timeout is reported, not enforced: on a shared, loaded machine a kill would only turn slowness
  into redeliveries.
- `LocalFunction` (in-process test tiers, which reach into the handlers' context): a single environment in
  this process; concurrent invocations wait their turn."""

from __future__ import annotations

import contextlib
import importlib
import json
import logging
import multiprocessing
import os
import signal
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Protocol

from infra.topology import Function

logger = logging.getLogger("localcloud.lambda")
Handler = Callable[[dict[str, Any], Any], Any]
# What the handlers import (libraries, the domain, the runtime glue; never the handler modules, which read the
# environment when imported): loaded once by the fork server, so a new environment does not import them again.
PRELOAD = (
    "boto3",
    "botocore.session",
    "pymongo",
    "PIL.Image",
    "pydantic",
    "aws_lambda_powertools",
    "aws_lambda_powertools.event_handler",
    "aws_lambda_powertools.utilities.batch",
    "ips_runtime.api",
    "ips_runtime.roots",
    "ips.completion.service",
    "ips.intake.service",
    "ips.expansion.service",
    "ips.processing.image",
    "ips.status.service",
)


@dataclass
class LambdaContext:
    """The attributes of Lambda's context object that handlers and powertools read."""

    function_name: str
    memory_limit_in_mb: int
    timeout_s: int
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    function_version: str = "$LATEST"
    log_group_name: str = ""
    log_stream_name: str = "local"
    _started: float = field(default_factory=time.monotonic)

    @property
    def invoked_function_arn(self) -> str:
        return f"arn:aws:lambda:us-east-1:123456789012:function:{self.function_name}"

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._started + self.timeout_s - time.monotonic()) * 1000))


class Invocable(Protocol):
    """What the gateway and the event-source runners call."""

    spec: Function

    def invoke(self, event: dict[str, Any]) -> Any: ...


class InvocationError(Exception):
    """The handler raised (in its environment); the message carries the remote type and traceback."""


def _load_handler(spec: Function) -> Handler:
    return getattr(importlib.import_module(spec.module), spec.entry_point)


class LocalFunction:
    """A function of the topology as one environment in this process: imported once, one invocation at a time."""

    def __init__(self, spec: Function) -> None:
        self.spec = spec
        self._handler = _load_handler(spec)
        self._lock = threading.Lock()
        self.invocations = 0

    def invoke(self, event: dict[str, Any]) -> Any:
        with self._lock:
            self.invocations += 1
            context = LambdaContext(self.spec.name, self.spec.memory_mb, self.spec.timeout_s)
            started = time.monotonic()
            # The event goes through JSON as it would over the wire: no Python objects leak into the handler.
            result = self._handler(json.loads(json.dumps(event)), context)
            elapsed = time.monotonic() - started
        if elapsed > self.spec.timeout_s:
            logger.warning("%s ran %.1fs, past its %ss timeout", self.spec.name, elapsed, self.spec.timeout_s)
        return result


# -- execution environments in child processes -------------------------------------------------------------


def _serve(
    connection: Connection,
    spec: Function,
    environment: dict[str, str],
    setup: str | None,
    stdout_path: str | None,
) -> None:
    """The environment's main loop (in the child): import the handler once, then one invocation at a time."""
    # Ctrl-C reaches every process of the terminal's group: an environment ends when the local cloud stops it
    # (None, or its pipe closing), not with a KeyboardInterrupt traceback of its own.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    os.environ.clear()
    os.environ.update(environment)
    if stdout_path:
        # The function's stdout (its log lines, and powertools' metric lines when enabled) goes where Lambda's
        # would go to CloudWatch: a log file, not the console of whoever started the cloud.
        descriptor = os.open(stdout_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(descriptor, 1)
        os.close(descriptor)
    try:
        module = importlib.import_module(spec.module)
        if setup:  # before the entry point is looked up, so that the hook may wrap it too
            module_name, _, name = setup.partition(":")
            getattr(importlib.import_module(module_name), name)(module)
        handler = getattr(module, spec.entry_point)
    except BaseException:
        connection.send(("error", traceback.format_exc()))
        return
    connection.send(("ready", os.getpid()))
    while True:
        try:
            message = connection.recv()
        except EOFError:
            return
        if message is None:
            return
        context = LambdaContext(spec.name, spec.memory_mb, spec.timeout_s)
        try:
            result = handler(json.loads(message), context)
            reply: tuple[str, Any] = ("ok", json.dumps(result))
        except Exception:
            reply = ("error", traceback.format_exc())
        connection.send(reply)


def _context() -> multiprocessing.context.BaseContext:
    # A fork server: forked from a clean single-threaded process (never from this one, which runs threads),
    # with the heavy imports done once.
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(list(PRELOAD))
    return context


class ProcessEnvironment:
    """One execution environment: a child process running `_serve`."""

    def __init__(
        self, spec: Function, environment: Mapping[str, str], setup: str | None, stdout_path: Path | None
    ) -> None:
        self.spec = spec
        context = _context()
        self._connection, child = context.Pipe()
        self.process = context.Process(
            target=_serve,
            args=(child, spec, dict(environment), setup, str(stdout_path) if stdout_path else None),
            name=f"lambda-{spec.name}",
            daemon=True,
        )
        self.process.start()
        child.close()
        if not self._connection.poll(120):
            self.stop()
            raise RuntimeError(f"{spec.name}: the execution environment did not start")
        kind, detail = self._connection.recv()
        if kind != "ready":
            self.stop()
            raise RuntimeError(f"{spec.name}: the execution environment failed to start:\n{detail}")

    @property
    def pid(self) -> int:
        return self.process.pid or 0

    def invoke(self, payload: str) -> Any:
        self._connection.send(payload)
        try:
            kind, detail = self._connection.recv()
        except EOFError:
            self.stop()
            raise InvocationError(f"{self.spec.name}: the execution environment exited") from None
        if kind == "error":
            raise InvocationError(f"{self.spec.name} raised:\n{detail}")
        return json.loads(detail)

    @property
    def alive(self) -> bool:
        return self.process.is_alive()

    def stop(self) -> None:
        with contextlib.suppress(OSError, ValueError):  # already gone
            self._connection.send(None)
        self.process.join(timeout=5)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(timeout=5)
        self._connection.close()


class FunctionPool:
    """A function's execution environments: each serves one invocation at a time; a concurrent invocation takes
    an idle one or starts another, up to `max_environments` (then it waits, as a throttled invoke retries)."""

    def __init__(
        self,
        spec: Function,
        environment: Mapping[str, str],
        *,
        max_environments: int,
        setup: str | None = None,
        stdout_path: Path | None = None,
    ) -> None:
        self.spec = spec
        self.max_environments = max(1, max_environments)
        self._environment = dict(environment)
        self._setup, self._stdout_path = setup, stdout_path
        self._idle: list[ProcessEnvironment] = []
        self._all: list[ProcessEnvironment] = []
        self._starting = 0
        self._available = threading.Condition()
        self._closed = False
        self.invocations = 0

    def warm(self, count: int) -> None:
        """Start `count` environments now (in parallel), as provisioned concurrency would."""
        missing = min(count, self.max_environments) - len(self._all)
        if missing > 0:
            with ThreadPoolExecutor(missing) as starting:  # list(): an environment that fails to start raises here
                list(starting.map(lambda _: self._warm_one(), range(missing)))

    def _warm_one(self) -> None:
        with self._available:
            self._starting += 1
        environment = self._start()
        with self._available:
            self._idle.append(environment)
            self._available.notify()

    def pids(self) -> list[int]:
        with self._available:
            return [environment.pid for environment in self._all]

    def invoke(self, event: dict[str, Any]) -> Any:
        environment = self._acquire()
        self.invocations += 1
        started = time.monotonic()
        try:
            return environment.invoke(json.dumps(event))
        finally:
            elapsed = time.monotonic() - started
            if elapsed > self.spec.timeout_s:
                logger.warning("%s ran %.1fs, past its %ss timeout", self.spec.name, elapsed, self.spec.timeout_s)
            self._release(environment)

    def _acquire(self) -> ProcessEnvironment:
        with self._available:
            while True:
                if self._closed:
                    raise InvocationError(f"{self.spec.name}: the local cloud is stopping")
                if self._idle:
                    return self._idle.pop()
                if len(self._all) + self._starting < self.max_environments:
                    self._starting += 1
                    break
                self._available.wait()
        return self._start()

    def _start(self) -> ProcessEnvironment:
        """Start an environment for a slot already reserved in `_starting`."""
        try:
            environment = ProcessEnvironment(self.spec, self._environment, self._setup, self._stdout_path)
        except BaseException:
            with self._available:
                self._starting -= 1
                self._available.notify()
            raise
        with self._available:
            self._starting -= 1
            self._all.append(environment)
        return environment

    def _release(self, environment: ProcessEnvironment) -> None:
        with self._available:
            if environment.alive and not self._closed:
                self._idle.append(environment)
            elif environment in self._all:  # it crashed: the next invocation gets a fresh one
                self._all.remove(environment)
            self._available.notify()

    def stop(self) -> None:
        with self._available:
            self._closed = True
            environments, self._idle, self._all = list(self._all), [], []
            self._available.notify_all()
        for environment in environments:
            environment.stop()
