# PROVISIONAL stand-in so the pipeline can be exercised; the full engine replaces this file.
from __future__ import annotations

import io
from dataclasses import dataclass

from PIL import Image, ImageOps, UnidentifiedImageError


@dataclass(frozen=True)
class ImageLimits:
    max_bytes: int = 25 * 1024 * 1024
    max_pixels: int = 50_000_000


@dataclass(frozen=True)
class CompressedImage:
    data: bytes
    input_format: str
    input_bytes: int
    output_bytes: int
    width: int
    height: int
    kept_original: bool


class ImageRejected(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def compress_image(data: bytes, *, quality: int = 50, limits: ImageLimits = ImageLimits()) -> CompressedImage:
    if len(data) > limits.max_bytes:
        raise ImageRejected("TOO_LARGE", "too large")
    try:
        image = Image.open(io.BytesIO(data), formats=["JPEG", "PNG", "GIF", "WEBP", "BMP", "TIFF"])
    except UnidentifiedImageError:
        raise ImageRejected("NOT_AN_IMAGE", "not an image") from None
    if image.width * image.height > limits.max_pixels:
        raise ImageRejected("TOO_MANY_PIXELS", "too many pixels")
    try:
        image.load()
    except OSError as exc:
        raise ImageRejected("CORRUPT_IMAGE", str(exc)) from None
    fmt = image.format or "?"
    image = ImageOps.exif_transpose(image)
    if image.mode != "RGB":
        image = image.convert("RGB")
    out = io.BytesIO()
    image.save(out, "JPEG", quality=quality, optimize=True)
    return CompressedImage(out.getvalue(), fmt, len(data), out.tell(), image.width, image.height, False)
