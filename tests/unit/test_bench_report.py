"""The benchmark's report helpers (bench/report.py): formatting, tables, targets, JSON."""

from __future__ import annotations

import json

import pytest

from bench.report import (
    collect_targets,
    fmt_pct,
    fmt_ratio,
    render_table,
    upload_rows,
    verdict,
    verdicts,
    write_json,
)


def test_formatting_of_missing_and_present_values() -> None:
    assert fmt_ratio(1.234) == "1.23x"
    assert fmt_ratio(None) == "n/a"
    assert fmt_pct(0.755) == "75.5%"
    assert fmt_pct(None) == "n/a"
    assert verdict(True) == "met"
    assert verdict(False) == "MISSED"


def test_render_table_pads_columns_and_rules_the_header() -> None:
    table = render_table(("figure", "value"), [["engine MP/s", "67.2"], ["x", "1"]])
    assert table.splitlines() == [
        "figure       value",
        "-----------  -----",
        "engine MP/s  67.2",
        "x            1",
    ]
    with pytest.raises(ValueError):
        render_table(("a", "b"), [["only one cell"]])


def test_collect_targets_tags_each_with_its_section_and_skips_failed_parts() -> None:
    results = {
        "engine": {"targets": [{"name": "vs sharp", "met": False}]},
        "pipeline": "failed: RuntimeError: boom",
        "upload": {"targets": [{"name": "10k vs 100", "met": True}]},
    }
    assert collect_targets(results) == [
        {"section": "engine", "name": "vs sharp", "met": False},
        {"section": "upload", "name": "10k vs 100", "met": True},
    ]


def test_upload_rows_say_when_the_presigned_path_is_not_available() -> None:
    upload = {
        "direct": {"100": {"accept_s_median": 0.05, "csv_bytes": 6000}},
        "ratio_10k_vs_100": 3.5,
        "presigned": {"available": False, "reason": "POST /api/v1/uploads answered 404"},
        "targets": [{"name": "upload accept 10k rows vs 100", "target": "< 3x", "actual": 3.5, "met": False}],
    }
    rows = upload_rows(upload)
    assert ["direct accept 10k vs 100 rows", "", "3.50x", "< 3x", "MISSED"] in rows
    assert rows[-1][1] == "not available: POST /api/v1/uploads answered 404"


def test_write_json_replaces_the_file_whole(tmp_path) -> None:
    path = tmp_path / "results" / "latest.json"
    write_json({"engine": {"ratio_vs_sharp": 1.25}}, path)
    write_json({"engine": {"ratio_vs_sharp": 1.5}}, path)
    assert json.loads(path.read_text())["engine"]["ratio_vs_sharp"] == 1.5
    assert [p.name for p in path.parent.iterdir()] == ["latest.json"]


def test_a_failed_part_is_named_and_never_reads_as_every_target_met() -> None:
    sections = ["engine", "upload"]
    met = {"engine": {"targets": [{"name": "vs sharp", "met": True, "actual": 1.4, "target": ">= 1.3x"}]}}
    assert verdicts(met, sections) == "Every target met."
    failed = met | {"upload": "failed: AttributeError: boom"}
    assert verdicts(failed, sections) == "Parts failed, their targets not measured: upload"
    missed = failed | {"engine": {"targets": [{"name": "vs sharp", "met": False, "actual": 1.2, "target": ">= 1.3x"}]}}
    assert verdicts(missed, sections).splitlines() == [
        "Targets missed: vs sharp 1.20 (>= 1.3x)",
        "Parts failed, their targets not measured: upload",
    ]


def test_the_encode_part_reports_each_kind_and_what_to_record() -> None:
    from bench.encode_cost import encode_cost_rows, recorded_table

    kind = {
        "qualities": [1, 95],
        "measured_max_s_per_mp": [0.2, 2.0],
        "to_record": [0.25, 2.5],
        "recorded": [0.25, 1.5],
        "recorded_vs_measured": 0.75,
    }
    encode = {
        "kinds": {"avif": kind, "webp alpha": kind | {"recorded_vs_measured": 1.2}},
        "targets": [
            {"name": "encode estimate covers the measured cost", "actual": 0.75, "target": ">= 1.00", "met": False}
        ],
    }
    rows = encode_cost_rows(encode)
    assert rows[0] == ["encode CPU s/MP, avif (q1, q95)", "0.200 / 2.000", "0.75x", "recorded covers it", "MISSED"]
    assert rows[1][-1] == "met"
    assert collect_targets({"encode": encode}) == [{"section": "encode", **encode["targets"][0]}]
    assert recorded_table(encode).splitlines() == [
        "    (OutputFormat.AVIF, False): (0.25, 2.5),",
        "    (OutputFormat.WEBP, True): (0.25, 2.5),",
    ]
