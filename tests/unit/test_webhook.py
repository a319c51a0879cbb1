from __future__ import annotations

import base64
import json
import time
from collections.abc import Mapping

import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from ips.fetching import FetchError
from ips.webhook import RetryPolicy, WebhookSigner, deliver, encode_event

SECRET = "whsec_" + base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()


class ScriptedPoster:
    """Answers with scripted statuses (or raises scripted errors) and records what was sent."""

    def __init__(self, *answers: int | FetchError) -> None:
        self.answers = list(answers)
        self.sent: list[tuple[str, bytes, dict[str, str]]] = []

    def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> int:
        self.sent.append((url, body, dict(headers)))
        answer = self.answers.pop(0)
        if isinstance(answer, FetchError):
            raise answer
        return answer


def test_signature_verifies_with_the_standardwebhooks_library() -> None:
    now = int(time.time())
    body = encode_event("request.completed", {"requestId": "r1", "status": "COMPLETED"}, now)
    headers = WebhookSigner([SECRET]).headers("msg_r1", now, body)
    verifier = Webhook(SECRET)
    assert verifier.verify(body, headers) == json.loads(body)
    with pytest.raises(WebhookVerificationError):
        verifier.verify(body.replace(b"COMPLETED", b"FAILED"), headers)
    other = "whsec_" + base64.b64encode(b"another-key-another-key-another!!").decode()
    with pytest.raises(WebhookVerificationError):
        Webhook(other).verify(body, headers)


def test_two_secrets_give_two_signatures_each_verifying_alone() -> None:
    now = int(time.time())
    body = encode_event("request.completed", {"requestId": "r1"}, now)
    other = "whsec_" + base64.b64encode(b"another-key-another-key-another!!").decode()
    headers = WebhookSigner([SECRET, other]).headers("msg_r1", now, body)
    assert len(headers["webhook-signature"].split(" ")) == 2
    assert all(signature.startswith("v1,") for signature in headers["webhook-signature"].split(" "))
    for secret in (SECRET, other):
        assert Webhook(secret).verify(body, headers) == json.loads(body)
    third = "whsec_" + base64.b64encode(b"a-third-key-a-third-key-a-third!!").decode()
    with pytest.raises(WebhookVerificationError):
        Webhook(third).verify(body, headers)


def test_retries_keep_the_message_id_and_back_off_exponentially() -> None:
    poster = ScriptedPoster(500, FetchError("TIMEOUT", "slow", permanent=False), 503, 200)
    pauses: list[float] = []
    delivery = deliver(
        poster,
        WebhookSigner([SECRET]),
        "https://hooks.example/x",
        "msg_r1",
        b"{}",
        RetryPolicy(attempts=5, first_delay=1, factor=2),
        sleep=pauses.append,
    )
    assert (delivery.delivered, delivery.attempts, delivery.last_status) == (True, 4, 200)
    assert pauses == [1, 2, 4]
    assert {headers["webhook-id"] for _, _, headers in poster.sent} == {"msg_r1"}


def test_gives_up_after_the_budget_and_says_why() -> None:
    poster = ScriptedPoster(500, 500, 500)
    delivery = deliver(
        poster,
        WebhookSigner([SECRET]),
        "https://hooks.example/x",
        "m",
        b"{}",
        RetryPolicy(attempts=3),
        sleep=lambda _: None,
    )
    assert (delivery.delivered, delivery.attempts, delivery.last_error) == (False, 3, "HTTP 500")


def test_a_refused_address_is_not_retried() -> None:
    poster = ScriptedPoster(FetchError("ADDRESS_REFUSED", "private address", permanent=True))
    delivery = deliver(poster, WebhookSigner([SECRET]), "http://10.0.0.1/", "m", b"{}", sleep=lambda _: None)
    assert (delivery.delivered, delivery.attempts) == (False, 1)
    assert delivery.last_error is not None and delivery.last_error.startswith("ADDRESS_REFUSED")


def test_secret_must_be_a_standard_webhooks_secret() -> None:
    with pytest.raises(ValueError, match="whsec_"):
        WebhookSigner("plain-secret")
