"""When the reconciler counts work as lost and how it mends it: the stall that re-queues a request's pending work,
how often a dead letter is put back, its rounds' lease and schedule, and the webhook window it wakes lost
deliveries in (completion's)."""

from __future__ import annotations

from dataclasses import dataclass

from ips.completion.policy import WebhookPolicy


@dataclass(frozen=True)
class ReconcilePolicy:
    stall_after_s: float = 900  # no image counted for this long: the reconciler re-queues the pending ones
    # A dead letter whose request is still before its deadline is put back on its queue this many times at most.
    dead_letter_redrives: int = 3
    # A round holds its lease at most this long (the function's timeout): a round that died frees it.
    lease_s: float = 300
    # The schedule: rounds further apart than twice this (found every store answering) had an outage (or no round
    # ran) between them, and the open requests' deadlines move by the time in between.
    interval_s: float = 300
    webhook_resend_window_s: float = WebhookPolicy.resend_window_s  # a lost webhook is woken within it
