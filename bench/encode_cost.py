"""Encode cost: the CPU seconds per output megapixel that `ips.shared.imaging.encode_cost` estimates an encode's cost
with.

For every output format, quality point (`ips.shared.imaging.encode_cost.QUALITY_POINTS`) and alpha (opaque, or kept:
WebP and AVIF), each subject is encoded the way the engine encodes (`ips.shared.imaging.encoding.encode`) and its CPU
time (the process's, since AVIF's encoder may run threads) is divided by its megapixels. The subjects are corpus photos
scaled to about `--megapixels` and uniform noise of the same size: the costliest content for every codec, and
what an attacker would send. With alpha, a photo's alpha is its own luminance and the noise's is noise.

The factor to record is the most any subject cost, times SAFETY (the machine is shared; one run is not the
costliest run). The part's target is that the factors in the code cover every measurement: a codec upgrade or
a slower machine that makes them underestimate shows here as missed, with the factors to record instead.

    python -m bench --only encode
    python -m bench.encode_cost [--images 6] [--megapixels 2]   # alone; prints the table to paste
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from typing import Any

from PIL import Image, ImageOps

from bench.corpus import CorpusImage, load_corpus

SAFETY = 1.25  # recorded factor = the most any subject cost x this
Log = Callable[[str], None]


def _scaled(image: Image.Image, megapixels: float) -> Image.Image:
    scale = min(1.0, (megapixels * 1e6 / (image.width * image.height)) ** 0.5)
    if scale == 1.0:
        return image
    return image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))))


def subjects(images: list[CorpusImage], count: int, megapixels: float) -> dict[str, dict[bool, Image.Image]]:
    """Each subject opaque (False) and with alpha (True): `count` corpus photos, the largest first, and noise."""
    chosen = sorted(images, key=lambda image: image.pixels, reverse=True)[:count]
    found: dict[str, dict[bool, Image.Image]] = {}
    for image in chosen:
        with Image.open(image.path) as opened:
            rgb = _scaled(ImageOps.exif_transpose(opened).convert("RGB"), megapixels)
        rgba = rgb.copy()
        rgba.putalpha(rgb.convert("L"))
        found[image.name] = {False: rgb, True: rgba}
    width = height = round((megapixels * 1e6) ** 0.5)
    found["noise"] = {
        False: Image.frombytes("RGB", (width, height), os.urandom(width * height * 3)),
        True: Image.frombytes("RGBA", (width, height), os.urandom(width * height * 4)),
    }
    return found


def cpu_seconds_per_megapixel(pixels: Image.Image, fmt: Any, quality: int) -> float:
    from ips.shared.imaging.encoding import encode
    from ips.shared.options import ImageOptions

    options = ImageOptions(format=fmt, quality=quality)
    started = time.process_time()
    encode(pixels, options)
    return (time.process_time() - started) / (pixels.width * pixels.height / 1e6)


def run_encode_cost(images: list[CorpusImage], log: Log, *, count: int = 6, megapixels: float = 2.0) -> dict[str, Any]:
    from ips.shared.imaging.encode_cost import QUALITY_POINTS, SECONDS_PER_MEGAPIXEL

    chosen = subjects(images, count, megapixels)
    log(f"encode: {len(chosen)} subjects of about {megapixels} MP, {len(SECONDS_PER_MEGAPIXEL)} kinds")
    rows: dict[str, Any] = {}
    worst_cover = None
    for (fmt, alpha), recorded in SECONDS_PER_MEGAPIXEL.items():
        kind = f"{fmt.value}{' alpha' if alpha else ''}"
        measured: list[float] = []
        costliest: list[str] = []
        for quality in QUALITY_POINTS:
            costs = {name: cpu_seconds_per_megapixel(pair[alpha], fmt, quality) for name, pair in chosen.items()}
            name = max(costs, key=lambda subject: costs[subject])
            measured.append(costs[name])
            costliest.append(name)
        cover = min(factor / cost for factor, cost in zip(recorded, measured, strict=True))
        worst_cover = cover if worst_cover is None else min(worst_cover, cover)
        rows[kind] = {
            "qualities": list(QUALITY_POINTS),
            "measured_max_s_per_mp": measured,
            "costliest_subject": costliest,
            "to_record": [round(cost * SAFETY, 3) for cost in measured],
            "recorded": list(recorded),
            "recorded_vs_measured": cover,
        }
        figures = zip(QUALITY_POINTS, measured, strict=True)
        log(f"encode: {kind}: " + ", ".join(f"q{quality} {cost:.3f}" for quality, cost in figures))
    return {
        "subjects": sorted(chosen),
        "megapixels": megapixels,
        "safety": SAFETY,
        "kinds": rows,
        "targets": [
            {
                "name": "encode estimate covers the measured cost",
                "actual": worst_cover,
                "target": ">= 1.00 (recorded factor / the most any subject cost, at every format and quality)",
                "met": worst_cover is not None and worst_cover >= 1.0,
            }
        ],
    }


def encode_cost_rows(encode: dict[str, Any]) -> list[list[str]]:
    from bench.report import verdict

    target = encode["targets"][0]
    rows = [
        [
            f"encode CPU s/MP, {kind} (q{', q'.join(map(str, figures['qualities']))})",
            " / ".join(f"{cost:.3f}" for cost in figures["measured_max_s_per_mp"]),
            f"{figures['recorded_vs_measured']:.2f}x",
            "recorded covers it",
            verdict(figures["recorded_vs_measured"] >= 1.0),
        ]
        for kind, figures in encode["kinds"].items()
    ]
    rows.append(["encode estimate vs measured, worst", "", f"{target['actual']:.2f}x", target["target"], ""])
    return rows


def recorded_table(encode: dict[str, Any]) -> str:
    """The measured factors (times SAFETY) as ips.shared.imaging.encode_cost writes them."""
    lines = []
    for kind, figures in encode["kinds"].items():
        fmt, _, alpha = kind.partition(" ")
        factors = ", ".join(f"{value:.3g}" for value in figures["to_record"])
        lines.append(f"    (OutputFormat.{fmt.upper()}, {bool(alpha)}): ({factors}),")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.encode_cost", description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=6, help="corpus photos, the largest first (6)")
    parser.add_argument("--megapixels", type=float, default=2.0, help="each subject's size (2 MP)")
    args = parser.parse_args(argv)
    started = time.monotonic()
    result = run_encode_cost(
        load_corpus(),
        lambda message: print(f"[{time.monotonic() - started:5.0f}s] {message}", file=sys.stderr),
        count=args.images,
        megapixels=args.megapixels,
    )
    print(json.dumps(result, indent=2))
    print("\nto record in ips.shared.imaging.encode_cost.SECONDS_PER_MEGAPIXEL:\n" + recorded_table(result))
    return 0 if result["targets"][0]["met"] else 1


if __name__ == "__main__":
    sys.exit(main())
