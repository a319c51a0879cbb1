"""The encode budget (ips.shared.imaging.encode_cost, through ips.shared.imaging.compress_image and
ips.processing.image): an encode is judged before it starts, by its output's size and its estimated CPU seconds, and a
heavy image's work counts against its tenant's quota. Real codecs; the big and odd images are generated here (flat
colours: cheap to make and to decode, while an estimate is by pixels, whatever they hold). No test times anything: each
reads the estimate, gives deadlines far from it, or budgets CPU at large multiples of what the work needs."""

from __future__ import annotations

import dataclasses
import io
import time

import pytest
from PIL import Image

from ips.processing.fakes import MemoryFetcher, ProcessingFakes
from ips.processing.image import RetryLater
from ips.processing.ports import ProcessingPorts
from ips.processing.service import Delivery, run_batch
from ips.shared.imaging import ImageLimits, ImageRejected, OutOfTime, compress_image
from ips.shared.imaging.encode_cost import MAX_SIDE, plan_encode
from ips.shared.model import ImageStatus, ImageTask
from ips.shared.options import ImageOptions, OutputFormat
from ips.shared.quotas import ImageQuota, work_units

URL = "http://images.invalid/poster.png"
AVIF_95 = ImageOptions(format=OutputFormat.AVIF, quality=95)


def png(width: int, height: int, mode: str = "RGB") -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, (width, height), (200, 40, 90, 255)[: len(mode)]).save(buffer, "PNG")
    return buffer.getvalue()


def task(options: ImageOptions, index: int = 0, request_id: str = "req-1") -> ImageTask:
    return ImageTask(request_id, 2, index, URL, "salt", "tenant-a", options)


def estimate(width: int, height: int, options: ImageOptions, alpha: bool = False) -> float:
    return plan_encode((width, height), options, alpha=alpha, max_seconds=float("inf")).seconds


def process(
    fakes: ProcessingFakes,
    image: ImageTask,
    *,
    final_attempt: bool,
    deadline: float | None = None,
    ports: ProcessingPorts | None = None,
) -> None:
    """The image as the process function runs it: a batch of one (its last delivery when `final_attempt`),
    raising what its record would be retried for."""
    fakes.open_request(image.request_id)
    delivery = Delivery("m-0", image.to_message(), 5 if final_attempt else 1)
    handled = run_batch([delivery], ports or fakes.processing(), fakes.known, decode_deadline=deadline)["m-0"]
    if handled.error is not None:
        raise handled.error


# --- the invocation's time ----------------------------------------------------------------------------------


def test_an_encode_the_invocation_has_no_time_for_is_not_started() -> None:
    # The case: an 8 MP AVIF at quality 95 and a 0.3 s decode budget, the deadline 5 s away here (far
    # below the encode's estimate, far above a header read on a loaded machine). It used to encode regardless;
    # now the estimate is read from the header and nothing is decoded.
    data = png(3266, 2450)
    assert estimate(3266, 2450, AVIF_95) > 3 * 5  # the premise: 8 MP of AVIF at quality 95 is many seconds
    started = time.process_time()
    with pytest.raises(OutOfTime) as caught:
        compress_image(data, limits=ImageLimits(max_decode_seconds=0.3), deadline=time.monotonic() + 5, options=AVIF_95)
    assert time.process_time() - started < 2  # far below the estimate: neither decoded nor encoded
    assert (caught.value.code, caught.value.invocation_deadline) == ("TOO_COSTLY", True)
    assert "more than the invocation had left" in caught.value.message
    # With the time it needs, the same image encodes (as AVIF, at its own size).
    small = png(400, 300)
    done = compress_image(small, deadline=time.monotonic() + 600, options=AVIF_95)
    assert (done.output_format, done.width, done.height) == ("AVIF", 400, 300)


def test_no_time_for_the_encode_is_retried_then_fails_with_a_code_on_the_last_delivery() -> None:
    fakes = ProcessingFakes(fetcher=MemoryFetcher({URL: png(3266, 2450)}))
    soon = time.monotonic() + 5  # a third of the estimate
    with pytest.raises(RetryLater, match="TOO_COSTLY"):
        process(fakes, task(AVIF_95), final_attempt=False, deadline=soon)
    assert fakes.catalog.images == {} and fakes.ledger.counted == {}  # nothing recorded: a fresh delivery may fit
    process(fakes, task(AVIF_95), final_attempt=True, deadline=time.monotonic() + 5)
    [failed] = fakes.catalog.images.values()
    assert (failed.status, failed.error_code) == (ImageStatus.FAILED, "TOO_COSTLY")
    assert list(fakes.ledger.counted) == [("req-1", 2, 0)]


# --- the cap ------------------------------------------------------------------------------------------------


def test_an_encode_estimated_over_the_images_budget_fails_before_decoding() -> None:
    # 50 MP (the pixel cap) of AVIF at quality 95: about 100 s of CPU by the estimate, over the 30 s one image may
    # use. The same pixels as JPEG are well within it.
    data = png(50_000, 1000)
    assert estimate(50_000, 1000, AVIF_95) > ImageLimits().max_encode_seconds
    started = time.process_time()
    with pytest.raises(ImageRejected) as caught:
        compress_image(data, options=AVIF_95)
    assert time.process_time() - started < 5  # a header read, not 100 s of encoding
    assert caught.value.code == "TOO_COSTLY" and "over the 30 s one image may use" in caught.value.message
    assert not isinstance(caught.value, OutOfTime)  # as costly on every delivery: not retried
    assert compress_image(data, options=ImageOptions(format=OutputFormat.JPEG)).width == 50_000


def test_the_cap_is_a_setting_and_a_lower_quality_or_a_smaller_box_fits_under_it() -> None:
    data = png(2000, 2000)
    limits = ImageLimits(max_encode_seconds=2.0)
    with pytest.raises(ImageRejected, match="estimated at") as caught:
        compress_image(data, limits=limits, options=AVIF_95)
    assert caught.value.code == "TOO_COSTLY"
    smaller = ImageOptions(format=OutputFormat.AVIF, quality=95, maxWidth=500)
    assert estimate(2000, 2000, smaller) < 2.0
    assert compress_image(data, limits=limits, options=smaller).width == 500


def test_an_image_over_the_cap_fails_on_its_first_delivery() -> None:
    fakes = ProcessingFakes(fetcher=MemoryFetcher({URL: png(2000, 2000)}))
    ports = dataclasses.replace(fakes.processing(), image_limits=ImageLimits(max_encode_seconds=2.0))
    process(fakes, task(AVIF_95), final_attempt=False, ports=ports)
    [failed] = fakes.catalog.images.values()
    assert (failed.status, failed.error_code) == (ImageStatus.FAILED, "TOO_COSTLY")


def test_alpha_makes_an_encode_costlier_and_is_read_from_the_header() -> None:
    opaque, translucent = png(2000, 2000), png(2000, 2000, "RGBA")
    webp = ImageOptions(format=OutputFormat.WEBP, quality=75)
    assert estimate(2000, 2000, webp, alpha=True) > estimate(2000, 2000, webp)
    limit = (estimate(2000, 2000, webp) + estimate(2000, 2000, webp, alpha=True)) / 2  # between the two
    limits = ImageLimits(max_encode_seconds=limit)
    assert compress_image(opaque, limits=limits, options=webp).output_format == "WEBP"
    with pytest.raises(ImageRejected) as caught:
        compress_image(translucent, limits=limits, options=webp)
    assert caught.value.code == "TOO_COSTLY"


# --- what each format can hold ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "size"),
    [
        (OutputFormat.WEBP, (16_384, 1)),  # within MAX_DIMENSION, one over libwebp's side
        (OutputFormat.WEBP, (2, 20_000)),
        (OutputFormat.JPEG, (65_501, 1)),
        (OutputFormat.AVIF, (1, 65_537)),  # only an extreme aspect ratio gets past AV1's side within 50 MP
    ],
    ids=lambda value: str(value),
)
def test_an_output_its_format_cannot_hold_fails_at_once_with_a_code(fmt: OutputFormat, size: tuple[int, int]) -> None:
    options = ImageOptions(format=fmt)
    with pytest.raises(ImageRejected) as caught:
        compress_image(png(*size), options=options)
    assert caught.value.code == "UNSUPPORTED_DIMENSIONS"
    assert f"at most {MAX_SIDE[fmt]:,} px a side" in caught.value.message
    assert "maxWidth/maxHeight" in caught.value.message
    # Through the use case: failed on the first delivery, not retried as a crash and ended INTERNAL_ERROR.
    fakes = ProcessingFakes(fetcher=MemoryFetcher({URL: png(*size)}))
    process(fakes, task(options), final_attempt=False)
    [failed] = fakes.catalog.images.values()
    assert (failed.status, failed.error_code) == (ImageStatus.FAILED, "UNSUPPORTED_DIMENSIONS")


def test_a_box_lets_the_output_be_scaled_to_what_its_format_can_hold() -> None:
    # maxWidth 16,384 is a valid option; a WebP output is fitted inside the box narrowed to 16,383.
    wide = png(20_000, 10)
    for box in ({"maxWidth": 16_384}, {"maxHeight": 10}):  # the unset side's bound is MAX_DIMENSION
        done = compress_image(wide, options=ImageOptions(format=OutputFormat.WEBP, **box))
        assert (done.output_format, done.width) == ("WEBP", 16_383)
        with Image.open(io.BytesIO(done.data)) as decoded:
            assert decoded.size == (16_383, 8)
    # JPEG and AVIF hold 16,384: the box is theirs unchanged.
    assert compress_image(wide, options=ImageOptions(maxWidth=16_384)).width == 16_384


def test_the_dimension_check_reads_the_exif_orientation() -> None:
    # 10 x 16,384 stored, shown turned a quarter (EXIF 6): the WebP output would be 16,384 wide.
    buffer = io.BytesIO()
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.new("RGB", (16_384, 10), (1, 2, 3)).rotate(90, expand=True).save(buffer, "JPEG", exif=exif.tobytes())
    with pytest.raises(ImageRejected) as caught:
        compress_image(buffer.getvalue(), options=ImageOptions(format=OutputFormat.WEBP))
    assert caught.value.code == "UNSUPPORTED_DIMENSIONS" and "16384x10" in caught.value.message


# --- the quota, weighted by work ----------------------------------------------------------------------------


def quota_fakes(per_day: int, body: bytes) -> ProcessingFakes:
    return ProcessingFakes(fetcher=MemoryFetcher({URL: body}), image_quota=ImageQuota(per_day=per_day))


def test_a_heavy_images_work_is_charged_once_and_counts_against_later_requests() -> None:
    fakes = quota_fakes(20, png(2000, 2000))
    allowance = fakes.allowance()
    units = work_units(estimate(2000, 2000, AVIF_95))
    assert units == 5  # 4 MP of AVIF at quality 95: about 8.4 s of CPU, 2 s an image
    allowance.reserve("tenant-a", "req-1", 1)  # its image was reserved at intake, as one
    process(fakes, task(AVIF_95), final_attempt=False)
    process(fakes, task(AVIF_95), final_attempt=False)  # a redelivery charges nothing more
    assert fakes.catalog.images[("req-1", 2, 0)].status is ImageStatus.SUCCEEDED
    assert fakes.quotas.usage("tenant-a", "2026-12-01") == (units, 1)
    # The work counts against the day's quota: 15 more images fit, 16 do not.
    assert fakes.quotas.reserve("tenant-a", "req-2", 16, 20, 500_000, "2026-12-01") == "perDay"
    allowance.reserve("tenant-a", "req-3", 15)
    assert fakes.quotas.usage("tenant-b", "2026-12-01") == (0, 0)  # another key's quota is its own


def test_a_light_image_counts_as_the_one_reserved_at_intake() -> None:
    fakes = quota_fakes(20, png(2000, 2000))
    fakes.allowance().reserve("tenant-a", "req-1", 1)
    process(fakes, task(ImageOptions(format=OutputFormat.JPEG, quality=95)), final_attempt=False)
    assert fakes.catalog.images[("req-1", 2, 0)].status is ImageStatus.SUCCEEDED
    assert fakes.quotas.usage("tenant-a", "2026-12-01") == (1, 1) and fakes.quotas.charged == {}


def test_an_image_whose_work_would_pass_the_quota_fails_undecoded_and_charges_nothing() -> None:
    fakes = quota_fakes(4, png(2000, 2000))
    fakes.allowance().reserve("tenant-a", "req-1", 2)
    process(fakes, task(AVIF_95), final_attempt=False)  # 4 more would make 6 of 4
    failed = fakes.catalog.images[("req-1", 2, 0)]
    assert (failed.status, failed.error_code) == (ImageStatus.FAILED, "IMAGE_QUOTA_EXCEEDED")
    assert "quota of 4 images a day" in (failed.error_message or "")
    assert fakes.quotas.charged == {} and fakes.processed.objects == {}
    # A light image of the same request still goes through: it was reserved at intake.
    jpeg = ImageOptions(format=OutputFormat.JPEG)
    process(fakes, task(jpeg, index=1), final_attempt=False)
    assert fakes.catalog.images[("req-1", 2, 1)].status is ImageStatus.SUCCEEDED
