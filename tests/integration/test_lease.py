"""The reconciler's lease on DynamoDB (ips_adapters.lease) against DynamoDB Local (what serves the local cloud's
DynamoDB): of many rounds starting at once exactly one holds it; only its holder gives it back;
it runs out at its time."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime, timedelta

import boto3
from botocore.config import Config

from ips_adapters.lease import DynamoLease
from localcloud.provision import requests_table

NOW = datetime(2026, 12, 1, tzinfo=UTC)


def lease_on(endpoint: str) -> DynamoLease:
    client = boto3.client("dynamodb", endpoint_url=endpoint, config=Config(max_pool_connections=20))
    table = f"lease-{uuid.uuid4().hex[:8]}"
    requests_table(table, client)
    return DynamoLease(client, table)


def test_of_rounds_starting_at_once_exactly_one_holds_the_lease(dynamodb_local_endpoint: str) -> None:
    lease = lease_on(dynamodb_local_endpoint)
    won: list[str] = []
    start = threading.Barrier(8)

    def start_round(holder: str) -> None:
        start.wait()
        if lease.acquire("reconciler", holder, NOW, NOW + timedelta(seconds=300)):
            won.append(holder)

    threads = [threading.Thread(target=start_round, args=(f"round-{n}",)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(won) == 1


def test_only_the_holder_gives_it_back_and_it_runs_out(dynamodb_local_endpoint: str) -> None:
    lease = lease_on(dynamodb_local_endpoint)
    until = NOW + timedelta(seconds=300)
    assert lease.acquire("reconciler", "first", NOW, until)
    lease.release("reconciler", "second")  # not its lease: nothing changes
    assert not lease.acquire("reconciler", "second", NOW + timedelta(seconds=1), until)
    assert lease.acquire("reconciler", "second", until + timedelta(seconds=1), until + timedelta(seconds=300))
    lease.release("reconciler", "first")  # the first outlived its lease: it must not end the second's
    assert not lease.acquire("reconciler", "third", until + timedelta(seconds=2), until + timedelta(seconds=300))
    lease.release("reconciler", "second")
    assert lease.acquire("reconciler", "third", until + timedelta(seconds=3), until + timedelta(seconds=300))
