"""Reconciler rounds run one at a time (issue 21): a round that starts while another holds the lease does nothing;
the lease is given back at the round's end, and a holder that died frees it after the lease's time."""

from __future__ import annotations

from datetime import timedelta

from ips.reconcile.fakes import ReconcileFakes
from ips.reconcile.service import ROUND_LEASE, reconcile


def test_a_round_while_another_runs_is_skipped_and_does_nothing() -> None:
    fakes = ReconcileFakes()
    fakes.dead_images.put("not a task")  # what a round would drain
    assert fakes.lease.acquire(ROUND_LEASE, "the running round", fakes.now, fakes.now + timedelta(seconds=300))
    report = reconcile(fakes.reconcile())
    assert report.skipped
    assert fakes.dead_images.deleted == [] and len(fakes.dead_images.letters) == 1  # before: drained beside it


def test_a_round_gives_the_lease_back_so_the_next_one_runs() -> None:
    fakes = ReconcileFakes()
    first = reconcile(fakes.reconcile())
    fakes.dead_images.put("not a task")
    second = reconcile(fakes.reconcile())
    assert not first.skipped and not second.skipped
    assert (second.dead_dropped, len(fakes.dead_images.deleted)) == (1, 1)
    assert fakes.lease.held == {}


def test_a_lease_whose_holder_died_runs_out_after_the_function_timeout() -> None:
    fakes = ReconcileFakes()
    lease_s = fakes.reconcile_policy.lease_s
    fakes.lease.acquire(ROUND_LEASE, "a round that was killed", fakes.now, fakes.now + timedelta(seconds=lease_s))
    fakes.now += timedelta(seconds=lease_s - 1)
    assert reconcile(fakes.reconcile()).skipped
    fakes.now += timedelta(seconds=2)
    assert not reconcile(fakes.reconcile()).skipped
