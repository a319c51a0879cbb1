"""The compression engine: untrusted image bytes in, a metadata-free JPEG out.

Pure domain code (Pillow only). The one entry point is `compress_image`:

1. refuse on size: source bytes over `ImageLimits.max_bytes`, then width x height over `max_pixels` read from
   the header, both before a single pixel is decoded or allocated (a decompression bomb costs a header parse;
   WebP's header is read here because Pillow's WebP opener already allocates the canvas);
2. detect the type from the content against an allow-list of decoders (the URL's extension and the server's
   Content-Type are never trusted) and check the container is complete (JPEG up to EOI, PNG up to IEND, WebP
   RIFF length), so a truncated file fails even if someone set Pillow's `ImageFile.LOAD_TRUNCATED_IMAGES`;
3. decode the first frame, apply the EXIF orientation, bring the pixels to 8-bit sRGB (RGB) or grey (L):
   ICC profiles are converted to sRGB with LittleCMS, CMYK becomes RGB, alpha is flattened onto white,
   16-bit and float samples are scaled (not clipped) to 8 bits;
4. encode a baseline JPEG at `quality` with optimised Huffman tables and no metadata at all (no EXIF, no GPS,
   no ICC, no XMP, no comment);
5. for an input JPEG whose pixels needed no change, keep the input instead when, with its metadata segments
   removed losslessly, it is smaller than the re-encoded one (`kept_original=True`).

Global state: none is written. Pillow's `Image.MAX_IMAGE_PIXELS` guard is left at its default (about 89 MP
warns, twice that raises) as a second line behind `ImageLimits.max_pixels`: its DecompressionBombError, and
its warning when warnings are errors, map to TOO_MANY_PIXELS. A limit above 178 MP is therefore capped by
Pillow. `ImageFile.LOAD_TRUNCATED_IMAGES` is never set, and its being set elsewhere is neutralised by step 2
for JPEG, PNG and WebP (for GIF, BMP and TIFF truncation detection is Pillow's own, which that flag disables).
Pillow reports damaged EXIF blocks with UserWarning; those go through the `warnings` module as usual (as
exceptions, when warnings are errors, they just mean "no orientation").
"""

from __future__ import annotations

import io
import re
import struct
from dataclasses import dataclass
from typing import Final

# The *ImagePlugin imports register the decoders we allow that Image.preinit() does not, so Image.open never
# falls back to Image.init(), which imports every plugin Pillow has (slow on a cold start, and a larger attack
# surface than the allow-list suggests).
from PIL import Image, ImageCms, MpoImagePlugin, TiffImagePlugin, WebPImagePlugin  # noqa: F401

# MPO (multi-picture JPEG from phones and 3D cameras) has no opener of its own: the JPEG one returns an
# MpoImageFile when the file carries an MPF index, so "JPEG" admits both.
_ALLOWED_FORMATS: Final = ("JPEG", "PNG", "GIF", "WEBP", "BMP", "TIFF")

REJECTION_CODES: Final = frozenset(
    {"TOO_LARGE", "TOO_MANY_PIXELS", "NOT_AN_IMAGE", "UNSUPPORTED_FORMAT", "CORRUPT_IMAGE"}
)


@dataclass(frozen=True)
class ImageLimits:
    max_bytes: int = 25 * 1024 * 1024  # source bytes cap
    max_pixels: int = 50_000_000  # width*height cap, checked from the header BEFORE decoding


@dataclass(frozen=True)
class CompressedImage:
    data: bytes  # JPEG bytes to store
    input_format: str  # detected from content: "JPEG", "PNG", "GIF", "WEBP", "BMP", "TIFF", "MPO"
    input_bytes: int
    output_bytes: int
    width: int  # output dimensions (after EXIF orientation)
    height: int
    kept_original: bool  # True when the (metadata-stripped) input JPEG was kept because re-encoding was larger


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


_DEFAULT_LIMITS: Final = ImageLimits()


def compress_image(data: bytes, *, quality: int = 50, limits: ImageLimits = _DEFAULT_LIMITS) -> CompressedImage:
    """Compress one image to JPEG at `quality`; raise ImageRejected for input that can never succeed.

    Deterministic: the same bytes, quality and limits give the same output bytes."""
    if not 1 <= quality <= 100:
        raise ValueError(f"JPEG quality must be 1..100, not {quality}")
    data = bytes(data)
    if len(data) > limits.max_bytes:
        raise ImageRejected("TOO_LARGE", f"image is {len(data)} bytes; the limit is {limits.max_bytes}")

    if canvas := _webp_canvas(data):  # Pillow's WebP opener allocates the canvas: check before it runs
        _check_pixels("WEBP", canvas, limits)
    image = _open(data)
    fmt = image.format or "UNKNOWN"
    width, height = image.size
    _check_pixels(fmt, image.size, limits)
    jpeg = _check_container(fmt, data)
    _load(image, fmt)

    orientation = _orientation(image)
    pixels, changed = _to_srgb(image, fmt)
    method = _TRANSPOSE.get(orientation)
    if method is not None:
        pixels, changed = pixels.transpose(method), True
    encoded = _encode(pixels, quality)

    # Keep-original: an untouched RGB/grey JPEG that re-encodes larger is stored as it came, minus every
    # metadata segment. Stripping is lossless, and metadata privacy (GPS in EXIF, XMP, comments) beats the few
    # bytes a re-encode would have saved or cost. Anything whose pixels we changed (orientation, colour space,
    # CMYK) is always re-encoded: the original would not look like our output.
    if jpeg is not None and jpeg.keepable and fmt == "JPEG" and not changed and pixels.mode in ("RGB", "L"):
        stripped = jpeg.stripped(data)
        if len(encoded) > len(stripped):
            return CompressedImage(stripped, fmt, len(data), len(stripped), width, height, kept_original=True)
    return CompressedImage(encoded, fmt, len(data), len(encoded), pixels.width, pixels.height, kept_original=False)


# --- opening and decoding -------------------------------------------------------------------------------


def _check_pixels(fmt: str, size: tuple[int, int], limits: ImageLimits) -> None:
    width, height = size
    if width < 1 or height < 1:
        raise ImageRejected("CORRUPT_IMAGE", f"{fmt} header declares an empty {width}x{height} image")
    if width * height > limits.max_pixels:
        raise ImageRejected(
            "TOO_MANY_PIXELS",
            f"{fmt} image is {width}x{height} = {width * height} pixels; the limit is {limits.max_pixels}",
        )


def _webp_canvas(data: bytes) -> tuple[int, int] | None:
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


def _open(data: bytes) -> Image.Image:
    """Parse the header only (Image.open is lazy); map every failure to a rejection code."""
    try:
        return Image.open(io.BytesIO(data), formats=_ALLOWED_FORMATS)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        # Pillow's own guard (its warning too, when warnings are errors) fires inside open, before our check.
        raise ImageRejected("TOO_MANY_PIXELS", f"decompression bomb refused: {exc}") from None
    except Image.UnidentifiedImageError:
        code, message = _classify_unidentified(data)
        raise ImageRejected(code, message) from None
    except MemoryError:
        raise
    except Exception as exc:  # untrusted input: any parser failure is this image's problem, not ours
        raise ImageRejected("CORRUPT_IMAGE", f"unreadable image header: {_describe(exc)}") from None


def _load(image: Image.Image, fmt: str) -> None:
    # load() before anything else: it is where decode errors surface, and saving an image opened from a buffer
    # that was not loaded makes Pillow 13 copy the whole decoded image first.
    try:
        image.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageRejected("TOO_MANY_PIXELS", f"decompression bomb refused: {exc}") from None
    except MemoryError:
        raise
    except Exception as exc:
        raise ImageRejected("CORRUPT_IMAGE", f"{fmt} data cannot be decoded: {_describe(exc)}") from None


def _describe(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


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


def _classify_unidentified(data: bytes) -> tuple[str, str]:
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


# --- container completeness ----------------------------------------------------------------------------


def _check_container(fmt: str, data: bytes) -> _JpegLayout | None:
    """Refuse a truncated file before decoding it; for a JPEG also return its segment layout."""
    if fmt in ("JPEG", "MPO"):
        layout = _parse_jpeg(data)
        if layout is None:
            raise ImageRejected("CORRUPT_IMAGE", "JPEG data is truncated or malformed (no end of image)")
        return layout
    if fmt == "PNG" and not _png_complete(data):
        raise ImageRejected("CORRUPT_IMAGE", "PNG data is truncated or malformed (no IEND chunk)")
    if fmt == "WEBP" and struct.unpack_from("<I", data, 4)[0] + 8 > len(data):
        raise ImageRejected("CORRUPT_IMAGE", "WEBP data is truncated (shorter than its RIFF header says)")
    return None


def _png_complete(data: bytes) -> bool:
    pos, end = 8, len(data)
    while pos + 8 <= end:
        length, kind = struct.unpack_from(">I4s", data, pos)
        pos += 12 + length
        if pos > end:
            return False
        if kind == b"IEND":
            return True
    return False


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


@dataclass(frozen=True)
class _JpegLayout:
    pieces: tuple[tuple[int, int] | bytes, ...]  # byte ranges of the input to keep, or replacement bytes
    keepable: bool  # frame type browsers decode and nothing else odd

    def stripped(self, data: bytes) -> bytes:
        return b"".join(p if isinstance(p, bytes) else data[p[0] : p[1]] for p in self.pieces)


def _parse_jpeg(data: bytes) -> _JpegLayout | None:
    """Walk every segment and scan to EOI; None when the stream ends first (truncated) or is malformed.

    Bytes after EOI (camera trailers, appended "motion photo" videos, a second MPO image) are not part of
    the image and are not kept."""
    end = len(data)
    if not data.startswith(b"\xff\xd8"):
        return None
    pieces: list[tuple[int, int] | bytes] = [(0, 2)]
    frame: int | None = None
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
        marker, pos = data[pos], pos + 1
        if marker == _EOI:
            pieces.append((pos - 2, pos))
            return _JpegLayout(tuple(pieces), keepable=frame in _KEEPABLE_FRAMES)
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


# --- pixels -------------------------------------------------------------------------------------------------

_ORIENTATION_TAG: Final = 0x0112
_TRANSPOSE: Final = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def _orientation(image: Image.Image) -> int:
    """EXIF Orientation (Pillow also reads XMP tiff:Orientation when EXIF has none, as exif_transpose does);
    1 when absent, out of range or the EXIF block cannot be parsed."""
    try:
        value = image.getexif().get(_ORIENTATION_TAG)
    except Exception:
        return 1
    return value if type(value) is int and 1 <= value <= 8 else 1


_WHITE: Final = (255, 255, 255)


def _to_srgb(image: Image.Image, fmt: str) -> tuple[Image.Image, bool]:
    """8-bit RGB in sRGB, or 8-bit L; returns the image and whether any pixel changed.

    The decoded image itself is returned (no copy) when it is already RGB or L without a profile to apply.
    An embedded ICC profile is honoured when its colour space matches the pixels (RGB, CMYK) and it is not
    sRGB already; grey profiles are ignored (the grey stays grey, gamma differences are negligible)."""
    profile = _embedded_profile(image)
    space = profile.profile.xcolor_space.strip() if profile is not None else None
    try:
        if image.mode == "CMYK":
            # Pillow's decoder already undoes Adobe's inverted CMYK. Without a CMYK profile the plain formula
            # (R = (255 - C) * (255 - K) / 255, ...) is the usual fallback for untagged CMYK.
            converted = _apply_profile(image, profile, "CMYK") if profile is not None and space == "CMYK" else None
            return (image.convert("RGB") if converted is None else converted), True
        pixels = _to_rgb_or_l(image)
        changed = pixels is not image
        # In place: `pixels` is either the decoded image or a fresh conversion, both ours to overwrite.
        if pixels.mode == "RGB" and profile is not None and space == "RGB":
            changed = _apply_profile(pixels, profile, "RGB", in_place=True) is not None or changed
    except ImageRejected:
        raise
    except MemoryError:
        raise
    except Exception as exc:
        raise ImageRejected(
            "UNSUPPORTED_FORMAT", f"{fmt} image in mode {image.mode} cannot be converted: {_describe(exc)}"
        ) from None
    return pixels, changed


def _to_rgb_or_l(image: Image.Image) -> Image.Image:
    mode = image.mode
    has_transparency = image.info.get("transparency") is not None
    if mode in ("RGB", "L") and not has_transparency:
        return image
    if mode in ("RGBA", "LA"):
        return _flatten(image)
    if mode in ("RGBa", "PA"):
        return _flatten(image.convert("RGBA"))
    if mode == "La":
        return _flatten(image.convert("LA"))
    if mode == "P":
        palette_alpha = image.palette is not None and "A" in image.palette.mode
        if has_transparency or palette_alpha:
            return _flatten(image.convert("RGBA"))
        return image.convert("RGB")
    if mode in ("RGB", "L", "1") and has_transparency:  # a transparent colour key (PNG tRNS)
        return _flatten(image.convert("RGBA" if mode == "RGB" else "LA"))
    if mode.startswith("I;16"):
        grey = _sixteen_bit_to_l(image)
        if has_transparency:
            alpha = image.convert("LA").getchannel("A")  # Pillow clips the grey here but the alpha is exact
            grey.putalpha(alpha)
            return _flatten(grey)
        return grey
    if mode == "1":
        return image.convert("L")
    if mode in ("I", "F"):
        return _wide_to_l(image)
    if mode == "LAB":
        transform = ImageCms.buildTransform(ImageCms.createProfile("LAB"), ImageCms.createProfile("sRGB"), "LAB", "RGB")
        return ImageCms.applyTransform(image, transform)
    return image.convert("RGB")  # YCbCr, HSV, RGBX; anything Pillow cannot convert raises ValueError


def _flatten(image: Image.Image) -> Image.Image:
    """Composite RGBA / LA onto white (a transparent pixel's stored colour is often black)."""
    if image.mode == "LA":
        base = Image.new("L", image.size, 255)
        base.paste(image.getchannel("L"), mask=image.getchannel("A"))
        return base
    base = Image.new("RGB", image.size, _WHITE)
    base.paste(image, mask=image)  # RGBA source and mask: Pillow blends by the alpha band without converting
    return base


def _sixteen_bit_to_l(image: Image.Image) -> Image.Image:
    # Pillow's convert("L") clips 16-bit samples at 255. Unpacking the raw samples as "L;16" keeps each
    # sample's high byte instead, a proper rescale: 65535 -> 255, 32768 -> 128, 257*n -> n.
    little = image.mode in ("I;16", "I;16L") or (image.mode == "I;16N" and _NATIVE_LITTLE)
    return Image.frombytes("L", image.size, image.tobytes(), "raw", "L;16" if little else "L;16B")


_NATIVE_LITTLE: Final = struct.pack("=H", 1) == b"\x01\x00"


def _wide_to_l(image: Image.Image) -> Image.Image:
    """32-bit integer or float grey to L. The sample range is not in the file, so it is inferred: values that
    fit 8 bits are kept, 16-bit integers and 0..1 floats are scaled, anything else is stretched min..max."""
    low, high = image.getextrema()
    if image.mode == "I" and low >= 0 and high <= 255:
        return image.convert("L")
    if image.mode == "I" and low >= 0 and high <= 65535:
        low, high = 0, 65535
    elif image.mode == "F" and low >= 0 and high <= 1.0:
        low, high = 0.0, 1.0
    elif image.mode == "F" and low >= 0 and high <= 255:
        low, high = 0.0, 255.0
    if high <= low:
        high = low + 1
    scale = 255 / (high - low)
    offset = 0.5 - low * scale
    return image.point(lambda v: v * scale + offset).convert("L")


def _embedded_profile(image: Image.Image) -> ImageCms.ImageCmsProfile | None:
    """The embedded ICC profile when converting with it would change anything; None when there is none,
    it is sRGB already (by its description), or it cannot be parsed (then the pixels are taken as sRGB)."""
    icc = image.info.get("icc_profile")
    if not icc:
        return None
    try:
        profile = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        description = (profile.profile.profile_description or "").strip().lower()
    except Exception:
        return None
    if _is_srgb(description):
        return None
    return profile


def _is_srgb(description: str) -> bool:
    # "sRGB IEC61966-2.1", "sRGB IEC61966-2-1 black scaled", "sRGB built-in", "sRGB" (lcms), "sRGB2014", ...
    # but not a linear-light sRGB ("sRGB-elle-V4-g10", "sRGB linear"), whose gamma differs.
    return description.startswith("srgb") and not any(word in description for word in ("linear", "g10"))


def _apply_profile(
    image: Image.Image, profile: ImageCms.ImageCmsProfile, mode: str, *, in_place: bool = False
) -> Image.Image | None:
    """Convert to sRGB with LittleCMS (perceptual intent, which falls back to relative colorimetric for the
    matrix/TRC profiles cameras and phones embed). None when LittleCMS refuses the profile."""
    try:
        transform = ImageCms.buildTransform(
            profile, ImageCms.createProfile("sRGB"), mode, "RGB", ImageCms.Intent.PERCEPTUAL
        )
    except Exception:  # a profile lcms cannot use (abstract, device link, broken tags): treat as sRGB
        return None
    if in_place:
        ImageCms.applyTransform(image, transform, inPlace=True)
        return image
    return ImageCms.applyTransform(image, transform)


# --- encoding -----------------------------------------------------------------------------------------------


def _encode(image: Image.Image, quality: int) -> bytes:
    buffer = io.BytesIO()
    # Pillow 13 writes no EXIF, ICC or XMP unless asked, but it does copy image.info["comment"] (from a JPEG
    # COM or a GIF comment) into a COM segment by default: every metadata kind is switched off explicitly.
    image.save(buffer, "JPEG", quality=quality, optimize=True, exif=b"", icc_profile=None, xmp=None, comment=b"")
    return buffer.getvalue()
