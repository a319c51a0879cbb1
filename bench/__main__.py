"""`python -m bench`: run the benchmarks, print the table, write bench/results/latest.json.

`make bench` runs it with the defaults (under an hour on 2 cores: each part that watches a catalogue is capped).
Examples:

    python -m bench --only engine --engine-rounds 3
    python -m bench --images 1000 --pipeline-rounds 2
    python -m bench --quick          # a smoke run of every part in about two minutes
    python -m bench --only encode --out bench/results/encode-cost.json   # the encode cost factors
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import sys
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from bench import CORPUS, RESULTS
from bench.report import collect_targets, render, write_json

PARTS = ("engine", "pipeline", "upload", "reuse", "small", "repeat", "calls", "encode")


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_info() -> dict[str, Any]:
    from PIL import Image, features

    info: dict[str, Any] = {
        "cpu_model": cpu_model(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "pillow": Image.__version__,
        "libjpeg_turbo": features.version("libjpeg_turbo"),
        "load_start": " ".join(f"{load:.2f}" for load in os.getloadavg()),
    }
    try:
        from bench.sharp import versions

        info.update(versions())
    except Exception as exc:
        info["sharp_error"] = str(exc)
    return info


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default=",".join(PARTS), help="comma-separated parts: " + ",".join(PARTS))
    parser.add_argument("--engine-rounds", type=int, default=5, help="timed rounds over the corpus (default 5)")
    parser.add_argument("--images", type=int, default=400, help="images per pipeline request, 200..2000 (400)")
    parser.add_argument("--pipeline-rounds", type=int, default=3, help="pipeline + bound rounds (default 3)")
    parser.add_argument("--workers", type=int, default=2, help="local cloud workers = bound processes (2)")
    parser.add_argument(
        "--cloud-workers", type=int, default=None, help="local cloud invocations, if not --workers (the bound keeps it)"
    )
    parser.add_argument("--reuse-images", type=int, default=1000, help="catalogue size of the reuse part (1000)")
    parser.add_argument(
        "--small-products", default="500,20000", help="catalogue sizes (products x 2 small images) of the small part"
    )
    parser.add_argument("--small-cap", type=float, default=300, help="seconds to watch each small catalogue (300)")
    parser.add_argument(
        "--repeat-products", type=int, default=1000, help="catalogue size (products x 2) of the repeat part (1000)"
    )
    parser.add_argument("--repeat-cap", type=float, default=240, help="seconds to watch each repeat (240)")
    parser.add_argument(
        "--calls-products", type=int, default=500, help="catalogue size (products x 2) of the calls part (500)"
    )
    parser.add_argument("--upload-rounds", type=int, default=5, help="rounds of direct uploads (default 5)")
    parser.add_argument("--encode-images", type=int, default=6, help="corpus photos of the encode part (6)")
    parser.add_argument("--encode-megapixels", type=float, default=2.0, help="each encode subject's size (2 MP)")
    parser.add_argument("--no-presigned", action="store_true", help="skip the presigned upload path")
    parser.add_argument(
        "--presigned-cap", type=float, default=45, help="seconds to watch the 100k-row fan-out (default 45)"
    )
    parser.add_argument("--quick", action="store_true", help="tiny settings: a smoke run, not a measurement")
    parser.add_argument("--out", type=Path, default=RESULTS / "latest.json", help="where the JSON goes")
    args = parser.parse_args(argv)
    args.parts = [part.strip() for part in args.only.split(",") if part.strip()]
    unknown = set(args.parts) - set(PARTS)
    if unknown:
        parser.error(f"unknown parts: {', '.join(sorted(unknown))}")
    if args.quick:
        args.engine_rounds, args.images, args.pipeline_rounds, args.upload_rounds = 1, 40, 1, 1
        args.reuse_images = 40
        args.presigned_cap = 15
        args.small_products, args.small_cap = "50,200", 120
        args.encode_images, args.encode_megapixels = 1, 0.25
        args.repeat_products, args.repeat_cap = 50, 120
        args.calls_products = 50
    args.small_sizes = tuple(int(size) for size in args.small_products.split(",") if size.strip())
    return args


def make_log(stream: TextIO, started: float) -> Callable[[str], None]:
    """Progress lines on the real stdout (the local cloud's functions' stdout is sent to a file meanwhile)."""

    def log(message: str) -> None:
        stream.write(f"[{time.monotonic() - started:6.0f}s] {message}\n")
        stream.flush()

    return log


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    started = time.monotonic()
    log = make_log(sys.__stdout__ or sys.stdout, started)
    results: dict[str, Any] = {
        "schema": 1,
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": "python -m bench " + " ".join(argv if argv is not None else sys.argv[1:]),
        "config": {
            "parts": args.parts,
            "engine_rounds": args.engine_rounds,
            "images": args.images,
            "pipeline_rounds": args.pipeline_rounds,
            "workers": args.workers,
            "cloud_workers": args.cloud_workers or args.workers,
            "upload_rounds": args.upload_rounds,
            "encode_images": args.encode_images,
            "encode_megapixels": args.encode_megapixels,
            "reuse_images": args.reuse_images,
            "small_products": list(args.small_sizes),
            "repeat_products": args.repeat_products,
            "calls_products": args.calls_products,
            "presigned": not args.no_presigned,
            "quick": args.quick,
            "corpus": str(CORPUS),
        },
        "machine": machine_info(),
    }
    failed = False
    for part in args.parts:
        log(f"{part}: starting")
        try:
            if part == "engine":
                from bench.corpus import load_corpus
                from bench.engine import run_engine

                results["engine"] = run_engine(load_corpus(), args.engine_rounds, log)
            elif part == "pipeline":
                from bench.pipeline import run_pipeline

                results["pipeline"] = run_pipeline(
                    args.images, args.pipeline_rounds, log, workers=args.workers, cloud_workers=args.cloud_workers
                )
            elif part == "small":
                from bench.small import run_small

                results["small"] = run_small(log, sizes=args.small_sizes, cap_s=args.small_cap)
            elif part == "encode":
                from bench.corpus import load_corpus
                from bench.encode_cost import run_encode_cost

                results["encode"] = run_encode_cost(
                    load_corpus(), log, count=args.encode_images, megapixels=args.encode_megapixels
                )
            elif part == "repeat":
                from bench.repeat import run_repeat

                results["repeat"] = run_repeat(log, products=args.repeat_products, cap_s=args.repeat_cap)
            elif part == "calls":
                from bench.calls import run_calls

                results["calls"] = run_calls(log, products=args.calls_products)
            elif part == "reuse":
                from bench.reuse import run_reuse

                results["reuse"] = run_reuse(args.reuse_images, log, workers=args.workers)
            else:
                from bench.upload import run_upload

                results["upload"] = run_upload(
                    args.upload_rounds, log, presigned=not args.no_presigned, big_cap_s=args.presigned_cap
                )
        except Exception as exc:
            failed = True
            log(f"{part}: FAILED: {exc}")
            traceback.print_exc()
            results[part] = f"failed: {type(exc).__name__}: {exc}"
        log(f"{part}: done")
    results["machine"]["load_end"] = " ".join(f"{load:.2f}" for load in os.getloadavg())
    results["duration_s"] = time.monotonic() - started
    if isinstance(results.get("calls"), dict):
        from bench.calls import million_images

        results["costs"] = million_images(results["calls"], results.get("pipeline"))
    results["targets"] = collect_targets(results)
    write_json(results, args.out)
    print()
    print(render(results))
    print(f"\nwrote {args.out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
