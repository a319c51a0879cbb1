"""The compression engine: untrusted image bytes in, a metadata-free JPEG out.

Pure domain code (Pillow only). The one entry point is `compress_image`:

1. refuse on size: source bytes over `ImageLimits.max_bytes`, then width x height over `max_pixels` read from
   the header, both before a single pixel is decoded or allocated (a decompression bomb costs a header parse;
   WebP's header is read here because Pillow's WebP opener already allocates the canvas);
2. refuse on cost (TOO_COMPLEX), before Pillow parses anything: the container is walked (`containers`) and
   JPEG scans, the pixels those scans decode, and JPEG segments / PNG chunks / GIF blocks are counted;
3. detect the type from the content against an allow-list of decoders (the URL's extension and the server's
   Content-Type are never trusted; TIFF only with the compressions in `_TIFF_COMPRESSIONS`) and check the
   container is complete (JPEG up to EOI, PNG up to IEND, WebP RIFF length), so a truncated file fails even if
   someone set Pillow's `ImageFile.LOAD_TRUNCATED_IMAGES`;
4. plan the encode from the header (`ips.shared.imaging.encode_cost`): the output's size must fit its format
   (UNSUPPORTED_DIMENSIONS) and its estimated CPU seconds the image's encode budget (`max_encode_seconds`,
   TOO_COSTLY), both before a pixel is decoded; an estimate longer than the caller's `deadline` leaves raises
   `OutOfTime` (TOO_COSTLY, worth a fresh invocation); then the caller's `admit` sees the plan (the work quota);
5. decode the first frame (later frames and pages are never decoded) within a time budget: the image's own
   CPU seconds (`max_decode_seconds`) and the caller's `deadline`, checked each time the decoder reads more
   input, and again after decoding (TOO_COMPLEX, raised as `OutOfTime`);
6. apply the EXIF orientation, bring the pixels to 8-bit sRGB (RGB) or grey (L) (`colour`);
7. plan the encode again from the pixels themselves (the header's EXIF may not be all of it) and check its
   estimate against the time left, then encode a baseline JPEG at `quality` with optimised Huffman tables and
   no metadata at all (no EXIF, no GPS, no ICC, no XMP, no comment), or, as a request's options say
   (`ips.shared.imaging.encoding`), fit it inside a box and encode WebP / AVIF (alpha kept) or JPEG with another matte.
   The encode is one codec call that cannot be interrupted: the plan is what keeps it inside the budgets;
8. for an input JPEG whose pixels needed no change, keep the input instead when, with its metadata segments
   removed losslessly, it is smaller than the re-encoded one (`kept_original=True`).

Global state: none is written. Pillow's `Image.MAX_IMAGE_PIXELS` guard is left at its default (about 89 MP
warns, twice that raises) as a second line behind `ImageLimits.max_pixels`: its DecompressionBombError, and
its warning when warnings are errors, map to TOO_MANY_PIXELS. A limit above 178 MP is therefore capped by
Pillow. `ImageFile.LOAD_TRUNCATED_IMAGES` is never set, and its being set elsewhere is neutralised by step 3
for JPEG, PNG and WebP (for GIF, BMP and TIFF truncation detection is Pillow's own, which that flag disables).
Pillow reports damaged EXIF blocks with UserWarning; those go through the `warnings` module as usual (as
exceptions, when warnings are errors, they just mean "no orientation").
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from typing import Final

# The *ImagePlugin imports register the decoders we allow that Image.preinit() does not, so Image.open never
# falls back to Image.init(), which imports every plugin Pillow has (slow on a cold start, and a larger attack
# surface than the allow-list suggests).
from PIL import Image, ImageFile, MpoImagePlugin, TiffImagePlugin, UnidentifiedImageError, WebPImagePlugin  # noqa: F401

from ips.shared.imaging.colour import TRANSPOSE, orientation, to_srgb
from ips.shared.imaging.containers import check_complete, survey
from ips.shared.imaging.encode_cost import EncodePlan, plan_encode
from ips.shared.imaging.encoding import encode, fit
from ips.shared.imaging.model import CompressedImage, ImageLimits, ImageRejected, OutOfTime
from ips.shared.imaging.sniffing import classify_unidentified, describe, webp_canvas
from ips.shared.options import DEFAULT_OPTIONS, ImageOptions, OutputFormat

# MPO (multi-picture JPEG from phones and 3D cameras) has no opener of its own: the JPEG one returns an
# MpoImageFile when the file carries an MPF index, so "JPEG" admits both.
_ALLOWED_FORMATS: Final = ("JPEG", "PNG", "GIF", "WEBP", "BMP", "TIFF")
# TIFF is decoded by libtiff in one uninterruptible call, so only the compressions whose cost is linear in
# the pixels are let through. JPEG-in-TIFF (old and new style) would bring back the progressive-scan bomb;
# CCITT fax, JBIG, LZMA, ZSTD, WebP, JPEG 2000, SGILog, PixarLog and ThunderScan are rare in product photos
# and each is more libtiff code facing the Internet.
_TIFF_COMPRESSIONS: Final = frozenset({"raw", "tiff_lzw", "tiff_adobe_deflate", "tiff_deflate", "packbits"})
# Bytes the decoder is given per read: between reads the time budget is checked, and a progressive JPEG scan
# can cost a pass over the whole image in a few dozen bytes.
_DECODE_READ_BYTES: Final = 16 * 1024
# Orientations that swap width and height, and the decoded modes that carry alpha.
_TRANSPOSING: Final = frozenset({5, 6, 7, 8})
_ALPHA_MODES: Final = frozenset({"RGBA", "LA"})

_DEFAULT_LIMITS: Final = ImageLimits()


def compress_image(
    data: bytes,
    *,
    quality: int = 50,
    limits: ImageLimits = _DEFAULT_LIMITS,
    deadline: float | None = None,
    options: ImageOptions | None = None,
    admit: Callable[[EncodePlan], None] | None = None,
) -> CompressedImage:
    """Compress one image to JPEG at `quality`, or as `options` say (ips.shared.imaging.encoding: format, quality,
    fit-inside size, matte); raise ImageRejected for input that can never succeed.

    `deadline` (a `time.monotonic()` instant) is when the caller needs an answer by: decoding past it, or an
    encode estimated to end past it, raises OutOfTime with `invocation_deadline=True`. `admit` is shown the
    encode's plan before anything is decoded, and may refuse the image by raising. Deterministic: the same
    bytes, quality and limits give the same output bytes."""
    if options is None:
        if not 1 <= quality <= 100:
            raise ValueError(f"JPEG quality must be 1..100, not {quality}")
        options = DEFAULT_OPTIONS.model_copy(update={"quality": quality})
    data = bytes(data)
    if len(data) > limits.max_bytes:
        raise ImageRejected("TOO_LARGE", f"image is {len(data)} bytes; the limit is {limits.max_bytes}")

    if canvas := webp_canvas(data):  # Pillow's WebP opener allocates the canvas: check before it runs
        _check_pixels("WEBP", canvas, limits)
    found = survey(data, limits)
    source = _TimedSource(data)
    image = _open(source, data)
    fmt = image.format or "UNKNOWN"
    width, height = image.size
    _check_pixels(fmt, image.size, limits)
    _check_decoder(image, fmt)
    jpeg = check_complete(fmt, found)
    oriented = (height, width) if orientation(image) in _TRANSPOSING else (width, height)
    plan = plan_encode(oriented, options, alpha=_has_alpha(image), max_seconds=limits.max_encode_seconds)
    _check_time_for(plan, deadline)
    if admit is not None:
        admit(plan)
    source.arm(limits.max_decode_seconds, deadline)
    _load(image, fmt)
    source.check()

    pixels, changed = to_srgb(image, fmt, None if options.format.keeps_alpha else options.matte)
    method = TRANSPOSE.get(orientation(image))
    if method is not None:
        pixels, changed = pixels.transpose(method), True
    pixels, resized = fit(pixels, options)
    source.check()
    alpha = pixels.mode in _ALPHA_MODES
    _check_time_for(plan_encode(pixels.size, options, alpha=alpha, max_seconds=limits.max_encode_seconds), deadline)
    encoded = encode(pixels, options)
    same_output = options.format is OutputFormat.JPEG and not resized

    # Keep-original: an untouched RGB/grey JPEG that re-encodes larger is stored as it came, minus every
    # metadata segment. Stripping is lossless, and metadata privacy (GPS in EXIF, XMP, comments) beats the few
    # bytes a re-encode would have saved or cost. Anything whose pixels we changed (orientation, colour space,
    # CMYK) is always re-encoded: the original would not look like our output.
    # Only for same-format, same-size output: a resized or WebP/AVIF output is what the client asked for.
    keepable = same_output and jpeg is not None and jpeg.keepable and fmt == "JPEG"
    if keepable and jpeg is not None and not changed and pixels.mode in ("RGB", "L"):
        stripped = jpeg.stripped(data)
        if len(encoded) > len(stripped):
            return CompressedImage(stripped, fmt, len(data), len(stripped), width, height, kept_original=True)
    output_format = options.format.pillow_name
    return CompressedImage(
        encoded,
        fmt,
        len(data),
        len(encoded),
        pixels.width,
        pixels.height,
        kept_original=False,
        output_format=output_format,
    )


# --- planning, opening and decoding ---------------------------------------------------------------------


def _has_alpha(image: Image.Image) -> bool:
    """Whether the decoded pixels will carry alpha, from the header: an alpha band, a transparent colour key
    (PNG tRNS, GIF) or a palette with alpha."""
    palette = image.palette if image.mode == "P" else None
    return (
        "A" in image.mode
        or "a" in image.mode
        or image.info.get("transparency") is not None
        or (palette is not None and "A" in palette.mode)
    )


def _check_time_for(plan: EncodePlan, deadline: float | None) -> None:
    """An encode cannot be stopped once started: it starts only when its estimate ends before the deadline. A
    deadline already past is the decode's to report (its first read stops it: TOO_COMPLEX, as before)."""
    if deadline is None:
        return
    left = deadline - time.monotonic()
    if 0 < left < plan.seconds:
        raise OutOfTime(
            "TOO_COSTLY",
            f"encoding it is estimated at {plan.seconds:.1f} s of CPU, "
            f"more than the invocation had left ({left:.1f} s)",
            True,
        )


class _TimedSource(io.BytesIO):
    """The image bytes as Pillow's decoders read them: once armed, every read first checks the time budgets
    (this thread's CPU time for the image's own budget, the monotonic clock for the caller's deadline), so a
    decoder that burns CPU on little input (progressive JPEG scans) is stopped between two reads."""

    _cpu_until: float | None = None
    _deadline: float | None = None

    def arm(self, cpu_seconds: float, deadline: float | None) -> None:
        self._cpu_until = time.thread_time() + cpu_seconds
        self._deadline = deadline

    def check(self) -> None:
        if self._deadline is not None and time.monotonic() > self._deadline:
            raise OutOfTime("TOO_COMPLEX", "decoding did not finish before the invocation's deadline", True)
        if self._cpu_until is not None and time.thread_time() > self._cpu_until:
            raise OutOfTime("TOO_COMPLEX", "decoding took more CPU time than one image may use", False)

    def read(self, size: int | None = -1, /) -> bytes:
        self.check()
        return super().read(size)


def _check_pixels(fmt: str, size: tuple[int, int], limits: ImageLimits) -> None:
    width, height = size
    if width < 1 or height < 1:
        raise ImageRejected("CORRUPT_IMAGE", f"{fmt} header declares an empty {width}x{height} image")
    if width * height > limits.max_pixels:
        raise ImageRejected(
            "TOO_MANY_PIXELS",
            f"{fmt} image is {width}x{height} = {width * height} pixels; the limit is {limits.max_pixels}",
        )


def _check_decoder(image: ImageFile.ImageFile, fmt: str) -> None:
    if fmt == "TIFF":
        compression = image.info.get("compression", "raw")
        if compression not in _TIFF_COMPRESSIONS:
            raise ImageRejected("UNSUPPORTED_FORMAT", f"TIFF images with {compression} compression are not supported")
    image.decodermaxblock = _DECODE_READ_BYTES


def _open(source: io.BytesIO, data: bytes) -> ImageFile.ImageFile:
    """Parse the header only (Image.open is lazy); map every failure to a rejection code."""
    try:
        return Image.open(source, formats=_ALLOWED_FORMATS)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        # Pillow's own guard (its warning too, when warnings are errors) fires inside open, before our check.
        raise ImageRejected("TOO_MANY_PIXELS", f"decompression bomb refused: {exc}") from None
    except UnidentifiedImageError:
        code, message = classify_unidentified(data)
        raise ImageRejected(code, message) from None
    except MemoryError:
        raise
    except Exception as exc:  # untrusted input: any parser failure is this image's problem, not ours
        raise ImageRejected("CORRUPT_IMAGE", f"unreadable image header: {describe(exc)}") from None


def _load(image: Image.Image, fmt: str) -> None:
    # load() before anything else: it is where decode errors surface, and saving an image opened from a buffer
    # that was not loaded makes Pillow 13 copy the whole decoded image first.
    try:
        image.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageRejected("TOO_MANY_PIXELS", f"decompression bomb refused: {exc}") from None
    except (ImageRejected, MemoryError):
        raise
    except Exception as exc:
        raise ImageRejected("CORRUPT_IMAGE", f"{fmt} data cannot be decoded: {describe(exc)}") from None
