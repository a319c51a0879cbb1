"""Reuse of unchanged images through the pipeline: moto, a real MongoDB wire server, real codecs and a local
image host that counts what it serves and answers conditional GETs."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from localcloud.source_host import SourceHost
from tests.integration.conftest import Pipeline
from tests.integration.test_api_handlers import HEADER, multipart

IMAGES = ("d_exif3_rocket.jpg", "sk_coffee.png", "d_alpha_yellowflower.png")


@pytest.fixture
def host(corpus: Path, function_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[SourceHost]:
    from ips_runtime.roots import reset_roots

    with SourceHost(corpus) as host:
        monkeypatch.setenv("OUTBOUND_ALLOWLIST", f"{function_env['OUTBOUND_ALLOWLIST']},{host.origin}")
        reset_roots()
        yield host


def catalogue(host: SourceHost) -> str:
    return HEADER + "".join(f"{row},Item {row},{host.url}/{name}\n" for row, name in enumerate(IMAGES, start=1))


def run(pipeline: Pipeline, csv_text: str, *, api_key: str | None = None, **form: str) -> dict[str, Any]:
    body, headers = multipart(csv_text) if not form else _form(csv_text, form)
    status, answer = pipeline.api("POST", "/api/v1/upload", body=body, headers=headers, **_key(api_key))
    assert status == 202, answer
    pipeline.drain_queue()
    assert pipeline.notify()
    status, result = pipeline.api("GET", f"/api/v1/status/{answer['requestId']}", **_key(api_key))
    assert result["status"] == "COMPLETED", result
    return result


def _form(csv_text: str, fields: dict[str, str]) -> tuple[bytes, dict[str, str]]:
    from tests.integration.test_options_api import form

    return form(csv_text, **fields)


def _key(api_key: str | None) -> dict[str, str]:
    return {"api_key": api_key} if api_key else {}


def details(result: dict[str, Any]) -> list[dict[str, Any]]:
    return [image for product in result["products"] for image in product["images"]]


def test_a_catalogue_sent_again_is_reused_with_its_own_outputs(pipeline: Pipeline, host: SourceHost) -> None:
    first = run(pipeline, catalogue(host))
    assert first["reused"] == 0 and host.stats.bytes_sent > 0
    host.reset()

    second = run(pipeline, catalogue(host))
    assert second["reused"] == len(IMAGES)
    # Asked conditionally with the validators stored last time: every source answered 304, no byte downloaded.
    assert (host.stats.requests, host.stats.not_modified, host.stats.bytes_sent) == (len(IMAGES), len(IMAGES), 0)
    assert all(image["reused"] for image in details(second))
    assert second["savings"] == first["savings"]
    # Its own outputs (copies), each readable, identical to the first request's.
    s3, bucket = boto3.client("s3"), pipeline.resources.processed_bucket
    for old, new in zip(first["products"], second["products"], strict=True):
        [old_url], [new_url] = old["outputImageUrls"], new["outputImageUrls"]
        assert second["requestId"] in new_url and old_url != new_url
        old_key, new_key = (url.split("/assets/", 1)[1] for url in (old_url, new_url))
        assert s3.get_object(Bucket=bucket, Key=new_key)["Body"].read() == (
            s3.get_object(Bucket=bucket, Key=old_key)["Body"].read()
        )


def test_no_tenant_reuses_another_tenants_images(pipeline: Pipeline, host: SourceHost) -> None:
    run(pipeline, catalogue(host))
    other = run(pipeline, catalogue(host), api_key="another-tenant-key")
    assert other["reused"] == 0 and not any(image["reused"] for image in details(other))
    assert host.stats.not_modified == 0  # nor asked conditionally: it never saw this tenant's validators


def test_changed_sources_are_fetched_and_compressed_again(
    pipeline: Pipeline, host: SourceHost, corpus: Path, tmp_path: Path
) -> None:
    for name in IMAGES:
        shutil.copy(corpus / name, tmp_path / name)
    host.folder = tmp_path
    run(pipeline, catalogue(host))
    shutil.copy(corpus / "sk_chelsea.png", tmp_path / IMAGES[1])  # the seller replaced one photo
    host.reset()
    again = run(pipeline, catalogue(host))
    assert again["reused"] == len(IMAGES) - 1
    assert [image["reused"] for image in details(again)] == [True, False, True]
    assert host.stats.not_modified == len(IMAGES) - 1


def test_other_options_are_not_reused(pipeline: Pipeline, host: SourceHost) -> None:
    run(pipeline, catalogue(host))
    webp = run(pipeline, catalogue(host), format="webp")
    assert webp["reused"] == 0
    assert all(image["outputFormat"] == "WEBP" for image in details(webp))
