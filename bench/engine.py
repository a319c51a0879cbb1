"""Engine benchmark: `compress_image` alone, single thread, against sharp and against its own codec's bound.

For every image of the corpus and every round, four contenders run back to back in an order that rotates with
the image and the round: the engine (`ips.shared.imaging.compress_image`, timed in-process with perf_counter), sharp
(`sharp(buf).rotate().jpeg({quality: 50}).toBuffer()` in one long-lived node process, timed inside node),
Pillow decode only (`Image.open` + `load`) and Pillow encode only (JPEG q50 optimize=True of an image decoded
beforehand, untimed; non-RGB images are converted to RGB first, untimed). A first, untimed pass warms every
contender up and keeps the outputs for SSIM.

Throughput is the corpus's megapixels (source pixels) over the sum of each image's median time; the codec bound
is the megapixels over the sum of median decode + median encode times."""

from __future__ import annotations

import gc
import io
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from PIL import Image, features

from bench.corpus import CorpusImage
from bench.memory import python_peak
from bench.sharp import SharpWorker, sharp_peak
from bench.stats import median, megapixels_per_second, ratio, rotated, spread, summed_medians

CONTENDERS = ("engine", "sharp", "decode", "encode")
TARGET_VS_SHARP = 1.3
TARGET_VS_BOUND = 0.85
CONVENTION_MODES = ("CMYK", "RGBA", "LA", "PA")

Log = Callable[[str], None]


def _engine() -> Callable[[bytes], bytes]:
    # Imported when the benchmark runs, never copied: the engine is being replaced while this is written.
    from ips.shared.imaging import compress_image

    return lambda data: compress_image(data, quality=50).data


def _decode(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def _encodable(data: bytes) -> Image.Image:
    image = _decode(data)
    return image if image.mode in ("RGB", "L") else image.convert("RGB")


def _encode(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=50, optimize=True)
    return buffer.getvalue()


def run_engine(images: list[CorpusImage], rounds: int, log: Log, *, quality_workers: int = 2) -> dict[str, Any]:
    compress = _engine()
    sources = {image.name: image.path.read_bytes() for image in images}
    times: dict[str, dict[str, list[float]]] = {name: {image.name: [] for image in images} for name in CONTENDERS}
    round_seconds: dict[str, list[float]] = {name: [] for name in CONTENDERS}
    engine_out: dict[str, bytes] = {}
    sharp_bytes: dict[str, int] = {}
    with tempfile.TemporaryDirectory(prefix="ips-bench-") as scratch, SharpWorker() as sharp:
        sharp_dir = Path(scratch)
        for image in images:
            sharp.load(image.path)
        log(f"engine: warm-up pass over {len(images)} images (outputs kept for SSIM)")
        for image in images:
            data = sources[image.name]
            engine_out[image.name] = compress(data)
            _, sharp_bytes[image.name] = sharp.run(image.path, sharp_dir / f"{image.name}.jpg")
            _encode(_encodable(data))

        for number in range(rounds):
            gc.collect()
            totals = dict.fromkeys(CONTENDERS, 0.0)
            order = images if number % 2 == 0 else images[::-1]
            for position, image in enumerate(order):
                data = sources[image.name]
                for contender in rotated(CONTENDERS, number + position):
                    if contender == "sharp":
                        elapsed, _ = sharp.run(image.path)
                    elif contender == "engine":
                        started = time.perf_counter()
                        compress(data)
                        elapsed = time.perf_counter() - started
                    elif contender == "decode":
                        started = time.perf_counter()
                        _decode(data)
                        elapsed = time.perf_counter() - started
                    else:
                        decoded = _encodable(data)
                        started = time.perf_counter()
                        _encode(decoded)
                        elapsed = time.perf_counter() - started
                    times[contender][image.name].append(elapsed)
                    totals[contender] += elapsed
            for contender in CONTENDERS:
                round_seconds[contender].append(totals[contender])
            log(
                f"engine: round {number + 1}/{rounds}: "
                + "  ".join(f"{name} {seconds:.2f}s" for name, seconds in totals.items())
            )

        log("engine: SSIM of every output against its decoded, EXIF-oriented source")
        ssim_scores = _ssim_all(images, engine_out, sharp_dir, quality_workers)

    log("engine: peak memory in fresh processes")
    memory = _memory(images)
    return _summarise(images, times, round_seconds, engine_out, sharp_bytes, ssim_scores, memory, rounds)


def _ssim_all(
    images: list[CorpusImage], engine_out: dict[str, bytes], sharp_dir: Path, workers: int
) -> dict[str, dict[str, float | None]]:
    from bench.quality import ssim_of_outputs

    # Biggest first, so the pool's two workers finish together.
    ordered = sorted(images, key=lambda image: image.pixels, reverse=True)
    with ProcessPoolExecutor(max_workers=workers) as pool:
        futures = {
            image.name: pool.submit(
                ssim_of_outputs,
                image.path,
                {"engine": engine_out[image.name], "sharp": (sharp_dir / f"{image.name}.jpg").read_bytes()},
            )
            for image in ordered
        }
        return {name: future.result() for name, future in futures.items()}


def _memory(images: list[CorpusImage], repeats: int = 3) -> dict[str, Any]:
    largest = max(images, key=lambda image: image.pixels)
    largest_jpeg = max((image for image in images if image.format == "JPEG"), key=lambda image: image.pixels)
    result: dict[str, Any] = {}
    for label, image in (("largest", largest), ("largest_jpeg", largest_jpeg)):
        python = [python_peak(image.path) for _ in range(repeats)]
        node = [sharp_peak(image.path) for _ in range(repeats)]
        result[label] = {
            "image": image.name,
            "megapixels": round(image.pixels / 1e6, 2),
            "engine_peak_mib": median(p["peak_kb"] for p in python) / 1024,
            "engine_added_mib": median(p["peak_kb"] - p["before_kb"] for p in python) / 1024,
            "sharp_peak_mib": median(p["peak_kb"] for p in node) / 1024,
            "sharp_added_mib": median(p["peak_kb"] - p["before_kb"] for p in node) / 1024,
        }
    return result


def _summarise(
    images: list[CorpusImage],
    times: dict[str, dict[str, list[float]]],
    round_seconds: dict[str, list[float]],
    engine_out: dict[str, bytes],
    sharp_bytes: dict[str, int],
    ssim_scores: dict[str, dict[str, float | None]],
    memory: dict[str, Any],
    rounds: int,
) -> dict[str, Any]:
    pixels = sum(image.pixels for image in images)
    input_bytes = sum(image.bytes for image in images)
    seconds = {name: summed_medians(times[name]) for name in CONTENDERS}
    bound_seconds = seconds["decode"] + seconds["encode"]
    mps = {name: megapixels_per_second(pixels, seconds[name]) for name in ("engine", "sharp")}
    mps["decode"] = megapixels_per_second(pixels, seconds["decode"])
    mps["encode"] = megapixels_per_second(pixels, seconds["encode"])
    mps["codec_bound"] = megapixels_per_second(pixels, bound_seconds)
    engine_bytes = sum(len(data) for data in engine_out.values())
    sharp_total = sum(sharp_bytes.values())
    per_round_vs_sharp = [e / s for e, s in zip(round_seconds["sharp"], round_seconds["engine"], strict=True)]
    per_round_vs_bound = [
        (d + c) / e
        for d, c, e in zip(round_seconds["decode"], round_seconds["encode"], round_seconds["engine"], strict=True)
    ]
    ratio_vs_sharp = ratio(mps["engine"], mps["sharp"])
    ratio_vs_bound = ratio(mps["engine"], mps["codec_bound"])
    output_vs_sharp = ratio(engine_bytes, sharp_total)
    engine_ssim = [s["engine"] for s in ssim_scores.values() if s["engine"] is not None]
    sharp_ssim = [s["sharp"] for s in ssim_scores.values() if s["sharp"] is not None]
    # CMYK and alpha have no single right rendering: the reference flattens alpha onto white and converts CMYK
    # naively, as the engine does (sharp flattens onto black and uses a CMYK profile). The "common" mean leaves
    # those images out.
    common = [image.name for image in images if image.mode not in CONVENTION_MODES]
    engine_common = [ssim_scores[name]["engine"] for name in common if ssim_scores[name]["engine"] is not None]
    sharp_common = [ssim_scores[name]["sharp"] for name in common if ssim_scores[name]["sharp"] is not None]

    by_format: dict[str, dict[str, Any]] = {}
    for fmt in sorted({image.format for image in images}):
        members = [image for image in images if image.format == fmt]
        fmt_pixels = sum(image.pixels for image in members)
        engine_s = sum(median(times["engine"][image.name]) for image in members)
        sharp_s = sum(median(times["sharp"][image.name]) for image in members)
        by_format[fmt] = {
            "images": len(members),
            "megapixels": fmt_pixels / 1e6,
            "engine_mps": megapixels_per_second(fmt_pixels, engine_s),
            "sharp_mps": megapixels_per_second(fmt_pixels, sharp_s),
            "ratio_vs_sharp": sharp_s / engine_s,
            "engine_output_share": sum(len(engine_out[i.name]) for i in members) / sum(i.bytes for i in members),
            "sharp_output_share": sum(sharp_bytes[i.name] for i in members) / sum(i.bytes for i in members),
        }

    return {
        "images": len(images),
        "megapixels": pixels / 1e6,
        "input_bytes": input_bytes,
        "rounds": rounds,
        "pillow": Image.__version__,
        "libjpeg_turbo": features.version("libjpeg_turbo"),
        "seconds_per_pass": seconds,
        "mps": mps,
        "ratio_vs_sharp": ratio_vs_sharp,
        "ratio_vs_sharp_per_round": spread(per_round_vs_sharp),
        "ratio_vs_codec_bound": ratio_vs_bound,
        "ratio_vs_codec_bound_per_round": spread(per_round_vs_bound),
        "output_bytes": {"engine": engine_bytes, "sharp": sharp_total, "input": input_bytes},
        "output_share": {"engine": engine_bytes / input_bytes, "sharp": sharp_total / input_bytes},
        "output_bytes_ratio_vs_sharp": output_vs_sharp,
        "ssim": {
            "engine": {
                "mean": sum(engine_ssim) / len(engine_ssim),
                "min": min(engine_ssim),
                "mean_common": sum(engine_common) / len(engine_common),
            },
            "sharp": {
                "mean": sum(sharp_ssim) / len(sharp_ssim),
                "min": min(sharp_ssim),
                "mean_common": sum(sharp_common) / len(sharp_common),
            },
            "common_images": len(common),
        },
        "memory": memory,
        "by_format": by_format,
        "targets": [
            {
                "name": "engine MP/s vs sharp",
                "target": f">= {TARGET_VS_SHARP}x at no larger total output",
                "actual": ratio_vs_sharp,
                "met": bool(
                    ratio_vs_sharp is not None
                    and ratio_vs_sharp >= TARGET_VS_SHARP
                    and output_vs_sharp is not None
                    and output_vs_sharp <= 1.0
                ),
            },
            {
                "name": "engine vs codec bound",
                "target": f">= {TARGET_VS_BOUND:.0%}",
                "actual": ratio_vs_bound,
                "met": bool(ratio_vs_bound is not None and ratio_vs_bound >= TARGET_VS_BOUND),
            },
        ],
        "per_image": [
            {
                "name": image.name,
                "format": image.format,
                "megapixels": image.pixels / 1e6,
                "input_bytes": image.bytes,
                **{f"{name}_ms": median(times[name][image.name]) * 1000 for name in CONTENDERS},
                "engine_bytes": len(engine_out[image.name]),
                "sharp_bytes": sharp_bytes[image.name],
                "engine_ssim": ssim_scores[image.name]["engine"],
                "sharp_ssim": ssim_scores[image.name]["sharp"],
            }
            for image in images
        ],
    }
