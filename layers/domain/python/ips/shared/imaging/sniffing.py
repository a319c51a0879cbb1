"""What untrusted bytes are, judged from their content alone (never the URL's extension or the server's type)."""

from __future__ import annotations

import struct
from typing import Final


def webp_canvas(data: bytes) -> tuple[int, int] | None:
    """The canvas size a WebP header declares (lossy VP8, lossless VP8L or extended VP8X), else None."""
    if len(data) < 30 or data[:4] != b"RIFF" or data[8:12] != b"WEBP":
        return None
    chunk = data[12:16]
    if chunk == b"VP8 " and data[23:26] == b"\x9d\x01\x2a":
        width, height = struct.unpack_from("<HH", data, 26)
        return width & 0x3FFF, height & 0x3FFF
    if chunk == b"VP8L" and data[20] == 0x2F:
        bits = int.from_bytes(data[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8X":
        return int.from_bytes(data[24:27], "little") + 1, int.from_bytes(data[27:30], "little") + 1
    return None


# Formats we decode: bytes that start like one of these but do not open are a damaged file of that format.
_ALLOWED_MAGIC: Final = (
    (b"\xff\xd8", "JPEG"),
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"II+\x00", "TIFF"),
    (b"MM\x00+", "TIFF"),
)
# Image formats we deliberately do not decode.
_UNSUPPORTED_MAGIC: Final = (
    (b"\xff\x0a", "JPEG XL"),
    (b"\x00\x00\x00\x0cJXL \r\n\x87\n", "JPEG XL"),
    (b"\x00\x00\x00\x0cjP  \r\n\x87\n", "JPEG 2000"),
    (b"\xff\x4f\xff\x51", "JPEG 2000"),
    (b"8BPS", "Photoshop PSD"),
    (b"\x00\x00\x01\x00", "ICO"),
    (b"qoif", "QOI"),
    (b"DDS ", "DDS"),
    (b"icns", "ICNS"),
    (b"v/1\x01", "OpenEXR"),
)
_HEIF_BRANDS: Final = {b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1"}
_AVIF_BRANDS: Final = {b"avif", b"avis"}
_BMP_HEADER_SIZES: Final = {12, 16, 40, 52, 56, 64, 108, 124}


def classify_unidentified(data: bytes) -> tuple[str, str]:
    for magic, name in _ALLOWED_MAGIC:
        if data.startswith(magic):
            return "CORRUPT_IMAGE", f"starts like a {name} file but its header cannot be read"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "CORRUPT_IMAGE", "starts like a WEBP file but its header cannot be read"
    if data[:2] == b"BM" and len(data) >= 18 and struct.unpack_from("<I", data, 14)[0] in _BMP_HEADER_SIZES:
        return "CORRUPT_IMAGE", "starts like a BMP file but its header cannot be read"
    for magic, name in _UNSUPPORTED_MAGIC:
        if data.startswith(magic):
            return "UNSUPPORTED_FORMAT", f"{name} images are not supported"
    if data[4:8] == b"ftyp":
        brand = data[8:12]
        if brand in _AVIF_BRANDS:
            return "UNSUPPORTED_FORMAT", "AVIF images are not supported"
        if brand in _HEIF_BRANDS:
            return "UNSUPPORTED_FORMAT", "HEIF/HEIC images are not supported"
    head = data[:1024].lstrip().lower()
    if head.startswith(b"<svg") or (head.startswith(b"<?xml") and b"<svg" in head):
        return "UNSUPPORTED_FORMAT", "SVG images are not supported"
    return "NOT_AN_IMAGE", f"content is not an image ({_sniff(data)})"


def _sniff(data: bytes) -> str:
    if not data:
        return "empty body"
    head = data[:512].lstrip().lower()
    if head.startswith((b"<!doctype html", b"<html")) or b"<html" in head:
        return "looks like an HTML page"
    if head.startswith(b"%pdf"):
        return "looks like a PDF document"
    if head.startswith((b"{", b"[")):
        return "looks like JSON"
    return f"{len(data)} bytes starting {data[:8].hex()}"


def describe(exc: BaseException) -> str:
    """An exception from a parser, as a reason a person can read."""
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
