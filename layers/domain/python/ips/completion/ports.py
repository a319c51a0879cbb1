"""What completing a request and delivering its webhook need from outside: the receivers' health, the tenants'
secret generations, the poster, and the bundles the notify and webhook functions' roots build."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

from ips.completion.policy import RetryPolicy, WebhookPolicy
from ips.shared.output_links import OutputLinks
from ips.shared.ports import Catalog, Clock, Ledger, TaskQueue, UploadStore
from ips.shared.quotas import Allowance

if TYPE_CHECKING:  # tenant_secrets reads the generations port below
    from ips.completion.tenant_secrets import TenantSecrets


class Receivers(Protocol):
    """Each tenant's webhook receivers (by tenant and origin): how many attempts failed in a row, and until when
    its deliveries wait. One tenant's dead receiver is tried once per pause, never once per pending webhook."""

    def admit(self, receiver: str, now: datetime, probe_s: float) -> datetime | None:
        """None when an attempt may go to the receiver now: it has not failed, or its pause is over and this
        caller took the one attempt that tries it again (the others wait `probe_s` for its answer). Otherwise
        until when to wait."""
        ...

    def failed(self, receiver: str, now: datetime, policy: RetryPolicy) -> datetime:
        """Count a failure in a row: attempts to it wait `policy.delay(failures)` from now. Until when."""
        ...

    def answered(self, receiver: str) -> None:
        """It answered (delivered): its failures are forgotten."""
        ...


@dataclass(frozen=True)
class SecretGeneration:
    """Which of a tenant's derived webhook secrets signs: `generation` now, `previous_generation` beside it until
    `previous_until` (the rotation window)."""

    generation: int = 0
    rotated_at: datetime | None = None
    previous_generation: int | None = None
    previous_until: datetime | None = None


class SecretGenerations(Protocol):
    def current(self, tenant: str) -> SecretGeneration:
        """Generation 0 for a tenant that never rotated."""
        ...

    def rotate(self, tenant: str, now: datetime, window_s: int) -> SecretGeneration:
        """Move to the next generation atomically; the one replaced signs until now + window_s."""
        ...


class WebhookPoster(Protocol):
    def post(self, url: str, body: bytes, headers: Mapping[str, str], timeout: float | None = None) -> int:
        """POST once; `timeout` (seconds) shortens the poster's own whole-request limit, never lengthens it."""
        ...


@dataclass(frozen=True)
class CompletionPorts:
    """What completing a request needs: its products and counter, where the output CSV goes, the tenant's
    allowance (its images leave flight), and the webhook queue."""

    catalog: Catalog
    ledger: Ledger
    uploads: UploadStore
    clock: Clock
    allowance: Allowance
    webhooks: TaskQueue


@dataclass(frozen=True)
class WebhookPorts:
    """What an attempt of an ended request's webhook needs (the webhook function)."""

    catalog: Catalog
    receivers: Receivers  # each tenant's receivers: paused after failures
    secrets: TenantSecrets
    poster: WebhookPoster
    links: OutputLinks
    queue: TaskQueue  # the webhook queue: the next wake-up of a delivery not done yet
    clock: Clock
    policy: WebhookPolicy  # the backoff, the cap on attempts, one POST's limit, the claim's lease, the window
