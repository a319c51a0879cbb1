"""The AWS emulator under a long run: snapshots hold every request while they pickle the whole state, so their
cadence follows their cost, and what is pickled does not grow with the time the cloud has been up."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
from moto.dynamodbstreams.models import DynamoDBStreamsBackend

from localcloud.aws_emulator import MAX_SHARD_ITERATORS, RecentIterators, _streams_backend_init
from localcloud.emulator_state import SNAPSHOT_SHARE, PersistentState


def test_snapshots_wait_the_interval_while_cheap_and_longer_once_the_state_is_big(tmp_path: Path) -> None:
    state = PersistentState(lambda environ, start_response: [], tmp_path, interval_s=5.0)
    assert state.next_wait(0.01) == 5.0
    # 0.74 s: a 9.7 MB state (about 2,000 images) on a loaded machine; at 5 s it held requests 15% of the time.
    assert state.next_wait(0.74) == pytest.approx(0.74 / SNAPSHOT_SHARE)
    assert 0.74 / state.next_wait(0.74) <= SNAPSHOT_SHARE


def test_the_emulator_keeps_only_the_latest_shard_iterators() -> None:
    """moto keeps every shard iterator it hands out (two per stream poll): they were half of every snapshot."""
    backend = DynamoDBStreamsBackend.__new__(DynamoDBStreamsBackend)
    _streams_backend_init(backend, "us-east-1", "123456789012")
    iterators = backend.shard_iterators
    assert isinstance(iterators, RecentIterators)
    for number in range(MAX_SHARD_ITERATORS + 500):
        iterators[f"iterator-{number}"] = number
    assert len(iterators) == MAX_SHARD_ITERATORS
    assert next(iter(iterators)) == "iterator-500" and f"iterator-{MAX_SHARD_ITERATORS + 499}" in iterators
    restored = pickle.loads(pickle.dumps(iterators))  # a snapshot keeps the bound
    restored["one-more"] = 0
    assert isinstance(restored, RecentIterators) and len(restored) == MAX_SHARD_ITERATORS
