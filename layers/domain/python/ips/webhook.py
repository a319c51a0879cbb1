"""Webhooks signed per the Standard Webhooks spec, delivered with exponential backoff under one message id."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

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
    def __init__(self, secret: str) -> None:
        if not secret.startswith(SECRET_PREFIX):
            raise ValueError("webhook secret must look like whsec_<base64>")
        self._key = base64.b64decode(secret.removeprefix(SECRET_PREFIX))

    def headers(self, message_id: str, timestamp: int, body: bytes) -> dict[str, str]:
        signed = f"{message_id}.{timestamp}.".encode() + body
        signature = base64.b64encode(hmac.new(self._key, signed, hashlib.sha256).digest()).decode()
        return {
            "content-type": "application/json",
            "webhook-id": message_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": f"v1,{signature}",
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
