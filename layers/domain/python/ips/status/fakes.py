"""Fakes for the status use case: `StatusFakes`, which builds its ports from the shared fakes (its ports are all
shared ones; test code only: see ips/shared/fakes.py)."""

from __future__ import annotations

from dataclasses import dataclass

from ips.shared.fakes import SharedFakes
from ips.status.ports import StatusPorts


@dataclass
class StatusFakes(SharedFakes):
    """What reading a request's status runs over: the catalog, the ledger and links to the output CSV."""

    def status(self) -> StatusPorts:
        return StatusPorts(self.catalog, self.ledger, self.links())
