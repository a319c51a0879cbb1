"""Output quality: SSIM (Wang et al. 2004) on luma, of each output against the decoded, EXIF-oriented source.

The reference is built independently of the engine: Pillow decodes the source, applies the EXIF orientation,
converts an embedded non-sRGB ICC profile to sRGB (LittleCMS), CMYK to RGB, and composites alpha onto white
(what a browser shows on a white page). SSIM uses the paper's constants: an 11x11 Gaussian window with
sigma 1.5, K1 = 0.01, K2 = 0.03, L = 255, over the full-resolution luma (BT.601), valid region only."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageCms, ImageOps

_WINDOW = 11
_SIGMA = 1.5
_C1 = (0.01 * 255) ** 2
_C2 = (0.03 * 255) ** 2


def _kernel() -> np.ndarray:
    offsets = np.arange(_WINDOW, dtype=np.float64) - _WINDOW // 2
    weights = np.exp(-(offsets**2) / (2 * _SIGMA**2))
    return (weights / weights.sum()).astype(np.float32)


_KERNEL = _kernel()


def _blur(plane: np.ndarray) -> np.ndarray:
    """Separable Gaussian filter, 'valid' region: (h - 10) x (w - 10)."""
    height, width = plane.shape
    out_height, out_width = height - _WINDOW + 1, width - _WINDOW + 1
    rows = plane[:, :out_width] * _KERNEL[0]
    for tap in range(1, _WINDOW):
        rows += plane[:, tap : tap + out_width] * _KERNEL[tap]
    out = rows[:out_height] * _KERNEL[0]
    for tap in range(1, _WINDOW):
        out += rows[tap : tap + out_height] * _KERNEL[tap]
    return out


# Output rows per strip: the working set of one strip stays in the CPU cache, several times faster on big images.
_STRIP = 16


def ssim(reference: np.ndarray, candidate: np.ndarray) -> float:
    """Mean SSIM of two same-sized 2-D luma planes (values 0..255)."""
    if reference.shape != candidate.shape:
        raise ValueError(f"shapes differ: {reference.shape} vs {candidate.shape}")
    if min(reference.shape) < _WINDOW:
        # Too small for the window (the corpus has a 14x25 GIF): one global window instead.
        x, y = reference.astype(np.float64), candidate.astype(np.float64)
        mx, my = x.mean(), y.mean()
        vx, vy, cov = x.var(), y.var(), ((x - mx) * (y - my)).mean()
        return float(((2 * mx * my + _C1) * (2 * cov + _C2)) / ((mx**2 + my**2 + _C1) * (vx + vy + _C2)))
    total, count = 0.0, 0
    out_height = reference.shape[0] - _WINDOW + 1
    for top in range(0, out_height, _STRIP):
        bottom = min(top + _STRIP, out_height) + _WINDOW - 1
        x = reference[top:bottom].astype(np.float32)
        y = candidate[top:bottom].astype(np.float32)
        mx, my = _blur(x), _blur(y)
        mxx, myy, mxy = mx * mx, my * my, mx * my
        xx = _blur(x * x) - mxx
        yy = _blur(y * y) - myy
        xy = _blur(x * y) - mxy
        values = ((2 * mxy + _C1) * (2 * xy + _C2)) / ((mxx + myy + _C1) * (xx + yy + _C2))
        total += float(values.sum(dtype=np.float64))
        count += values.size
    return total / count


def luma(image: Image.Image) -> np.ndarray:
    """BT.601 luma of an RGB or L image as float32."""
    if image.mode == "L":
        return np.asarray(image, dtype=np.float32)
    rgb = np.asarray(image.convert("RGB"), dtype=np.float32)
    return rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114


def reference_image(data: bytes) -> Image.Image:
    """The source as a viewer shows it: decoded, EXIF-oriented, in sRGB, alpha over white."""
    source = Image.open(io.BytesIO(data))
    source.load()
    icc = source.info.get("icc_profile")
    oriented = ImageOps.exif_transpose(source)
    if icc and oriented.mode in ("RGB", "CMYK"):
        try:
            profile = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            if profile.profile.xcolor_space.strip() == oriented.mode:
                oriented = ImageCms.profileToProfile(
                    oriented, profile, ImageCms.createProfile("sRGB"), outputMode="RGB"
                )  # type: ignore[assignment]
        except (OSError, ImageCms.PyCMSError):
            pass
    if oriented.mode in ("RGBA", "LA", "PA", "P", "RGBa", "La") or "transparency" in oriented.info:
        rgba = oriented.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return oriented if oriented.mode in ("RGB", "L") else oriented.convert("RGB")


def ssim_of_outputs(source: Path, outputs: dict[str, bytes]) -> dict[str, float | None]:
    """SSIM of each named output (JPEG bytes) against the source's reference; None when sizes differ."""
    reference = luma(reference_image(source.read_bytes()))
    scores: dict[str, float | None] = {}
    for name, data in outputs.items():
        with Image.open(io.BytesIO(data)) as decoded:
            candidate = luma(decoded)
        scores[name] = ssim(reference, candidate) if candidate.shape == reference.shape else None
    return scores
