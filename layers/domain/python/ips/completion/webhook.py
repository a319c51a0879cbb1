"""Webhooks signed per the Standard Webhooks spec: one POST per attempt, under one message id; the retries with
backoff go through the webhook queue (ips.completion.service.deliver_webhook), never a sleep inside a function."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from standardwebhooks import Webhook

from ips.completion.ports import WebhookPoster
from ips.shared.fetching import FetchError

SECRET_PREFIX = "whsec_"  # noqa: S105 - the secret format's prefix, not a secret


@dataclass(frozen=True)
class Attempt:
    """What one POST of a webhook gave."""

    delivered: bool
    status: int | None  # the receiver's HTTP status; None when it never answered
    error: str | None  # why it was not delivered
    permanent: bool = False  # refused for good (an address we must not call): no retry can help


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


def attempt(
    poster: WebhookPoster,
    signer: WebhookSigner,
    url: str,
    message_id: str,
    body: bytes,
    *,
    timeout: float | None = None,
) -> Attempt:
    """POST the webhook once, signed now by the wall clock (the receiver checks the timestamp against its own, so
    a late retry is not refused as stale), under the request's one webhook-id (so the receiver can deduplicate).
    A 2xx answer delivers it."""
    headers = signer.headers(message_id, int(time.time()), body)
    try:
        status = poster.post(url, body, headers, timeout=timeout)
    except FetchError as exc:
        return Attempt(False, None, f"{exc.code}: {exc}", exc.permanent)
    delivered = 200 <= status < 300
    return Attempt(delivered, status, None if delivered else f"HTTP {status}")
