"""Pixels to what a JPEG holds: the EXIF orientation, and 8-bit sRGB (RGB) or grey (L) from any mode Pillow
decodes (ICC profiles through LittleCMS, CMYK, alpha flattened onto white, 16-bit and float samples scaled)."""

from __future__ import annotations

import io
import struct
from typing import Final

from PIL import Image, ImageCms

from ips.shared.imaging.model import ImageRejected
from ips.shared.imaging.sniffing import describe

_ORIENTATION_TAG: Final = 0x0112
TRANSPOSE: Final = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def orientation(image: Image.Image) -> int:
    """EXIF Orientation (Pillow also reads XMP tiff:Orientation when EXIF has none, as exif_transpose does);
    1 when absent, out of range or the EXIF block cannot be parsed."""
    try:
        value = image.getexif().get(_ORIENTATION_TAG)
    except Exception:
        return 1
    return value if type(value) is int and 1 <= value <= 8 else 1


_WHITE: Final = (255, 255, 255)


def to_srgb(image: Image.Image, fmt: str, matte: tuple[int, int, int] | None = _WHITE) -> tuple[Image.Image, bool]:
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
        pixels = _to_rgb_or_l(image, matte)
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
            "UNSUPPORTED_FORMAT", f"{fmt} image in mode {image.mode} cannot be converted: {describe(exc)}"
        ) from None
    return pixels, changed


def _to_rgb_or_l(image: Image.Image, matte: tuple[int, int, int] | None) -> Image.Image:
    mode = image.mode
    has_transparency = image.info.get("transparency") is not None
    if mode in ("RGB", "L") and not has_transparency:
        return image
    if mode in ("RGBA", "LA"):
        return _flatten(image, matte)
    if mode in ("RGBa", "PA"):
        return _flatten(image.convert("RGBA"), matte)
    if mode == "La":
        return _flatten(image.convert("LA"), matte)
    if mode == "P":
        palette_alpha = image.palette is not None and "A" in image.palette.mode
        if has_transparency or palette_alpha:
            return _flatten(image.convert("RGBA"), matte)
        return image.convert("RGB")
    if mode in ("RGB", "L", "1") and has_transparency:  # a transparent colour key (PNG tRNS)
        return _flatten(image.convert("RGBA" if mode == "RGB" else "LA"), matte)
    if mode.startswith("I;16"):
        grey = _sixteen_bit_to_l(image)
        if has_transparency:
            alpha = image.convert("LA").getchannel("A")  # Pillow clips the grey here but the alpha is exact
            grey.putalpha(alpha)
            return _flatten(grey, matte)
        return grey
    if mode == "1":
        return image.convert("L")
    if mode in ("I", "F"):
        return _wide_to_l(image)
    if mode == "LAB":
        transform = ImageCms.buildTransform(ImageCms.createProfile("LAB"), ImageCms.createProfile("sRGB"), "LAB", "RGB")
        return transform.apply(image)
    return image.convert("RGB")  # YCbCr, HSV, RGBX; anything Pillow cannot convert raises ValueError


def _flatten(image: Image.Image, matte: tuple[int, int, int] | None) -> Image.Image:
    """Composite RGBA / LA onto the matte (a transparent pixel's stored colour is often black); with no matte
    (an output format with alpha) the image is returned as it is."""
    if matte is None:
        return image
    if image.mode == "LA" and matte[0] == matte[1] == matte[2]:
        base = Image.new("L", image.size, matte[0])
        base.paste(image.getchannel("L"), mask=image.getchannel("A"))
        return base
    if image.mode == "LA":
        image = image.convert("RGBA")  # grey with a coloured matte: the result has colour
    base = Image.new("RGB", image.size, matte)
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
    assert isinstance(low, int | float) and isinstance(high, int | float)  # one band: (min, max), not per band
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
