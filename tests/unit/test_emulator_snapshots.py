"""The AWS emulator under a long run: snapshots hold every request while they pickle the whole state, so their
cadence follows their cost."""

from __future__ import annotations

from pathlib import Path

import pytest

from localcloud.emulator_state import SNAPSHOT_SHARE, PersistentState


def test_snapshots_wait_the_interval_while_cheap_and_longer_once_the_state_is_big(tmp_path: Path) -> None:
    state = PersistentState(lambda environ, start_response: [], tmp_path, interval_s=5.0)
    assert state.next_wait(0.01) == 5.0
    # 0.74 s: a 9.7 MB state (about 2,000 images) on a loaded machine; at 5 s it held requests 15% of the time.
    assert state.next_wait(0.74) == pytest.approx(0.74 / SNAPSHOT_SHARE)
    assert 0.74 / state.next_wait(0.74) <= SNAPSHOT_SHARE
