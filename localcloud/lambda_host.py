"""Run a function's handler in this process the way Lambda calls it: an event, a context, a JSON result."""

from __future__ import annotations

import importlib
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from infra.topology import Function

logger = logging.getLogger("localcloud.lambda")
Handler = Callable[[dict[str, Any], Any], Any]


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


class LocalFunction:
    """A function of the topology, imported once (like a warm container) and invoked in-process."""

    def __init__(self, spec: Function) -> None:
        self.spec = spec
        self._handler: Handler = getattr(importlib.import_module(spec.module), spec.entry_point)
        self._lock = threading.Lock()
        self.invocations = 0

    def invoke(self, event: dict[str, Any]) -> Any:
        context = LambdaContext(self.spec.name, self.spec.memory_mb, self.spec.timeout_s)
        with self._lock:
            self.invocations += 1
        started = time.monotonic()
        # The event goes through JSON as it would over the wire: no Python objects leak into the handler.
        result = self._handler(json.loads(json.dumps(event)), context)
        elapsed = time.monotonic() - started
        if elapsed > self.spec.timeout_s:
            logger.warning("%s ran %.1fs, past its %ss timeout", self.spec.name, elapsed, self.spec.timeout_s)
        return result
