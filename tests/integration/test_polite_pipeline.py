"""Polite fetching through the pipeline (moto's SQS, a real MongoDB wire server, real codecs), against two local
image hosts that count requests and can answer 429 / 503 with Retry-After."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ips_runtime.settings import Processing
from localcloud.source_host import SourceHost
from tests.integration.conftest import Pipeline
from tests.integration.test_api_handlers import HEADER, multipart


@pytest.fixture
def hosts(
    corpus: Path, function_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[SourceHost, SourceHost]]:
    from ips_runtime.roots import reset_roots

    with SourceHost(corpus) as busy, SourceHost(corpus) as calm:
        monkeypatch.setenv("OUTBOUND_ALLOWLIST", f"{function_env['OUTBOUND_ALLOWLIST']},{busy.origin},{calm.origin}")
        monkeypatch.setenv("FETCH_CONTACT_URL", "https://operator.invalid/bots")
        reset_roots()
        yield busy, calm


def upload(pipeline: Pipeline, csv_text: str) -> str:
    body, headers = multipart(csv_text)
    status, answer = pipeline.api("POST", "/api/v1/upload", body=body, headers=headers)
    assert status == 202, answer
    return answer["requestId"]


def until_done(pipeline: Pipeline, request_id: str, deadline_s: float = 120) -> dict[str, Any]:
    """Drain the queue again and again (delayed messages come back when their delay is over) until the
    request's last image is counted; then run the completion."""
    give_up = time.monotonic() + deadline_s
    while time.monotonic() < give_up:
        pipeline.drain_queue()
        _status, result = pipeline.api("GET", f"/api/v1/status/{request_id}")
        if result["succeeded"] + result["failed"] == result["total"]:
            assert pipeline.notify()
            return pipeline.api("GET", f"/api/v1/status/{request_id}")[1]
        time.sleep(0.2)
    raise AssertionError(f"request {request_id} did not finish: {result}")


def test_a_host_asking_to_wait_is_waited_for_and_others_go_on(pipeline: Pipeline, hosts) -> None:
    busy, calm = hosts
    busy.refuse("/sk_coffee.png", 2, status=429, retry_after="1")
    busy.refuse("/sk_rocket.jpg", 1, status=503, retry_after="1")
    request_id = upload(
        pipeline,
        HEADER
        + f'1,Mug,"{busy.url}/sk_coffee.png,{busy.url}/sk_rocket.jpg"\n'
        + f'2,Lamp,"{calm.url}/d_exif3_rocket.jpg,{calm.url}/sk_chelsea.png"\n',
    )
    assert pipeline.chunk_runner().poll_once()  # the chunk: four image messages
    runner = pipeline.sqs_runner()
    assert runner.poll_once()  # one batch of the four: the calm host's images are done, the busy host's wait
    _status, progress = pipeline.api("GET", f"/api/v1/status/{request_id}")
    assert (progress["succeeded"], progress["failed"]) == (2, 0)
    assert [product["outputImageUrls"][0] is not None for product in progress["products"]] == [False, True]
    assert pipeline.queued() == 2  # delayed (invisible), not failed and not dead-lettered

    result = until_done(pipeline, request_id)
    assert (result["status"], result["succeeded"]) == ("COMPLETED", 4)
    assert busy.stats.refused == 3 and busy.stats.requests == 5  # each waited image fetched again, once per refusal
    agents = set(busy.stats.user_agents) | set(calm.stats.user_agents)
    assert agents == {"ImageProcessingSystem/1.0 (+https://operator.invalid/bots)"}


def test_a_429_storm_fails_an_image_only_when_its_attempts_are_used(pipeline: Pipeline, hosts, adapters) -> None:
    busy, calm = hosts
    busy.refuse("/sk_coffee.png", 1000, status=429, retry_after="0")
    request_id = upload(pipeline, HEADER + f"1,Mug,{busy.url}/sk_coffee.png\n2,Lamp,{calm.url}/sk_chelsea.png\n")
    result = until_done(pipeline, request_id)
    assert (result["status"], result["succeeded"], result["failed"]) == ("COMPLETED_WITH_ERRORS", 1, 1)
    [error] = result["products"][0]["errors"]
    assert error["code"] == "HTTP_STATUS" and "429" in error["message"]
    assert busy.stats.requests == adapters.part(Processing).max_receive_count  # one fetch per delivery, every one used
    assert pipeline.queued(pipeline.resources.dead_letter_url) == 0
