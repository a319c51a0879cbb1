"""Reuse of unchanged images, per tenant, over in-memory ports: what is reused, what is not, and how it counts."""

from __future__ import annotations

import io
from datetime import timedelta

import pytest
from PIL import Image

import ips.processing.image
from ips.processing.fakes import MemoryFetcher, ProcessingFakes
from ips.processing.reuse import ContentMatches
from ips.shared.model import ImageTask
from ips.shared.options import DEFAULT_OPTIONS, ImageOptions, OutputFormat

URL = "http://images.invalid/a.png"


def png(colour: tuple[int, int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (32, 24), colour).save(buffer, "PNG")
    return buffer.getvalue()


@pytest.fixture
def fakes() -> ProcessingFakes:
    return ProcessingFakes(
        fetcher=MemoryFetcher({URL: png((200, 10, 10)), "http://images.invalid/copy.png": png((200, 10, 10))})
    )


@pytest.fixture
def compressions(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    calls: list[bytes] = []
    real = ips.processing.image.compress_image

    def counting(data: bytes, **kwargs: object):  # type: ignore[no-untyped-def]
        calls.append(data)
        return real(data, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(ips.processing.image, "compress_image", counting)
    return calls


def task_of(request_id: str, *, tenant: str = "tenant-a", url: str = URL, **options: object) -> ImageTask:
    return ImageTask(request_id, 2, 0, url, f"salt-of-{request_id}", tenant, ImageOptions(**options))


def key(request_id: str, **options: object) -> str:
    """The request's own (tagged) output key for its image 2/0."""
    return task_of(request_id, **options).output_key


def run(
    fakes: ProcessingFakes, request_id: str, *, tenant: str = "tenant-a", url: str = URL, **options: object
) -> None:
    fakes.open_request(request_id, tenant=tenant)
    [handled] = fakes.run_batch(task_of(request_id, tenant=tenant, url=url, **options))
    assert handled.count is not None, handled.error


def outcome(fakes: ProcessingFakes, request_id: str):  # type: ignore[no-untyped-def]
    return fakes.catalog.images[(request_id, 2, 0)]


def test_the_same_source_again_is_copied_not_compressed(fakes: ProcessingFakes, compressions: list[bytes]) -> None:
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


def test_an_unchanged_source_answers_304_and_nothing_is_downloaded(
    fakes: ProcessingFakes, compressions: list[bytes]
) -> None:
    calls: list[object] = []
    fetch = fakes.fetcher.fetch
    fakes.fetcher.fetch = lambda url, validators=None, timeout=None: calls.append(validators) or fetch(url, validators)  # type: ignore[method-assign]
    run(fakes, "req-1")
    run(fakes, "req-2")
    first_validators, second_validators = calls
    assert first_validators is None and second_validators.etag  # type: ignore[union-attr]
    assert len(compressions) == 1 and outcome(fakes, "req-2").reused


def test_identical_bytes_under_another_url_are_reused(fakes: ProcessingFakes, compressions: list[bytes]) -> None:
    run(fakes, "req-1")
    run(fakes, "req-2", url="http://images.invalid/copy.png")
    assert len(compressions) == 1 and outcome(fakes, "req-2").reused


def test_another_tenant_never_reuses(fakes: ProcessingFakes, compressions: list[bytes]) -> None:
    run(fakes, "req-1", tenant="tenant-a")
    run(fakes, "req-2", tenant="tenant-b")
    assert len(compressions) == 2 and not outcome(fakes, "req-2").reused
    assert fakes.processed.copies == 0


def test_other_options_are_another_output(fakes: ProcessingFakes, compressions: list[bytes]) -> None:
    run(fakes, "req-1")
    run(fakes, "req-2", quality=80)
    run(fakes, "req-3", format=OutputFormat.WEBP)
    assert len(compressions) == 3
    assert key("req-3", format=OutputFormat.WEBP) in fakes.processed.objects


def test_changed_bytes_are_compressed_again(fakes: ProcessingFakes, compressions: list[bytes]) -> None:
    run(fakes, "req-1")
    fakes.fetcher.bodies[URL] = png((10, 200, 10))
    run(fakes, "req-2")
    assert len(compressions) == 2 and not outcome(fakes, "req-2").reused


def test_an_expired_entry_or_a_missing_output_is_not_reused(fakes: ProcessingFakes, compressions: list[bytes]) -> None:
    run(fakes, "req-1")
    fakes.now += timedelta(days=14)  # past the entry's expiry (a day short of the outputs' retention)
    run(fakes, "req-2")
    assert len(compressions) == 2
    del fakes.processed.objects[key("req-2")]  # the output went before its entry did
    run(fakes, "req-3")
    assert len(compressions) == 3 and not outcome(fakes, "req-3").reused


def test_a_redelivery_finds_its_own_output_and_is_not_a_reuse(
    fakes: ProcessingFakes, compressions: list[bytes]
) -> None:
    """GIVEN an image stored and its reuse entry written, then a crash before it was recorded WHEN it is
    delivered again THEN its own output is found (by URL: a 304) and it is not counted as a reuse."""
    fakes.catalog.record_images = lambda outcomes: (_ for _ in ()).throw(RuntimeError("crashed"))  # type: ignore[method-assign]
    with pytest.raises(AssertionError):
        run(fakes, "req-1")
    del fakes.catalog.record_images  # back to the class's
    assert key("req-1") in fakes.processed.objects and fakes.reuse.entries  # stored and remembered
    run(fakes, "req-1")
    assert len(compressions) == 1 and outcome(fakes, "req-1").reused is None


def batch_of(request_id: str, urls: list[str]) -> list[ImageTask]:
    return [ImageTask(request_id, row, 0, url, f"salt-of-{request_id}", "tenant-a") for row, url in enumerate(urls, 2)]


def run_batch(fakes: ProcessingFakes, images: list[ImageTask]) -> None:
    """As the process function runs a batch: its downloads prefetched, its images settled together."""
    fakes.open_request(images[0].request_id)
    assert all(handled.count is not None for handled in fakes.run_batch(*images))


def test_a_batch_reads_and_writes_the_index_once_and_reuses_each_image(
    fakes: ProcessingFakes, compressions: list[bytes]
) -> None:
    urls = [f"http://images.invalid/{number}.png" for number in range(5)]
    fakes.fetcher.bodies.update({url: png((number * 40, 10, 10)) for number, url in enumerate(urls)})
    run_batch(fakes, batch_of("req-1", urls))
    fakes.reuse.lookups = fakes.reuse.writes = fakes.reuse.content_lookups = 0
    second = batch_of("req-2", urls)
    run_batch(fakes, second)
    assert len(compressions) == len(urls)  # the first batch's only
    assert all(fakes.catalog.images[("req-2", image.row, 0)].reused for image in second)
    # One lookup for the batch's five sources and one write of their refreshed entries, not five of each; their
    # 304s need no lookup by content.
    assert (fakes.reuse.lookups, fakes.reuse.writes, fakes.reuse.content_lookups) == (1, 1, 0)
    # Each entry now names the newest copy, the second request's own output.
    assert {fakes.reuse.entries[("tenant-a", DEFAULT_OPTIONS.fingerprint(), url)].output_key for url in urls} == {
        image.output_key for image in second
    }


def test_a_failed_batch_lookup_fetches_the_sources_whole_and_their_bytes_still_match(
    fakes: ProcessingFakes, compressions: list[bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    """GIVEN the index cannot be read by URL WHEN a batch runs THEN its sources are fetched whole (no 304), and
    bytes processed before are still found by content: reused, not compressed again."""
    run(fakes, "req-1")

    def unavailable(*args: object) -> None:
        raise ConnectionError("the index cannot be read now")

    monkeypatch.setattr(fakes.reuse, "find_by_urls", unavailable)
    run_batch(fakes, batch_of("req-2", [URL]))
    assert fakes.catalog.images[("req-2", 2, 0)].reused and len(compressions) == 1


def test_a_failed_batch_write_of_reuse_entries_fails_no_image(
    fakes: ProcessingFakes, compressions: list[bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    run(fakes, "req-1")

    def unavailable(*args: object) -> None:
        raise ConnectionError("the index cannot be written now")

    monkeypatch.setattr(fakes.reuse, "remember_many", unavailable)
    run_batch(fakes, batch_of("req-2", [URL]))
    assert fakes.catalog.images[("req-2", 2, 0)].reused and ("req-2", 2, 0) in fakes.ledger.counted


def test_a_content_lookup_asks_for_every_digest_known_by_then_in_one_call(fakes: ProcessingFakes) -> None:
    """GIVEN five downloads of a batch finished WHEN the first compression needs a lookup by content THEN one
    lookup asks for all five digests, and the others' compressions need none."""
    tasks = batch_of("req-1", [f"http://images.invalid/{n}.png" for n in range(5)])
    digests = {task: f"{task.row:064x}" for task in tasks}
    matches = ContentMatches(fakes.processing().reuse, lambda: list(digests.items()))
    assert [matches.match(task, None, digests[task]) for task in tasks] == [None] * 5
    assert fakes.reuse.content_lookups == 1


def test_a_failed_lookup_by_content_compresses_instead(
    fakes: ProcessingFakes, compressions: list[bytes], monkeypatch
) -> None:
    run(fakes, "req-1")
    monkeypatch.setattr(fakes.reuse, "find_by_contents", lambda *args: (_ for _ in ()).throw(ConnectionError()))
    run(fakes, "req-2", url="http://images.invalid/copy.png")
    assert len(compressions) == 2 and not outcome(fakes, "req-2").reused
