"""Webhooks signed per the Standard Webhooks spec, delivered with exponential backoff under one message id."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from standardwebhooks import Webhook

from ips.fetching import FetchError

SECRET_PREFIX = "whsec_"  # noqa: S105 - the secret format's prefix, not a secret


class WebhookPoster(Protocol):
    def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> int: ...


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 5
    first_delay: float = 1.0
    factor: float = 2.0
    max_delay: float = 30.0

    def delays(self) -> list[float]:
        """Pause before each retry: first_delay, then multiplied by factor, capped at max_delay."""
        return [min(self.first_delay * self.factor**n, self.max_delay) for n in range(self.attempts - 1)]


@dataclass(frozen=True)
class Delivery:
    delivered: bool
    attempts: int
    last_status: int | None
    last_error: str | None


class WebhookSigner:
    """Signs with each of the given secrets (the spec's space-separated list): during a rotation both the old
    and the new secret sign, so a receiver holding either verifies. The library signs one secret at a time."""

    def __init__(self, secrets: Sequence[str]) -> None:
        if not secrets or not all(secret.startswith(SECRET_PREFIX) for secret in secrets):
            raise ValueError("webhook secrets must look like whsec_<base64>")
        self._signers = [Webhook(secret) for secret in secrets]

    def headers(self, message_id: str, timestamp: int, body: bytes) -> dict[str, str]:
        moment, data = datetime.fromtimestamp(timestamp, UTC), body.decode()
        signatures = " ".join(signer.sign(message_id, moment, data) for signer in self._signers)
        return {
            "content-type": "application/json",
            "webhook-id": message_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": signatures,
        }


def encode_event(event_type: str, data: Mapping[str, Any], timestamp: int) -> bytes:
    payload = {
        "type": event_type,
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(timestamp)),
        "data": data,
    }
    return json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()


def deliver(
    poster: WebhookPoster,
    signer: WebhookSigner,
    url: str,
    message_id: str,
    body: bytes,
    retry: RetryPolicy = RetryPolicy(),
    *,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.time,
) -> Delivery:
    """POST until a 2xx answer or the retry budget is spent. Every attempt carries the same webhook-id (so the
    receiver can deduplicate) and a fresh timestamp and signature (so it is not rejected as stale)."""
    status: int | None = None
    error: str | None = None
    delays = retry.delays()
    for attempt in range(1, retry.attempts + 1):
        headers = signer.headers(message_id, int(clock()), body)
        try:
            status = poster.post(url, body, headers)
            error = None if 200 <= status < 300 else f"HTTP {status}"
        except FetchError as exc:
            status, error = None, f"{exc.code}: {exc}"
            if exc.permanent:
                return Delivery(False, attempt, status, error)
        if error is None:
            return Delivery(True, attempt, status, None)
        if attempt <= len(delays):
            sleep(delays[attempt - 1])
    return Delivery(False, retry.attempts, status, error)
