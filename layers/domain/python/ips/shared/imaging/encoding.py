"""Output encoding for the compression engine: fit inside the requested box, then encode in the requested
format with no metadata. The engine (ips.shared.imaging) decodes and normalises the pixels; this module is what a
request's options change."""

from __future__ import annotations

import io

from PIL import Image

from ips.shared.imaging.encode_cost import output_size
from ips.shared.options import DEFAULT_OPTIONS, ImageOptions, OutputFormat

# AVIF's encoder speed (0 slowest .. 10 fastest): 6 is libavif's default trade-off and keeps an AVIF within a
# few times a JPEG's encoding time.
AVIF_SPEED = 6
WEBP_METHOD = 4  # libwebp's default effort


def fit(pixels: Image.Image, options: ImageOptions = DEFAULT_OPTIONS) -> tuple[Image.Image, bool]:
    """Scale down to fit inside (maxWidth, maxHeight), keeping the aspect ratio; never enlarge (the size is
    `ips.shared.imaging.encode_cost.output_size`'s: a box is narrowed to what the format can hold). Returns the image
    and whether it was resized."""
    size = output_size(pixels.size, options)
    if size == pixels.size:
        return pixels, False
    # reducing_gap: a fast integer box reduction first, then Lanczos over the last factor (Pillow's thumbnail).
    return pixels.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0), True


def encode(pixels: Image.Image, options: ImageOptions = DEFAULT_OPTIONS) -> bytes:
    buffer = io.BytesIO()
    if options.format is OutputFormat.JPEG:
        # Pillow 13 writes no EXIF, ICC or XMP unless asked, but it does copy image.info["comment"] (from a
        # JPEG COM or a GIF comment) into a COM segment by default: every metadata kind is switched off.
        pixels.save(
            buffer,
            "JPEG",
            quality=options.quality,
            optimize=True,
            exif=b"",
            icc_profile=None,
            xmp=None,
            comment=b"",
        )
    elif options.format is OutputFormat.WEBP:
        pixels.save(buffer, "WEBP", quality=options.quality, method=WEBP_METHOD, exif=b"", icc_profile=b"", xmp=b"")
    else:
        pixels.save(buffer, "AVIF", quality=options.quality, speed=AVIF_SPEED, exif=b"", icc_profile=b"", xmp=b"")
    return buffer.getvalue()
