"""Each tenant's own webhook signing secret (Standard Webhooks' per-endpoint model), derived from one master.

secret(tenant, generation) = whsec_ + base64(HMAC-SHA256(master key, "ips/webhook-secret/v1\\0" tenant \\0 generation)).
Only the master (Secrets Manager) and a generation number per tenant (MongoDB) are stored: a dump of the
database reveals no secret, nothing has to be backed up or encrypted beside the master, and rotating is a
counter increment. A tenant reads its secret and rotates it through the API; after a rotation the previous
secret still signs (beside the new one) for the rotation window, so receivers can switch without a gap."""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ips.completion.ports import SecretGeneration, SecretGenerations
from ips.completion.webhook import SECRET_PREFIX
from ips.shared.ports import Clock

DERIVATION_LABEL = b"ips/webhook-secret/v1"


class WebhookSecretMissing(RuntimeError):
    """The master secret is not configured: no tenant secret can be made."""


def derive_secret(master: str, tenant: str, generation: int) -> str:
    if not master.startswith(SECRET_PREFIX):
        raise ValueError("the master webhook secret must look like whsec_<base64>")
    key = base64.b64decode(master.removeprefix(SECRET_PREFIX) + "==")
    message = b"\0".join((DERIVATION_LABEL, tenant.encode(), str(generation).encode()))
    return SECRET_PREFIX + base64.b64encode(hmac.new(key, message, hashlib.sha256).digest()).decode()


@dataclass(frozen=True)
class TenantSecrets:
    """Every tenant's signing secrets: derived from `master` at the generation `generations` holds for it."""

    master: str | None
    generations: SecretGenerations
    clock: Clock
    rotation_window_s: int = 86_400  # how long a rotated-out secret still signs beside the new one

    def _master(self) -> str:
        if not self.master:
            raise WebhookSecretMissing("WEBHOOK_SECRET is not set")
        return self.master

    def signing_secrets(self, tenant: str, now: datetime) -> list[str]:
        """The secrets a webhook for `tenant` is signed with now: the current one, and the previous one while
        its rotation window lasts."""
        master, state = self._master(), self.generations.current(tenant)
        secrets = [derive_secret(master, tenant, state.generation)]
        if state.previous_generation is not None and state.previous_until is not None and now < state.previous_until:
            secrets.append(derive_secret(master, tenant, state.previous_generation))
        return secrets

    def document(self, tenant: str, state: SecretGeneration) -> dict[str, Any]:
        """What the API answers: the current secret, and until when the previous one still signs."""
        now = self.clock()
        previous_until = state.previous_until if state.previous_until and now < state.previous_until else None
        return {
            "secret": derive_secret(self._master(), tenant, state.generation),
            "generation": state.generation,
            "rotatedAt": _iso(state.rotated_at),
            "previousSecretValidUntil": _iso(previous_until),
        }

    def read(self, tenant: str) -> dict[str, Any]:
        return self.document(tenant, self.generations.current(tenant))

    def rotate(self, tenant: str) -> dict[str, Any]:
        """A new secret from now on; the one it replaces keeps signing for the rotation window (a rotation within
        the window of the last one ends that window: at most two secrets sign at once)."""
        self._master()  # refuse before changing anything
        state = self.generations.rotate(tenant, self.clock(), self.rotation_window_s)
        return self.document(tenant, state)


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat().replace("+00:00", "Z") if moment else None
