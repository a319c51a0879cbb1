"""CPU bombs: small files whose decoding costs far more than their bytes and pixels say. Each is refused with
TOO_COMPLEX (before decoding where the container tells the cost, by the time budget where it does not), and
files just under each cap still compress."""

from __future__ import annotations

import io
import pickle
import re
import struct
import time
import zlib
from typing import Any

import pytest
from PIL import Image

from ips.shared.imaging import ImageLimits, ImageRejected, OutOfTime, compress_image

_NEXT_MARKER = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")


def encoded(image: Image.Image, fmt: str, **options: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def scans(jpeg: bytes) -> list[tuple[int, int]]:
    """Byte ranges of each scan (its SOS header and entropy-coded data) of a JPEG."""
    found, pos = [], 2
    while jpeg[pos + 1] != 0xD9:
        length = struct.unpack_from(">H", jpeg, pos + 2)[0]
        if jpeg[pos + 1] == 0xDA:
            end = _NEXT_MARKER.search(jpeg, pos + 2 + length).start()
            found.append((pos, end))
            pos = end
        else:
            pos += 2 + length
    return found


def scan_bomb(width: int, height: int, repeats: int, mode: str = "L") -> bytes:
    """A progressive JPEG whose last scan (a refinement pass over the whole image) is repeated: libjpeg decodes
    each copy, so every repeat costs a pass over every block for a few dozen bytes."""
    jpeg = encoded(Image.new(mode, (width, height), 128), "JPEG", progressive=True, quality=50)
    start, end = scans(jpeg)[-1]
    return jpeg[:end] + jpeg[start:end] * repeats + jpeg[end:]


def rejected(data: bytes, **kwargs: Any) -> ImageRejected:
    with pytest.raises(ImageRejected) as caught:
        compress_image(data, **kwargs)
    return caught.value


def test_the_issues_progressive_bomb_is_refused_before_decoding() -> None:
    bomb = scan_bomb(7000, 7000, 300)  # 214 kB: took 9 s of CPU (2,100 repeats outlast the 60 s timeout)
    assert len(bomb) < 250_000
    refusal = rejected(bomb)
    assert refusal.code == "TOO_COMPLEX" and "refused before decoding" in refusal.message


def test_scans_are_capped_by_count() -> None:
    plain = encoded(Image.new("L", (64, 64), 128), "JPEG", progressive=True)
    count = len(scans(plain))
    assert compress_image(scan_bomb(64, 64, 100 - count)).width == 64  # exactly max_scans
    refusal = rejected(scan_bomb(64, 64, 101 - count))
    assert (refusal.code, refusal.message) == ("TOO_COMPLEX", "more than 100 JPEG scans: refused before decoding")


def test_scans_are_capped_by_the_pixels_they_decode() -> None:
    # A grey progressive JPEG from libjpeg has 6 scans, each over the whole image: 6 passes.
    grey = encoded(Image.new("L", (256, 256), 99), "JPEG", progressive=True)
    assert len(scans(grey)) == 6
    assert compress_image(grey, limits=ImageLimits(max_pixels=256 * 256, max_scan_passes=6)).width == 256
    assert rejected(grey, limits=ImageLimits(max_pixels=256 * 256, max_scan_passes=5)).code == "TOO_COMPLEX"
    # Subsampled chroma covers a quarter of the pixels: 4:2:0 colour costs 6 passes of its luma plus two
    # components of (10 scans' worth of) quarter planes, well under the 14 passes of 4:4:4.
    colour = encoded(Image.new("RGB", (256, 256), (200, 30, 90)), "JPEG", progressive=True, subsampling=2)
    assert compress_image(colour, limits=ImageLimits(max_pixels=256 * 256, max_scan_passes=9)).width == 256
    full = encoded(Image.new("RGB", (256, 256), (200, 30, 90)), "JPEG", progressive=True, subsampling=0)
    assert rejected(full, limits=ImageLimits(max_pixels=256 * 256, max_scan_passes=9)).code == "TOO_COMPLEX"
    assert compress_image(full, limits=ImageLimits(max_pixels=256 * 256, max_scan_passes=14)).width == 256


def test_a_cmyk_progressive_jpeg_at_the_pixel_cap_is_within_the_scan_budget() -> None:
    # libjpeg's progressive script for 4 components is 24 component passes: the costliest standard JPEG.
    cmyk = encoded(Image.new("CMYK", (100, 100)), "JPEG", progressive=True)
    assert compress_image(cmyk, limits=ImageLimits(max_pixels=100 * 100)).width == 100
    assert rejected(cmyk, limits=ImageLimits(max_pixels=100 * 100, max_scan_passes=23)).code == "TOO_COMPLEX"


def png_chunk(kind: bytes, data: bytes = b"") -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def gif_first_image(gif: bytes) -> tuple[int, int]:
    """Where a GIF's first image descriptor is, and how many extension sub-blocks come before it."""
    pos = 13 + (3 << ((gif[10] & 7) + 1) if gif[10] & 0x80 else 0)
    blocks = 0
    while gif[pos] == 0x21:
        pos += 2
        while gif[pos]:
            blocks, pos = blocks + 1, pos + 1 + gif[pos]
        pos += 1
    assert gif[pos] == 0x2C
    return pos, blocks


@pytest.mark.parametrize("kind", ["jpeg segments", "png chunks", "gif blocks"])
def test_containers_are_capped_by_the_records_pillow_walks_in_python(kind: str) -> None:
    # A 25 MB JPEG of empty COM segments took over a minute in Pillow's header parser; PNG chunks and GIF
    # extension blocks cost the same way. `max_chunks` records pass; one more is refused before Pillow runs.
    limits = ImageLimits(max_chunks=1000)

    def build(records: int) -> bytes:
        if kind == "jpeg segments":
            jpeg = encoded(Image.new("RGB", (8, 8)), "JPEG")  # SOI APP0 DQT*2 SOF DHT*4 SOS EOI: 10 segments
            return jpeg[:2] + b"\xff\xfe\x00\x02" * (records - 10) + jpeg[2:]
        if kind == "png chunks":
            png = encoded(Image.new("RGB", (8, 8)), "PNG")  # IHDR IDAT IEND
            return png[:33] + png_chunk(b"quUx") * (records - 3) + png[33:]
        gif = encoded(Image.new("P", (8, 8)), "GIF")
        first_image, before = gif_first_image(gif)
        return gif[:first_image] + b"\x21\xfe\x01x\x00" * (records - before) + gif[first_image:]

    assert compress_image(build(1000), limits=limits).width == 8
    refusal = rejected(build(1001), limits=limits)
    assert refusal.code == "TOO_COMPLEX" and "refused before decoding" in refusal.message


def test_decoding_stops_at_the_images_cpu_budget() -> None:
    # What the caps miss, the budget stops: with the scan caps lifted, the bomb runs out of its CPU seconds.
    bomb = scan_bomb(2000, 2000, 300)
    limits = ImageLimits(max_scans=10**6, max_scan_passes=10**6, max_decode_seconds=0.01)
    with pytest.raises(OutOfTime) as caught:
        compress_image(bomb, limits=limits)
    assert caught.value.code == "TOO_COMPLEX" and caught.value.invocation_deadline is False


def test_decoding_stops_at_the_callers_deadline() -> None:
    photo = encoded(Image.new("RGB", (300, 200), (10, 120, 200)), "JPEG")
    with pytest.raises(OutOfTime) as caught:
        compress_image(photo, deadline=time.monotonic() - 1)
    assert caught.value.code == "TOO_COMPLEX" and caught.value.invocation_deadline is True
    assert compress_image(photo, deadline=time.monotonic() + 60).width == 300


def test_the_time_up_rejection_survives_pickling() -> None:  # the local cloud runs functions in processes
    copy = pickle.loads(pickle.dumps(OutOfTime("TOO_COMPLEX", "late", True)))
    assert (copy.code, copy.message, copy.invocation_deadline) == ("TOO_COMPLEX", "late", True)


@pytest.mark.parametrize("compression", ["raw", "tiff_lzw", "tiff_adobe_deflate", "packbits"])
def test_tiff_with_a_linear_cost_compression_is_decoded(compression: str) -> None:
    data = encoded(Image.new("RGB", (40, 30), (1, 2, 3)), "TIFF", compression=compression)
    assert compress_image(data).input_format == "TIFF"


@pytest.mark.parametrize(
    ("mode", "compression"),
    [("RGB", "jpeg"), ("1", "group4"), ("1", "group3"), ("1", "tiff_ccitt"), ("RGB", "lzma"), ("RGB", "zstd")],
)
def test_tiff_with_other_compressions_is_refused_unsupported(mode: str, compression: str) -> None:
    # JPEG-in-TIFF would bring the progressive-scan bomb back through libtiff, in one uninterruptible call.
    data = encoded(Image.new(mode, (40, 30)), "TIFF", compression=compression)
    refusal = rejected(data)
    assert refusal.code == "UNSUPPORTED_FORMAT" and compression in refusal.message
