"""What reading a request's status needs: the bundle the status function's root builds (StatusPorts)."""

from __future__ import annotations

from dataclasses import dataclass

from ips.shared.output_links import OutputLinks
from ips.shared.ports import Catalog, Ledger


@dataclass(frozen=True)
class StatusPorts:
    """What reading a request's status needs: the catalog, the counter, and links to the output CSV."""

    catalog: Catalog
    ledger: Ledger
    links: OutputLinks
