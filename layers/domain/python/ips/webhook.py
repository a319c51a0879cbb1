"""Webhooks signed per the Standard Webhooks spec, delivered with exponential backoff under one message id."""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from standardwebhooks import Webhook
from tenacity import Retrying, retry_if_result, stop_after_attempt

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

    def delay(self, failed_attempts: int) -> float:
        """Pause after the n-th failed attempt: first_delay, then multiplied by factor, capped at max_delay."""
        return min(self.first_delay * self.factor ** (failed_attempts - 1), self.max_delay)

    def delays(self) -> list[float]:
        """Every pause of a delivery that uses all its attempts."""
        return [self.delay(n) for n in range(1, self.attempts)]


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
    attempts = itertools.count(1)
    refused = False  # a permanent failure (an address we must not call): no retry can help

    def post_once() -> Delivery:
        nonlocal refused
        attempt = next(attempts)
        headers = signer.headers(message_id, int(clock()), body)
        try:
            status = poster.post(url, body, headers)
        except FetchError as exc:
            refused = exc.permanent
            return Delivery(False, attempt, None, f"{exc.code}: {exc}")
        delivered = 200 <= status < 300
        return Delivery(delivered, attempt, status, None if delivered else f"HTTP {status}")

    retrying = Retrying(
        stop=stop_after_attempt(retry.attempts),
        wait=lambda state: retry.delay(state.attempt_number),
        retry=retry_if_result(lambda delivery: not delivery.delivered and not refused),
        sleep=sleep,
        retry_error_callback=lambda state: state.outcome.result() if state.outcome else None,
    )
    return retrying(post_once)
