"""The local cloud's MongoDB (localcloud.servers.mongo_server, SecantusDB) as the functions reach it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pymongo import MongoClient, monitoring

from localcloud.servers import free_port, mongo_server


class _Writes(monitoring.CommandListener):
    def __init__(self) -> None:
        self.commands: list[dict[str, Any]] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if event.command_name in ("insert", "update"):
            self.commands.append(dict(event.command))

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


def test_writes_are_not_made_retryable_so_the_server_keeps_no_record_of_each(tmp_path: Path) -> None:
    # A retryable write (one with a txnNumber) is remembered by SecantusDB for 30 minutes, and every write walks
    # all it remembers: the cost of a write grew with the writes before it. A standalone server gets none.
    server = mongo_server(free_port(), tmp_path / "mongo", tmp_path / "logs")
    server.start()
    writes = _Writes()
    try:
        client: MongoClient[dict[str, Any]] = MongoClient(
            f"mongodb://127.0.0.1:{server.port}/?directConnection=true", event_listeners=[writes]
        )
        products = client["ips"]["products"]
        products.insert_one({"_id": "r:000000002", "images": [{"status": "PENDING"}]})
        products.update_one({"_id": "r:000000002", "images.0.status": "PENDING"}, {"$set": {"images.0.status": "OK"}})
        client.close()
    finally:
        server.stop()

    assert [command.get("txnNumber") for command in writes.commands] == [None, None]
