"""The local AWS emulator: moto's server for S3 and SQS (DynamoDB is DynamoDB Local's, localcloud.dynamodb_local).

- moto serves a presigned URL after its expiry; S3 does not. Presigned (SigV4 query) requests past
  X-Amz-Date + X-Amz-Expires are refused here with S3's 403 (the output CSV's links are meant to expire).
- SQS: see localcloud.emulator_sqs (per-message costs independent of the queue's length).
- With --state-dir, S3 and SQS survive restarts (localcloud.emulator_state).

Run as `python -m localcloud.aws_emulator --port 4566 [--state-dir DIR]` (binds 127.0.0.1 only). It ignores
SIGINT (Ctrl-C reaches the whole process group; the local cloud stops it last, with SIGTERM, after its
functions) and takes a last snapshot on SIGTERM."""

from __future__ import annotations

import argparse
import logging
import signal
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import parse_qs

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from werkzeug.serving import run_simple

from localcloud import emulator_sqs
from localcloud.emulator_state import PersistentState

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def _stop(signum: int, frame: Any) -> NoReturn:
    raise KeyboardInterrupt  # ends werkzeug's serve_forever; the last snapshot follows


EXPIRED = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>AccessDenied</Code>'
    b"<Message>Request has expired</Message></Error>"
)


def presigned_expired(query: str, now: datetime) -> bool:
    """True for a SigV4 presigned request whose validity (X-Amz-Date + X-Amz-Expires seconds) has passed."""
    values = parse_qs(query)
    if "X-Amz-Date" not in values or "X-Amz-Expires" not in values:
        return False
    try:
        signed = datetime.strptime(values["X-Amz-Date"][0], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
        return now > signed + timedelta(seconds=int(values["X-Amz-Expires"][0]))
    except ValueError:
        return True  # malformed: S3 refuses it too


class PresignedExpiry:
    def __init__(self, app: WsgiApp) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if presigned_expired(environ.get("QUERY_STRING", ""), datetime.now(UTC)):
            start_response(
                "403 Forbidden", [("Content-Type", "application/xml"), ("Content-Length", str(len(EXPIRED)))]
            )
            return [EXPIRED]
        return self.app(environ, start_response)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=4566)
    parser.add_argument("--state-dir", type=Path, help="keep S3 and SQS here across restarts")
    args = parser.parse_args(argv)
    emulator_sqs.install()
    app: WsgiApp = DomainDispatcherApplication(create_backend_app)
    state = PersistentState(app, args.state_dir) if args.state_dir else None
    if state is not None:
        state.load()
        state.start()
        app = state
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _stop)
    # No line per request (werkzeug's INFO): the pipeline makes dozens a second, and formatting and writing them
    # took 7% of the emulator's CPU. Errors still reach the log.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    try:
        run_simple("127.0.0.1", args.port, PresignedExpiry(app), threaded=True, request_handler=MotoRequestHandler)
    finally:
        if state is not None:
            state.stop()


if __name__ == "__main__":
    main()
