"""The local AWS emulator: moto's server, with DynamoDB requests made atomic.

DynamoDB evaluates a condition and applies its write atomically; moto's threaded server does not (two
concurrent `remaining > 1` updates can both pass). The ledger relies on that atomicity, so DynamoDB (and
its streams) requests are served one at a time here. Every other service stays concurrent, so SQS long polls
do not block anyone. Run as `python -m localcloud.aws_emulator --port 4566` (binds 127.0.0.1 only)."""

from __future__ import annotations

import argparse
import threading
from collections.abc import Callable, Iterable
from typing import Any

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from werkzeug.serving import run_simple

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class AtomicDynamoDB:
    def __init__(self, app: WsgiApp) -> None:
        self.app = app
        self.lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("HTTP_X_AMZ_TARGET", "").startswith("DynamoDB"):
            with self.lock:
                return list(self.app(environ, start_response))
        return self.app(environ, start_response)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=4566)
    args = parser.parse_args(argv)
    run_simple(
        "127.0.0.1",
        args.port,
        AtomicDynamoDB(DomainDispatcherApplication(create_backend_app)),
        threaded=True,
        request_handler=MotoRequestHandler,
    )


if __name__ == "__main__":
    main()
