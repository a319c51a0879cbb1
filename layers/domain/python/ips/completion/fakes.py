"""Fakes for the completion use case: the receivers' health, the tenants' secret generations, a webhook receiver,
and `CompletionFakes`, which adds them to the shared fakes and builds the notify and webhook functions' ports (test
code only: see ips/shared/fakes.py)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from ips.completion.policy import RetryPolicy, WebhookPolicy
from ips.completion.ports import (
    CompletionPorts,
    Receivers,
    SecretGeneration,
    SecretGenerations,
    WebhookPorts,
    WebhookPoster,
)
from ips.completion.tenant_secrets import TenantSecrets
from ips.shared.fakes import SharedFakes
from ips.shared.fetching import FetchError

MASTER_SECRET = "whsec_" + "dW5pdC10ZXN0cy1zaWduaW5nLWtleS0zMi1ieXRlcw=="  # base64 of 32 bytes


class MemoryReceivers:
    """Each receiver's failures in a row and pause (the MongoDB adapter's contract)."""

    def __init__(self) -> None:
        self.states: dict[str, tuple[int, datetime]] = {}  # receiver -> (failures, until)

    def admit(self, receiver: str, now: datetime, probe_s: float) -> datetime | None:
        if receiver not in self.states:
            return None
        failures, until = self.states[receiver]
        if until > now:
            return until
        self.states[receiver] = (failures, now + timedelta(seconds=probe_s))  # this caller tries it again
        return None

    def failed(self, receiver: str, now: datetime, policy: RetryPolicy) -> datetime:
        failures = self.states.get(receiver, (0, now))[0] + 1
        until = now + timedelta(seconds=policy.delay(failures))
        self.states[receiver] = (failures, until)
        return until

    def answered(self, receiver: str) -> None:
        self.states.pop(receiver, None)


class MemorySecretGenerations:
    def __init__(self) -> None:
        self.states: dict[str, SecretGeneration] = {}

    def current(self, tenant: str) -> SecretGeneration:
        return self.states.get(tenant, SecretGeneration())

    def rotate(self, tenant: str, now: datetime, window_s: int) -> SecretGeneration:
        state = self.current(tenant)
        self.states[tenant] = new = SecretGeneration(
            state.generation + 1, now, state.generation, now + timedelta(seconds=window_s)
        )
        return new


class MemoryPoster:
    """A webhook receiver: answers `statuses` in turn (then the last one again; a FetchError is raised, as a
    receiver that never answers makes the client raise) and keeps what it was sent, and each POST's timeout."""

    def __init__(self, *statuses: int | FetchError) -> None:
        self.statuses = list(statuses) or [204]
        self.posts: list[tuple[str, bytes, dict[str, str]]] = []
        self.timeouts: list[float | None] = []

    def post(self, url: str, body: bytes, headers: Any, timeout: float | None = None) -> int:
        self.posts.append((url, body, dict(headers)))
        self.timeouts.append(timeout)
        answer = self.statuses[min(len(self.posts), len(self.statuses)) - 1]
        if isinstance(answer, FetchError):
            raise answer
        return answer


@dataclass
class CompletionFakes(SharedFakes):
    """What ending a request and delivering its webhook run over: the receivers, the tenants' secret generations and
    the receiver (`poster`) beside the shared stores."""

    receivers: MemoryReceivers = field(default_factory=MemoryReceivers)
    secret_generations: MemorySecretGenerations = field(default_factory=MemorySecretGenerations)
    poster: MemoryPoster = field(default_factory=MemoryPoster)
    webhook_policy: WebhookPolicy = field(default_factory=WebhookPolicy)

    def completion(self) -> CompletionPorts:
        return CompletionPorts(
            self.catalog, self.ledger, self.uploads, self.clock, self.allowance(), self.webhook_queue
        )

    def webhooks(self, master: str | None = MASTER_SECRET) -> WebhookPorts:
        secrets = TenantSecrets(master, self.secret_generations, self.clock)
        return WebhookPorts(
            self.catalog,
            self.receivers,
            secrets,
            self.poster,
            self.links(),
            self.webhook_queue,
            self.clock,
            self.webhook_policy,
        )


# Each fake is its port: mypy checks these assignments, so a fake missing a member of its Protocol or with a
# different signature is a type error here (make lint), not a surprise in a test.
_receivers: type[Receivers] = MemoryReceivers
_secret_generations: type[SecretGenerations] = MemorySecretGenerations
_poster: type[WebhookPoster] = MemoryPoster
