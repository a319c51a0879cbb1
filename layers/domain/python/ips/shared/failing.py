"""Ending a request FAILED: what intake (a refused or expired upload, a failed fan-out) and the reconciler (a dead
chunk, a deadline) both do the same way, once, handing the request to completion through the notify path."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ips.shared.model import RequestStatus
from ips.shared.ports import Catalog, Clock, Ledger


@dataclass(frozen=True)
class FailPorts:
    """What ending a request FAILED needs."""

    catalog: Catalog
    ledger: Ledger
    clock: Clock  # when it ended: its completedAt


def fail_request(request_id: str, code: str, message: str, ports: FailPorts, **details: Any) -> bool:
    """End a request FAILED, once, and hand it to the notify path. True when this call ended it."""
    now = ports.clock()
    ended = ports.catalog.mark_failed(request_id, code, message, now, **details)
    # Also when the catalog had it FAILED already: a crash between the two steps is mended by the next call.
    record = ports.catalog.get(request_id)
    if record is not None and record.status is RequestStatus.FAILED:
        ports.ledger.fail(request_id, now)
    return ended
