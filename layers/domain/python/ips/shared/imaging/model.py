"""The engine's vocabulary: its limits, its result, and the rejection every refused image raises."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

REJECTION_CODES: Final = frozenset(
    {
        "TOO_LARGE",
        "TOO_MANY_PIXELS",
        "TOO_COMPLEX",
        "TOO_COSTLY",
        "UNSUPPORTED_DIMENSIONS",
        "NOT_AN_IMAGE",
        "UNSUPPORTED_FORMAT",
        "CORRUPT_IMAGE",
    }
)


@dataclass(frozen=True)
class ImageLimits:
    max_bytes: int = 25 * 1024 * 1024  # source bytes cap
    max_pixels: int = 50_000_000  # width*height cap, checked from the header BEFORE decoding
    # What makes decoding cost more than its pixels, counted from the container before anything is decoded.
    # Standard encoders write at most about 10 scans (libjpeg's progressive script; 24 component passes for
    # CMYK); a scan costs a pass over every block of its components, so the decode work of a JPEG is the sum,
    # over its scans, of the pixels each one covers: at most `max_scan_passes` times `max_pixels`.
    max_scans: int = 100
    max_scan_passes: int = 32
    # JPEG segments, PNG chunks, GIF blocks before the first image: each is a Python-level step of Pillow's
    # parsers (a 25 MB file of empty segments would otherwise cost a minute of CPU before any pixel).
    max_chunks: int = 20_000
    # CPU seconds one image may spend decoding (the invocation's own deadline may cut it shorter).
    max_decode_seconds: float = 10.0
    # CPU seconds one image's encode may be estimated at (ips.shared.imaging.encode_cost): over it, TOO_COSTLY before
    # decoding. Half the process function's timeout: a fresh invocation has room for the fetch, the decode and this.
    max_encode_seconds: float = 30.0


@dataclass(frozen=True)
class CompressedImage:
    data: bytes  # the encoded output to store
    input_format: str  # detected from content: "JPEG", "PNG", "GIF", "WEBP", "BMP", "TIFF", "MPO"
    input_bytes: int
    output_bytes: int
    width: int  # output dimensions (after EXIF orientation)
    height: int
    kept_original: bool  # True when the (metadata-stripped) input JPEG was kept because re-encoding was larger
    output_format: str = "JPEG"  # "JPEG", "WEBP" or "AVIF"


class ImageRejected(Exception):
    """Permanent failure for this image: a stable machine code and a human reason."""

    def __init__(self, code: str, message: str) -> None:
        if code not in REJECTION_CODES:
            raise ValueError(f"unknown rejection code {code!r}")
        super().__init__(code, message)  # both in args, so the exception survives pickling
        self.code = code
        self.message = message

    def __str__(self) -> str:
        return self.message


class OutOfTime(ImageRejected):
    """A time budget ran out while decoding (TOO_COMPLEX), or would run out during the encode (TOO_COSTLY: its
    estimate is more than the caller has left). `invocation_deadline` says whether it was the caller's deadline
    (the invocation running out: worth another delivery with a fresh one) rather than the image's own CPU budget
    (as expensive next time)."""

    def __init__(self, code: str, message: str, invocation_deadline: bool) -> None:
        super().__init__(code, message)
        self.args = (code, message, invocation_deadline)  # what pickling passes back to __init__
        self.invocation_deadline = invocation_deadline
