"""Turn results into a table for people and a JSON document for tools (bench/results/latest.json).

Pure functions (unit-tested in tests/unit/test_bench_report.py)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def fmt_ratio(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}x"


def fmt_pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value * 100:.1f}%"


def fmt_num(value: float | None, unit: str = "", digits: int = 1) -> str:
    return "n/a" if value is None else f"{value:,.{digits}f}{unit}"


def verdict(met: bool | None) -> str:
    return {True: "met", False: "MISSED", None: "-"}[met]


def render_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A plain-text table: columns padded to their widest cell, a rule under the headers."""
    widths = [len(header) for header in headers]
    for row in rows:
        if len(row) != len(headers):
            raise ValueError(f"row {row!r} has {len(row)} cells for {len(headers)} columns")
        widths = [max(width, len(cell)) for width, cell in zip(widths, row, strict=True)]
    lines = [
        "  ".join(header.ljust(width) for header, width in zip(headers, widths, strict=True)).rstrip(),
        "  ".join("-" * width for width in widths),
    ]
    lines += ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows]
    return "\n".join(lines)


SECTIONS = ("engine", "pipeline", "upload", "reuse", "small", "repeat", "calls", "encode")


def collect_targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Every section's targets, each tagged with its section."""
    return [
        {"section": section, **target}
        for section in SECTIONS
        if isinstance(results.get(section), dict)
        for target in results[section].get("targets", [])
    ]


def write_json(results: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(results, indent=2, sort_keys=False, default=str) + "\n", encoding="utf-8")
    temporary.replace(path)


def engine_rows(engine: dict[str, Any]) -> list[list[str]]:
    mps, share, memory = engine["mps"], engine["output_share"], engine["memory"]
    targets = {target["name"]: target for target in engine["targets"]}
    vs_sharp, vs_bound = targets["engine MP/s vs sharp"], targets["engine vs codec bound"]
    rows = [
        [
            "engine MP/s vs sharp (1 thread)",
            f"{fmt_num(mps['engine'])} vs {fmt_num(mps['sharp'])} MP/s",
            fmt_ratio(engine["ratio_vs_sharp"]),
            vs_sharp["target"],
            verdict(vs_sharp["met"]),
        ],
        [
            "engine vs codec bound (decode+encode)",
            f"{fmt_num(mps['engine'])} vs {fmt_num(mps['codec_bound'])} MP/s",
            fmt_pct(engine["ratio_vs_codec_bound"]),
            vs_bound["target"],
            verdict(vs_bound["met"]),
        ],
        [
            "output bytes / input bytes (totals)",
            f"engine {fmt_pct(share['engine'])}, sharp {fmt_pct(share['sharp'])}",
            fmt_ratio(engine["output_bytes_ratio_vs_sharp"]),
            "<= 1.00x sharp",
            verdict(engine["output_bytes_ratio_vs_sharp"] <= 1.0),
        ],
        [
            "SSIM (luma) mean / min",
            f"engine {engine['ssim']['engine']['mean']:.4f} / {engine['ssim']['engine']['min']:.4f}, "
            f"sharp {engine['ssim']['sharp']['mean']:.4f} / {engine['ssim']['sharp']['min']:.4f}",
            "",
            "-",
            "-",
        ],
        [
            "SSIM mean, same conventions",
            f"engine {engine['ssim']['engine']['mean_common']:.4f}, sharp {engine['ssim']['sharp']['mean_common']:.4f}",
            "",
            "-",
            "-",
        ],
    ]
    for label, figures in memory.items():
        rows.append(
            [
                f"peak RSS, {label.replace('_', ' ')} ({figures['megapixels']} MP)",
                f"engine {figures['engine_peak_mib']:.0f} MiB (+{figures['engine_added_mib']:.0f}), "
                f"sharp {figures['sharp_peak_mib']:.0f} MiB (+{figures['sharp_added_mib']:.0f})",
                fmt_ratio(figures["engine_peak_mib"] / figures["sharp_peak_mib"]),
                "-",
                "-",
            ]
        )
    for fmt, figures in engine["by_format"].items():
        rows.append(
            [
                f"  {fmt} only ({figures['images']} images, {figures['megapixels']:.1f} MP)",
                f"{fmt_num(figures['engine_mps'])} vs {fmt_num(figures['sharp_mps'])} MP/s",
                fmt_ratio(figures["ratio_vs_sharp"]),
                "-",
                "-",
            ]
        )
    return rows


def pipeline_rows(pipeline: dict[str, Any]) -> list[list[str]]:
    target = pipeline["targets"][0]
    latency = pipeline["latency"]
    rows = [
        [
            f"pipeline images/s ({pipeline['images']} images, {_workers(pipeline)})",
            f"{pipeline['images_per_s']:.2f} vs bound {pipeline['engine_bound_images_per_s']:.2f} images/s",
            fmt_pct(pipeline["ratio_vs_engine_bound"]),
            target["target"],
            verdict(target["met"]),
        ]
    ]
    if latency.get("per_image"):
        rows += [
            [
                "per-image service time p50 / p95",
                f"{latency['service_p50_ms']:.0f} / {latency['service_p95_ms']:.0f} ms",
                "",
                "-",
                "-",
            ],
            [
                "per-image upload-to-done p50 / p95",
                f"{latency['end_to_end_p50_s']:.1f} / {latency['end_to_end_p95_s']:.1f} s",
                "",
                "-",
                "-",
            ],
        ]
    rows.append(["request upload-to-COMPLETED", f"{latency['request_s']:.1f} s", "", "-", "-"])
    if "distinct_sources" in pipeline:
        rows.append(
            [
                "distinct sources / reused per round",
                f"{pipeline['distinct_sources']} / {pipeline['reused_per_round']}",
                "",
                "-",
                "-",
            ]
        )
    for other in pipeline["targets"][1:]:
        actual = other["actual"]
        rows.append(
            [other["name"], "", "n/a" if actual is None else f"{actual:.2f}", other["target"], verdict(other["met"])]
        )
    for label, value in pipeline["breakdown"].items():
        if label.startswith("stage_ms_mean: "):
            rows.append([f"  per image: {label.removeprefix('stage_ms_mean: ')}", f"{value:.0f} ms", "", "-", "-"])
    for label, value in pipeline["cpu_share"].items():
        rows.append([f"  CPU: {label}", fmt_pct(value), "", "-", "-"])
    return rows


def _workers(pipeline: dict[str, Any]) -> str:
    cloud = pipeline.get("cloud_workers", pipeline["workers"])
    if cloud == pipeline["workers"]:
        return f"{cloud} workers"
    return f"{cloud} invocations vs {pipeline['workers']} bound processes"


def upload_rows(upload: dict[str, Any]) -> list[list[str]]:
    direct = upload["direct"]
    target = upload["targets"][0]
    rows = [
        [
            f"direct accept, {rows_count} rows",
            f"{figures['accept_s_median'] * 1000:.0f} ms ({figures['csv_bytes'] / 1024:.0f} KiB)",
            "",
            "-",
            "-",
        ]
        for rows_count, figures in direct.items()
    ]
    rows.append(
        [
            "direct accept 10k vs 100 rows",
            "",
            fmt_ratio(upload["ratio_10k_vs_100"]),
            target["target"],
            verdict(target["met"]),
        ]
    )
    presigned = upload.get("presigned")
    if not presigned:
        rows.append(["presigned path", "not measured", "", "-", "-"])
    elif not presigned.get("available"):
        rows.append(["presigned path", f"not available: {presigned.get('reason')}", "", "-", "-"])
    else:
        for key, figures in presigned.items():
            if key == "fan_out" or not isinstance(figures, dict):
                continue
            parts = [f"accept {figures['accept_s_median'] * 1000:.0f} ms"]
            if "ingested_s_median" in figures:
                parts.append(f"ingested {figures['ingested_s_median']:.1f}s")
            rows.append([f"presigned, {key} rows", ", ".join(parts), "", "-", "-"])
        if presigned.get("ratio_100k_vs_100_accept") is not None:
            rows.append(
                ["presigned accept 100k vs 100 rows", "", fmt_ratio(presigned["ratio_100k_vs_100_accept"]), "-", "-"]
            )
        for key, figures in presigned.get("fan_out", {}).items():
            if "products_s_median" in figures:
                done = f"all products {figures['products_s_median']:.1f}s after the upload"
            else:
                done = f"{figures.get('products_seen') or 0:,} products after {figures.get('waited_s', 0):.0f}s (cap)"
            if figures.get("products_per_s") is not None:
                done += f", {figures['products_per_s']:.0f} products/s"
            rows.append([f"presigned fan-out, {key} rows", done, "", "-", "-"])
    return rows


HEADERS = ("figure", "measured", "ratio", "target", "")


def _reuse_rows(reuse: dict[str, Any]) -> list[list[str]]:
    from bench.reuse import reuse_rows

    return reuse_rows(reuse)


def _small_rows(small: dict[str, Any]) -> list[list[str]]:
    from bench.small import small_rows

    return small_rows(small)


def _encode_rows(encode: dict[str, Any]) -> list[list[str]]:
    from bench.encode_cost import encode_cost_rows

    return encode_cost_rows(encode)


def _repeat_rows(repeat: dict[str, Any]) -> list[list[str]]:
    from bench.repeat import repeat_rows

    return repeat_rows(repeat)


def _calls_rows(calls: dict[str, Any]) -> list[list[str]]:
    from bench.calls import calls_rows

    return calls_rows(calls)


def render(results: dict[str, Any]) -> str:
    """The whole report as text."""
    machine = results["machine"]
    parts = [
        f"Benchmarks on {machine['cpu_model']}, {machine['cores']} cores, Python {machine['python']}, "
        f"Pillow {machine['pillow']} (libjpeg-turbo {machine['libjpeg_turbo']}), sharp {machine.get('sharp', '?')} "
        f"(libvips {machine.get('libvips', '?')}), load average {machine['load_start']} -> {machine['load_end']}; "
        f"{results['duration_s']:.0f}s in all."
    ]
    sections = (
        (
            "engine",
            "Engine: compress_image alone vs sharp and vs its codec (medians over interleaved rounds)",
            engine_rows,
        ),
        ("pipeline", "Pipeline: local cloud end to end vs the engine-only bound (same workers)", pipeline_rows),
        ("upload", "Upload: accept latency against CSV size", upload_rows),
        ("reuse", "Reuse: the same catalogue uploaded again by the same tenant", _reuse_rows),
        ("small", "Small images at scale: products x 2 small JPEGs through the presigned route", _small_rows),
        (
            "encode",
            "Encode cost: CPU s per output megapixel, the costliest subject (ips.shared.imaging.encode_cost)",
            _encode_rows,
        ),
        ("repeat", "History: the same-size catalogue three times into one local cloud", _repeat_rows),
        ("calls", "Requests per image, counted, and a million images at AWS list prices", _calls_rows),
    )
    for key, title, rows in sections:
        if isinstance(results.get(key), dict):
            parts += ["", title, render_table(HEADERS, rows(results[key]))]
        elif key in results:
            parts += ["", f"{title}: {results[key]}"]
    parts += ["", verdicts(results, [key for key, _, _ in sections])]
    return "\n".join(parts)


def verdicts(results: dict[str, Any], sections: list[str]) -> str:
    """The report's last word: the targets missed, and the parts that failed (whose targets went unmeasured, so
    a failed part never reads as every target met)."""
    missed = [target for target in collect_targets(results) if not target["met"]]
    failed = [key for key in sections if key in results and not isinstance(results[key], dict)]
    lines = []
    if missed:
        lines.append(
            "Targets missed: "
            + "; ".join(f"{t['name']} {fmt_num(t['actual'], digits=2)} ({t['target']})" for t in missed)
        )
    if failed:
        lines.append("Parts failed, their targets not measured: " + ", ".join(failed))
    return "\n".join(lines) or "Every target met."
