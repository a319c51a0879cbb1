"""The container around the pixels, walked before any decoder runs: is it complete, and what will it cost?

Pillow's parsers step through JPEG segments, PNG chunks and GIF blocks in Python, and libjpeg makes a pass over
the image for every progressive scan, so a small file can cost minutes of CPU before or while it decodes. The
walk here counts what drives that cost and refuses the file (TOO_COMPLEX) before Pillow sees it; it also tells
whether the container reaches its end (JPEG EOI, PNG IEND, WebP RIFF length), so a truncated file fails even if
someone set Pillow's `ImageFile.LOAD_TRUNCATED_IMAGES`, and for a JPEG keeps the segment layout the
metadata-stripped original is cut from."""

from __future__ import annotations

import math
import re
import struct
from dataclasses import dataclass
from typing import Final

from ips.shared.imaging.model import ImageLimits, ImageRejected


@dataclass(frozen=True)
class JpegLayout:
    pieces: tuple[tuple[int, int] | bytes, ...]  # byte ranges of the input to keep, or replacement bytes
    keepable: bool  # frame type browsers decode and nothing else odd

    def stripped(self, data: bytes) -> bytes:
        return b"".join(p if isinstance(p, bytes) else data[p[0] : p[1]] for p in self.pieces)


@dataclass(frozen=True)
class Survey:
    complete: bool  # the container reaches its end
    jpeg: JpegLayout | None = None


def survey(data: bytes, limits: ImageLimits) -> Survey | None:
    """Walk a JPEG, PNG, GIF or WebP container (by its magic); None for other formats. Raises TOO_COMPLEX."""
    if data.startswith(b"\xff\xd8"):
        layout = _walk_jpeg(data, limits)
        return Survey(layout is not None, layout)
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return Survey(_walk_png(data, limits))
    if data.startswith((b"GIF87a", b"GIF89a")):
        _walk_gif(data, limits)
        return Survey(True)  # GIF has no length to check: truncation is Pillow's own to detect
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return Survey(struct.unpack_from("<I", data, 4)[0] + 8 <= len(data))
    return None


def check_complete(fmt: str, found: Survey | None) -> JpegLayout | None:
    """Refuse a truncated file before decoding it; for a JPEG also return its segment layout."""
    if fmt in ("JPEG", "MPO"):
        if found is None or found.jpeg is None:
            raise ImageRejected("CORRUPT_IMAGE", "JPEG data is truncated or malformed (no end of image)")
        return found.jpeg
    if fmt == "PNG" and (found is None or not found.complete):
        raise ImageRejected("CORRUPT_IMAGE", "PNG data is truncated or malformed (no IEND chunk)")
    if fmt == "WEBP" and (found is None or not found.complete):
        raise ImageRejected("CORRUPT_IMAGE", "WEBP data is truncated (shorter than its RIFF header says)")
    return None


def _too_many(what: str, limit: int) -> ImageRejected:
    return ImageRejected("TOO_COMPLEX", f"more than {limit} {what}: refused before decoding")


# --- PNG and GIF --------------------------------------------------------------------------------------------


def _walk_png(data: bytes, limits: ImageLimits) -> bool:
    """Whether the chunks reach IEND; TOO_COMPLEX past `max_chunks` chunks."""
    pos, end, count = 8, len(data), 0
    while pos + 8 <= end:
        count += 1
        if count > limits.max_chunks:
            raise _too_many("PNG chunks", limits.max_chunks)
        length, kind = struct.unpack_from(">I4s", data, pos)
        pos += 12 + length
        if pos > end:
            return False
        if kind == b"IEND":
            return True
    return False


def _walk_gif(data: bytes, limits: ImageLimits) -> None:
    """Count the extension blocks and sub-blocks before the first image (Pillow reads them one by one in
    Python); the image data itself is read by the C decoder, and later frames are never decoded."""
    end = len(data)
    if end < 13:
        return
    flags = data[10]
    pos = 13 + (3 << ((flags & 7) + 1) if flags & 0x80 else 0)
    count = 0
    while pos + 2 <= end and data[pos] == 0x21:  # an extension: introducer, label, then sub-blocks up to a 0
        pos += 2
        while pos < end and data[pos]:
            count += 1
            if count > limits.max_chunks:
                raise _too_many("GIF blocks before the first image", limits.max_chunks)
            pos += 1 + data[pos]
        pos += 1


# --- JPEG ---------------------------------------------------------------------------------------------------

# JPEG markers. A segment marker is 0xFF followed by its code; the ones below stand alone (no length field).
_SOI, _EOI, _SOS, _COM, _APP0, _APP14 = 0xD8, 0xD9, 0xDA, 0xFE, 0xE0, 0xEE
_STANDALONE: Final = frozenset({0x01, *range(0xD0, 0xD8)})
_FRAME_MARKERS: Final = frozenset(set(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC})
# Only Huffman-coded baseline, extended and progressive frames are kept as they are (browsers decode these;
# arithmetic-coded, lossless and hierarchical JPEGs they mostly do not).
_KEEPABLE_FRAMES: Final = frozenset({0xC0, 0xC1, 0xC2})
# Metadata segments removed when the original is kept: APP1 (EXIF with GPS, XMP), APP2 (ICC, MPF), APP3..APP13
# (Photoshop IRB/IPTC at APP13, vendor data), APP15 and COM; APP0 and APP14 only survive as JFIF and Adobe.
_DROPPED: Final = frozenset({*range(0xE1, 0xEE), 0xEF, _COM})
# In entropy-coded data 0xFF is followed by 0x00 (stuffing), 0xD0..0xD7 (restart) or 0xFF (fill): anything
# else is the next marker.
_NEXT_MARKER: Final = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")


class _ScanCost:
    """The decode work of a JPEG's scans: each scan is a pass over every block of the components it codes, so
    its cost is the pixels those components cover (subsampled ones cover fewer)."""

    def __init__(self, limits: ImageLimits) -> None:
        self._limits = limits
        self._blocks: dict[int, int] = {}  # component id -> 8x8 blocks
        self.scans = 0
        self.pixels = 0

    def frame(self, data: bytes, start: int) -> None:
        """A frame header (SOFn): dimensions and each component's sampling factors."""
        if self._blocks or start + 10 > len(data):
            return
        height, width, count = struct.unpack_from(">HHB", data, start + 5)
        if width * height > self._limits.max_pixels:
            return  # the pixel cap refuses it, with its own code
        end = min(len(data) - 1, start + 10 + 3 * count)
        components = [(data[at], data[at + 1] >> 4, data[at + 1] & 15) for at in range(start + 10, end, 3)]
        h_max = max((h for _, h, _ in components), default=1) or 1
        v_max = max((v for _, _, v in components), default=1) or 1
        for ident, h, v in components:
            columns = math.ceil(math.ceil(width * h / h_max) / 8)
            rows = math.ceil(math.ceil(height * v / v_max) / 8)
            self._blocks[ident] = columns * rows

    def scan(self, data: bytes, start: int) -> None:
        """A scan header (SOS): the components it codes."""
        self.scans += 1
        limits = self._limits
        if self.scans > limits.max_scans:
            raise _too_many("JPEG scans", limits.max_scans)
        count = data[start + 4] if start + 4 < len(data) else 0
        idents = data[start + 5 : start + 5 + 2 * count : 2]
        self.pixels += 64 * sum(self._blocks.get(ident, 0) for ident in idents)
        budget = limits.max_scan_passes * limits.max_pixels
        if self.pixels > budget:
            raise ImageRejected(
                "TOO_COMPLEX",
                f"JPEG scans would decode over {budget} pixels in all"
                f" ({limits.max_scan_passes} passes over {limits.max_pixels}): refused before decoding",
            )


def _walk_jpeg(data: bytes, limits: ImageLimits) -> JpegLayout | None:
    """Walk every segment and scan to EOI; None when the stream ends first (truncated) or is malformed.
    TOO_COMPLEX past `max_chunks` segments, `max_scans` scans or the scans' pixel budget.

    Bytes after EOI (camera trailers, appended "motion photo" videos, a second MPO image) are not part of
    the image and are not kept."""
    end = len(data)
    pieces: list[tuple[int, int] | bytes] = [(0, 2)]
    frame: int | None = None
    cost = _ScanCost(limits)
    segments = 0
    pos = 2
    while True:
        start = data.find(b"\xff", pos)  # libjpeg also skips junk before a marker (with a warning)
        if start < 0:
            return None
        pos = start
        while pos < end and data[pos] == 0xFF:  # fill bytes
            pos += 1
        if pos >= end:
            return None
        segments += 1
        if segments > limits.max_chunks:
            raise _too_many("JPEG segments", limits.max_chunks)
        marker, pos = data[pos], pos + 1
        if marker == _EOI:
            pieces.append((pos - 2, pos))
            return JpegLayout(tuple(pieces), keepable=frame in _KEEPABLE_FRAMES)
        if marker in _STANDALONE:
            pieces.append((pos - 2, pos))
            continue
        if marker == 0x00 or marker == _SOI or pos + 2 > end:
            return None
        length = struct.unpack_from(">H", data, pos)[0]
        seg_start, seg_end = pos - 2, pos + length
        if length < 2 or seg_end > end:
            return None
        pos = seg_end
        if marker in _FRAME_MARKERS:
            frame = marker if frame is None else frame
            cost.frame(data, seg_start)
        if marker in _DROPPED:
            continue
        if marker == _APP0:
            piece = _jfif_without_thumbnail(data, seg_start, seg_end)
            if piece is not None:
                pieces.append(piece)
            continue
        if marker == _APP14 and data[seg_start + 4 : seg_start + 9] != b"Adobe":
            continue
        pieces.append((seg_start, seg_end))
        if marker == _SOS:
            cost.scan(data, seg_start)
            match = _NEXT_MARKER.search(data, pos)
            if match is None:
                return None
            pieces.append((pos, match.start()))
            pos = match.start()


def _jfif_without_thumbnail(data: bytes, start: int, end: int) -> tuple[int, int] | bytes | None:
    """Keep a JFIF APP0 (it defines the colour space and pixel density) but never its embedded thumbnail;
    drop any other APP0 (JFXX thumbnails, AVI1, ...)."""
    payload = start + 4
    if data[payload : payload + 5] != b"JFIF\x00" or end - payload < 14:
        return None
    if data[payload + 12] == 0 and data[payload + 13] == 0 and end - payload == 14:
        return (start, end)
    header = bytearray(data[payload : payload + 14])
    header[12] = header[13] = 0  # thumbnail width and height
    return b"\xff\xe0" + struct.pack(">H", 16) + bytes(header)
