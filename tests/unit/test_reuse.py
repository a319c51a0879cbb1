"""Reuse of unchanged images, per tenant, over in-memory ports: what is reused, what is not, and how it counts."""

from __future__ import annotations

import io
from datetime import timedelta

import pytest
from PIL import Image

import ips.processing
from ips.image_batch import BatchImage, ImageBatch
from ips.model import ImageTask
from ips.options import DEFAULT_OPTIONS, ImageOptions, OutputFormat
from ips.processing import Prefetcher, process_image
from tests.unit.fakes import Fakes, MemoryFetcher

URL = "http://images.invalid/a.png"


def png(colour: tuple[int, int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (32, 24), colour).save(buffer, "PNG")
    return buffer.getvalue()


@pytest.fixture
def fakes() -> Fakes:
    return Fakes(MemoryFetcher({URL: png((200, 10, 10)), "http://images.invalid/copy.png": png((200, 10, 10))}))


@pytest.fixture
def compressions(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    calls: list[bytes] = []
    real = ips.processing.compress_image

    def counting(data: bytes, **kwargs: object):  # type: ignore[no-untyped-def]
        calls.append(data)
        return real(data, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(ips.processing, "compress_image", counting)
    return calls


def task_of(request_id: str, *, tenant: str = "tenant-a", url: str = URL, **options: object) -> ImageTask:
    return ImageTask(request_id, 2, 0, url, f"salt-of-{request_id}", tenant, ImageOptions(**options))


def key(request_id: str, **options: object) -> str:
    """The request's own (tagged) output key for its image 2/0."""
    return task_of(request_id, **options).output_key


def run(fakes: Fakes, request_id: str, *, tenant: str = "tenant-a", url: str = URL, **options: object) -> None:
    process_image(task_of(request_id, tenant=tenant, url=url, **options), fakes.processing(), final_attempt=False)


def outcome(fakes: Fakes, request_id: str):  # type: ignore[no-untyped-def]
    return fakes.catalog.images[(request_id, 2, 0)]


def test_the_same_source_again_is_copied_not_compressed(fakes: Fakes, compressions: list[bytes]) -> None:
    run(fakes, "req-1")
    run(fakes, "req-2")
    first, second = outcome(fakes, "req-1"), outcome(fakes, "req-2")
    assert len(compressions) == 1
    assert first.reused is None and second.reused is True
    assert second.output_url == f"http://assets.invalid/{key('req-2')}"  # its own (tagged) output, a copy
    assert key("req-2") != key("req-1") and key("req-2").startswith("req-2/2/0-")
    assert fakes.processed.objects[key("req-2")] == fakes.processed.objects[key("req-1")]
    assert (second.input_bytes, second.output_bytes, second.width) == (first.input_bytes, first.output_bytes, 32)
    assert fakes.ledger.counted[("req-2", 2, 0)].reused == 1
    assert fakes.ledger.counted[("req-2", 2, 0)].bytes_out == first.output_bytes


def test_an_unchanged_source_answers_304_and_nothing_is_downloaded(fakes: Fakes, compressions: list[bytes]) -> None:
    calls: list[object] = []
    fetch = fakes.fetcher.fetch
    fakes.fetcher.fetch = lambda url, validators=None, timeout=None: calls.append(validators) or fetch(url, validators)  # type: ignore[method-assign]
    run(fakes, "req-1")
    run(fakes, "req-2")
    first_validators, second_validators = calls
    assert first_validators is None and second_validators.etag  # type: ignore[union-attr]
    assert len(compressions) == 1 and outcome(fakes, "req-2").reused


def test_identical_bytes_under_another_url_are_reused(fakes: Fakes, compressions: list[bytes]) -> None:
    run(fakes, "req-1")
    run(fakes, "req-2", url="http://images.invalid/copy.png")
    assert len(compressions) == 1 and outcome(fakes, "req-2").reused


def test_another_tenant_never_reuses(fakes: Fakes, compressions: list[bytes]) -> None:
    run(fakes, "req-1", tenant="tenant-a")
    run(fakes, "req-2", tenant="tenant-b")
    assert len(compressions) == 2 and not outcome(fakes, "req-2").reused
    assert fakes.processed.copies == 0


def test_other_options_are_another_output(fakes: Fakes, compressions: list[bytes]) -> None:
    run(fakes, "req-1")
    run(fakes, "req-2", quality=80)
    run(fakes, "req-3", format=OutputFormat.WEBP)
    assert len(compressions) == 3
    assert key("req-3", format=OutputFormat.WEBP) in fakes.processed.objects


def test_changed_bytes_are_compressed_again(fakes: Fakes, compressions: list[bytes]) -> None:
    run(fakes, "req-1")
    fakes.fetcher.bodies[URL] = png((10, 200, 10))
    run(fakes, "req-2")
    assert len(compressions) == 2 and not outcome(fakes, "req-2").reused


def test_an_expired_entry_or_a_missing_output_is_not_reused(fakes: Fakes, compressions: list[bytes]) -> None:
    run(fakes, "req-1")
    fakes.now += timedelta(days=14)  # past the entry's expiry (a day short of the outputs' retention)
    run(fakes, "req-2")
    assert len(compressions) == 2
    del fakes.processed.objects[key("req-2")]  # the output went before its entry did
    run(fakes, "req-3")
    assert len(compressions) == 3 and not outcome(fakes, "req-3").reused


def test_a_redelivery_finds_its_own_output_and_is_not_a_reuse(fakes: Fakes, compressions: list[bytes]) -> None:
    task = task_of("req-1")
    ports = fakes.processing()
    fetch = lambda t: ips.processing.fetch_source(t, ports)  # noqa: E731
    prepared = ips.processing.prepare_image(task, ports, fetch, final_attempt=False, deadline=None)
    ips.processing.store_output(task, ports, prepared)  # stored and remembered, then it crashed
    process_image(task, ports, final_attempt=False)
    assert len(compressions) == 1 and outcome(fakes, "req-1").reused is None


def batch_of(request_id: str, urls: list[str]) -> list[BatchImage]:
    return [
        BatchImage(
            f"{request_id}-{row}", ImageTask(request_id, row, 0, url, f"salt-of-{request_id}", "tenant-a"), False
        )
        for row, url in enumerate(urls, start=2)
    ]


def run_batch(fakes: Fakes, images: list[BatchImage]) -> None:
    """As the process function runs a batch: its downloads prefetched, its images through an ImageBatch."""
    ports = fakes.processing()
    prefetcher = Prefetcher(ports, len(images))
    prefetcher.start(image.task for image in images)
    batch = ImageBatch(ports, prefetcher)
    batch.start(images)
    try:
        for image in images:
            batch.result(image)
    finally:
        batch.close()
        prefetcher.close()


def test_a_batch_reads_and_writes_the_index_once_and_reuses_each_image(fakes: Fakes, compressions: list[bytes]) -> None:
    urls = [f"http://images.invalid/{number}.png" for number in range(5)]
    fakes.fetcher.bodies.update({url: png((number * 40, 10, 10)) for number, url in enumerate(urls)})
    run_batch(fakes, batch_of("req-1", urls))
    fakes.reuse.lookups = fakes.reuse.writes = 0
    second = batch_of("req-2", urls)
    run_batch(fakes, second)
    assert len(compressions) == len(urls)  # the first batch's only
    assert all(fakes.catalog.images[("req-2", image.task.row, 0)].reused for image in second)
    # One lookup for the batch's five sources and one write of their refreshed entries, not five of each.
    assert (fakes.reuse.lookups, fakes.reuse.writes) == (1, 1)
    # Each entry now names the newest copy, the second request's own output.
    assert {fakes.reuse.entries[("tenant-a", DEFAULT_OPTIONS.fingerprint(), url)].output_key for url in urls} == {
        image.task.output_key for image in second
    }


def test_a_failed_batch_lookup_leaves_each_image_to_look_itself_up(
    fakes: Fakes, compressions: list[bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    run(fakes, "req-1")

    def unavailable(*args: object) -> None:
        raise ConnectionError("the index cannot be read now")

    monkeypatch.setattr(fakes.reuse, "find_by_urls", unavailable)
    run_batch(fakes, batch_of("req-2", [URL]))
    assert fakes.catalog.images[("req-2", 2, 0)].reused and len(compressions) == 1


def test_a_failed_batch_write_of_reuse_entries_fails_no_image(
    fakes: Fakes, compressions: list[bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    run(fakes, "req-1")

    def unavailable(*args: object) -> None:
        raise ConnectionError("the index cannot be written now")

    monkeypatch.setattr(fakes.reuse, "remember_many", unavailable)
    run_batch(fakes, batch_of("req-2", [URL]))
    assert fakes.catalog.images[("req-2", 2, 0)].reused and ("req-2", 2, 0) in fakes.ledger.counted
