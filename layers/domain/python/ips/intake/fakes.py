"""Fakes for the intake use case: the webhook URL check, and `IntakeFakes`, which builds its ports from the shared
fakes (test code only: see ips/shared/fakes.py)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ips.intake.policy import IntakePolicy
from ips.intake.ports import IntakePorts
from ips.shared.fakes import SharedFakes


def refuse_nothing(url: str) -> None:
    """A webhook URL check that lets every URL through."""


@dataclass
class IntakeFakes(SharedFakes):
    """What accepting a request runs over: the uploads bucket, the catalog, the ledger, the chunks queue, the
    tenants' allowance."""

    intake_policy: IntakePolicy = field(default_factory=IntakePolicy)

    def intake(self) -> IntakePorts:
        return IntakePorts(
            self.uploads, self.catalog, self.ledger, self.chunks_queue, self.allowance(), self.clock, self.intake_policy
        )
