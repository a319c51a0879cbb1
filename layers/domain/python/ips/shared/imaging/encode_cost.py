"""What encoding an output will cost, and whether its format can hold it, known from the source's size before a
pixel is decoded.

An encode is one uninterruptible codec call (AVIF at quality 95 spends about 1.7 s of CPU per megapixel of noise),
so it is judged before it starts: the output's size (the fit-inside box, which `ips.shared.imaging.encoding.fit`
applies), the format's largest side, and an estimate of its CPU seconds: output megapixels x a factor per format,
quality and alpha, measured by `python -m bench --only encode` (bench/encode_cost.py). The engine refuses an output its
format cannot hold (UNSUPPORTED_DIMENSIONS) or whose estimate is over the image's encode budget (TOO_COSTLY),
and stops before an encode the invocation has no time left for; the quota weighs an image by the same estimate
(ips.shared.quotas)."""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass
from typing import Final

from ips.shared.imaging.model import ImageRejected
from ips.shared.options import ImageOptions, OutputFormat

# The largest side each encoder accepts (Pillow 13): libwebp's 16,383; libjpeg's 65,500; AV1's 65,536 (an
# output over 50 MP cannot be that long, so for AVIF only an extreme aspect ratio gets there).
MAX_SIDE: Final = {OutputFormat.JPEG: 65_500, OutputFormat.WEBP: 16_383, OutputFormat.AVIF: 65_536}

# CPU seconds per output megapixel at each quality point, for opaque outputs and for outputs that keep alpha
# (JPEG never does: its matte flattens it). Between two points the factor is interpolated, below the first it is
# the first's. Each is the most any subject cost (six corpus photos and uniform noise of 2 MP each; noise is the
# costliest content for every codec, and what an attacker would send), times bench.encode_cost.SAFETY (1.25),
# measured on the bench machine (2 shared cores, load 4 to 6; Pillow 13.0.0, libavif 1.4.2 at speed 6, libwebp
# method 4) on 2026-12-06 with `python -m bench.encode_cost` (it prints these lines); a second run,
#     python -m bench --only encode --out bench/results/encode-cost.json
# measured at most 91% of each (docs/performance.md).
QUALITY_POINTS: Final = (1, 25, 50, 75, 95)
SECONDS_PER_MEGAPIXEL: Final[dict[tuple[OutputFormat, bool], tuple[float, ...]]] = {
    (OutputFormat.JPEG, False): (0.008, 0.011, 0.017, 0.022, 0.027),
    (OutputFormat.WEBP, False): (0.121, 0.155, 0.168, 0.215, 0.259),
    (OutputFormat.WEBP, True): (0.519, 0.54, 0.539, 0.551, 0.581),
    (OutputFormat.AVIF, False): (0.279, 0.4, 0.936, 1.35, 2.1),
    (OutputFormat.AVIF, True): (0.465, 0.764, 1.28, 1.91, 3.0),
}


@dataclass(frozen=True)
class EncodePlan:
    """The output an encode will produce and what it is estimated to cost."""

    width: int
    height: int
    alpha: bool  # whether the output keeps an alpha channel
    seconds: float  # estimated CPU seconds of the encode

    @property
    def size(self) -> tuple[int, int]:
        return self.width, self.height


def output_size(size: tuple[int, int], options: ImageOptions) -> tuple[int, int]:
    """The output's size: the source's, or fitted inside the request's box, never enlarged. A request that gives
    a box lets its output be scaled down, so the box is also narrowed to what the format can hold (a WebP asked
    to fit 16,384 px gets 16,383); one that gives none keeps the source's size, whatever the format can hold."""
    bounds = options.bounds
    if bounds is None:
        return size
    largest = MAX_SIDE[options.format]
    width, height = size
    scale = min(min(bounds[0], largest) / width, min(bounds[1], largest) / height)
    if scale >= 1:
        return size
    return max(1, round(width * scale)), max(1, round(height * scale))


def seconds_per_megapixel(fmt: OutputFormat, quality: int, alpha: bool) -> float:
    """The recorded factor at `quality`, interpolated between the measured quality points."""
    factors = SECONDS_PER_MEGAPIXEL[fmt, alpha and fmt.keeps_alpha]
    above = bisect_right(QUALITY_POINTS, quality)
    if above == 0:
        return factors[0]
    if above == len(QUALITY_POINTS):
        return factors[-1]
    low, high = QUALITY_POINTS[above - 1], QUALITY_POINTS[above]
    share = (quality - low) / (high - low)
    return factors[above - 1] + share * (factors[above] - factors[above - 1])


def plan_encode(size: tuple[int, int], options: ImageOptions, *, alpha: bool, max_seconds: float) -> EncodePlan:
    """The encode of a `size` image (oriented, before fitting) as `options` ask. Raises ImageRejected
    UNSUPPORTED_DIMENSIONS when the format cannot hold the output, TOO_COSTLY when its estimate is over
    `max_seconds`."""
    width, height = output_size(size, options)
    fmt = options.format
    largest = MAX_SIDE[fmt]
    if width > largest or height > largest:
        fits = ", ".join(other.value for other in OutputFormat if max(width, height) <= MAX_SIDE[other])
        raise ImageRejected(
            "UNSUPPORTED_DIMENSIONS",
            f"a {fmt.pillow_name} image can be at most {largest:,} px a side and this one would be {width}x{height}: "
            f"give maxWidth/maxHeight to have it scaled down" + (f", or choose {fits}" if fits else ""),
        )
    seconds = width * height / 1e6 * seconds_per_megapixel(fmt, options.quality, alpha)
    if seconds > max_seconds:
        raise ImageRejected(
            "TOO_COSTLY",
            f"encoding it as a {width}x{height} {fmt.pillow_name} at quality {options.quality} is estimated at "
            f"{seconds:.1f} s of CPU, over the {max_seconds:g} s one image may use: ask for a smaller "
            "maxWidth/maxHeight, a lower quality or another format",
        )
    return EncodePlan(width, height, alpha and fmt.keeps_alpha, seconds)
