"""What accepting a request needs from outside, beyond the shared stores: the webhook URL check, and the bundle
the upload and ingest functions' roots build (IntakePorts)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ips.intake.policy import IntakePolicy
from ips.shared.failing import FailPorts
from ips.shared.ports import Catalog, Clock, Ledger, TaskQueue, UploadStore
from ips.shared.quotas import Allowance

UrlCheck = Callable[[str], None]  # raises ips.shared.fetching.FetchError for a URL we must not call (a webhook's)


@dataclass(frozen=True)
class IntakePorts:
    """What accepting a request and fanning its CSV out needs (the upload and ingest functions)."""

    uploads: UploadStore
    catalog: Catalog
    ledger: Ledger
    chunks: TaskQueue  # the chunks queue: the fan-out's one message per chunk (the expand function's)
    allowance: Allowance
    clock: Clock
    policy: IntakePolicy  # CSV limits, chunk size, upload expiry, deadlines

    @property
    def failing(self) -> FailPorts:
        return FailPorts(self.catalog, self.ledger, self.clock)
