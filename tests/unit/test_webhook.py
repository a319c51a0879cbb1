from __future__ import annotations

import base64
import json
import time
from collections.abc import Mapping

import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from ips.completion.policy import RetryPolicy
from ips.completion.webhook import Attempt, WebhookSigner, attempt, encode_event
from ips.shared.fetching import FetchError

SECRET = "whsec_" + base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()


class ScriptedPoster:
    """Answers with scripted statuses (or raises scripted errors) and records what was sent."""

    def __init__(self, *answers: int | FetchError) -> None:
        self.answers = list(answers)
        self.sent: list[tuple[str, bytes, dict[str, str]]] = []
        self.timeouts: list[float | None] = []

    def post(self, url: str, body: bytes, headers: Mapping[str, str], timeout: float | None = None) -> int:
        self.sent.append((url, body, dict(headers)))
        self.timeouts.append(timeout)
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


def test_an_attempt_is_one_signed_post_within_the_timeout_and_says_what_it_got() -> None:
    signer, now = WebhookSigner([SECRET]), int(time.time())
    body = encode_event("request.completed", {"requestId": "r1"}, now)
    poster = ScriptedPoster(204, 500, FetchError("TIMEOUT", "slow", permanent=False))
    outcomes = [attempt(poster, signer, "https://hooks.example/x", "msg_r1", body, timeout=7) for _ in "abc"]
    assert outcomes[0] == Attempt(True, 204, None)
    assert outcomes[1] == Attempt(False, 500, "HTTP 500")
    assert outcomes[2] == Attempt(False, None, "TIMEOUT: slow", permanent=False)
    assert poster.timeouts == [7, 7, 7] and {h["webhook-id"] for _, _, h in poster.sent} == {"msg_r1"}
    Webhook(SECRET).verify(poster.sent[0][1], poster.sent[0][2])


def test_a_refused_address_is_refused_for_good() -> None:
    poster = ScriptedPoster(FetchError("ADDRESS_REFUSED", "private address", permanent=True))
    outcome = attempt(poster, WebhookSigner([SECRET]), "http://10.0.0.1/", "m", b"{}")
    assert (outcome.delivered, outcome.permanent) == (False, True)
    assert outcome.error is not None and outcome.error.startswith("ADDRESS_REFUSED")


def test_the_backoff_grows_fourfold_up_to_its_cap() -> None:
    policy = RetryPolicy()
    assert policy.delays() == [5, 20, 80, 320, 1280, 5120, 20480]  # about 7.6 h from the first to the eighth
    assert RetryPolicy(attempts=5, first_delay=1, factor=2, max_delay=3).delays() == [1, 2, 3, 3]


def test_secret_must_be_a_standard_webhooks_secret() -> None:
    with pytest.raises(ValueError, match="whsec_"):
        WebhookSigner("plain-secret")
