"""The local AWS emulator: moto's server, with DynamoDB made atomic and its transactions cheap.

- DynamoDB evaluates a condition and applies its write atomically; moto's threaded server does not (two
  concurrent `remaining > 1` updates can both pass). The ledger relies on that atomicity, so DynamoDB (and its
  streams) requests are served one at a time. Every other service stays concurrent: SQS long polls block no one.
- moto's TransactWriteItems deep-copies every table it touches before each transaction, to roll back on a
  cancellation: O(table) per call, so counting images slowed down as the table of counted-image markers grew
  (185 ms per image at a few thousand markers), and the rollback swapped the table's stream shard under any
  open stream iterator. Here a transaction snapshots only the items it touches and the stream's length, and a
  cancellation puts those items back and drops the stream records the partial writes added.
- moto keeps every DynamoDB stream shard iterator it ever handed out (RecentIterators): here only the latest.
- moto serves a presigned URL after its expiry; S3 does not. Presigned (SigV4 query) requests past
  X-Amz-Date + X-Amz-Expires are refused here with S3's 403 (the output CSV's links are meant to expire).

- SQS: see localcloud.emulator_sqs (per-message costs independent of the queue's length).
- With --state-dir, S3, SQS and DynamoDB survive restarts (localcloud.emulator_state).

Run as `python -m localcloud.aws_emulator --port 4566 [--state-dir DIR]` (binds 127.0.0.1 only). It ignores
SIGINT (Ctrl-C reaches the whole process group; the local cloud stops it last, with SIGTERM, after its
functions) and takes a last snapshot on SIGTERM."""

from __future__ import annotations

import argparse
import copy
import logging
import signal
import threading
import types
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import parse_qs

from moto.dynamodb import models as dynamodb_models
from moto.dynamodb.models import DynamoDBBackend
from moto.dynamodbstreams.models import DynamoDBStreamsBackend
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from werkzeug.serving import run_simple

from localcloud import emulator_sqs
from localcloud.emulator_state import PersistentState

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
_moto_transact_write_items = DynamoDBBackend.transact_write_items
_moto_streams_backend_init = DynamoDBStreamsBackend.__init__
MAX_SHARD_ITERATORS = 1000
# moto's own backup copy of whole tables, made a no-op: the items are snapshotted below instead.
_copy_without_tables = types.SimpleNamespace(
    deepcopy=lambda value, memo=None: value if isinstance(value, dynamodb_models.Table) else copy.deepcopy(value, memo)
)


def _transact_write_items(self: DynamoDBBackend, transact_items: list[dict[str, Any]]) -> None:
    touched: list[tuple[str, dict[str, Any], Any]] = []
    stream_lengths: dict[str, int] = {}
    for entry in transact_items:
        operation, details = next(iter(entry.items()))
        table = self.tables.get(details.get("TableName"))
        if table is None:
            continue
        if operation == "Put":
            key = {name: details["Item"][name] for name in (table.hash_key_attr, table.range_key_attr) if name}
        else:
            key = details["Key"]
        touched.append((table.name, key, copy.deepcopy(self.get_item(table.name, key))))
        if table.stream_shard is not None:
            stream_lengths.setdefault(table.name, len(table.stream_shard.items))
    real_copy, dynamodb_models.copy = dynamodb_models.copy, _copy_without_tables
    try:
        _moto_transact_write_items(self, transact_items)
    except Exception:
        for table_name, key, before in reversed(touched):
            if before is None:
                if self.get_item(table_name, key) is not None:
                    self.delete_item(table_name, key)
            else:
                self.put_item(table_name, before.to_json()["Attributes"])
        for table_name, length in stream_lengths.items():
            shard = self.tables[table_name].stream_shard
            del shard.items[length:]
        raise
    finally:
        dynamodb_models.copy = real_copy


class RecentIterators(dict[str, Any]):
    """moto keeps every shard iterator it hands out, forever: two per poll of the stream, 2 KB each pickled. A
    local cloud polling its stream 4 times a second held 2,174 of them after 8 minutes, 53% of every snapshot,
    and would hold 700,000 after a day. DynamoDB expires an iterator 15 minutes after handing it out; here the
    oldest are dropped beyond the most a consumer could still be holding."""

    def __setitem__(self, key: str, value: Any) -> None:
        super().__setitem__(key, value)
        while len(self) > MAX_SHARD_ITERATORS:
            del self[next(iter(self))]  # dicts keep insertion order: the oldest first


def _streams_backend_init(self: DynamoDBStreamsBackend, region_name: str, account_id: str) -> None:
    _moto_streams_backend_init(self, region_name, account_id)
    self.shard_iterators = RecentIterators()


class AtomicDynamoDB:
    def __init__(self, app: WsgiApp) -> None:
        self.app = app
        self.lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("HTTP_X_AMZ_TARGET", "").startswith("DynamoDB"):
            with self.lock:
                return list(self.app(environ, start_response))
        return self.app(environ, start_response)


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
    parser.add_argument("--state-dir", type=Path, help="keep S3, SQS and DynamoDB here across restarts")
    args = parser.parse_args(argv)
    DynamoDBBackend.transact_write_items = _transact_write_items  # type: ignore[method-assign]
    DynamoDBStreamsBackend.__init__ = _streams_backend_init  # type: ignore[method-assign]
    emulator_sqs.install()
    app: WsgiApp = AtomicDynamoDB(DomainDispatcherApplication(create_backend_app))
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
