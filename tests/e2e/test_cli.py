"""The `ips` command as a user runs it (the installed console script, a child process) against the local cloud."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ips_cli.client import Client
from localcloud.servers import free_port
from tests.e2e.conftest import DIRECT_MAX_BYTES, KEYS, PRESIGNED_MAX_BYTES, ROOT, Cloud

IPS = Path(sys.executable).parent / "ips"  # installed by `make install` (pip install -e .)
SAMPLE = ROOT / "samples" / "products.csv"
HEADER = "S. No.,Product Name,Input Image Urls,Notes\n"
EXPECTED_FAILURES = {("3", "HTTP_STATUS"), ("6", "NOT_AN_IMAGE"), ("6", "ADDRESS_REFUSED")}


def ips(cloud_url: str, *args: str, key: str = KEYS[0], cwd: Path | None = None) -> subprocess.CompletedProcess:
    environment = {**os.environ, "IPS_API_URL": cloud_url, "IPS_API_KEY": key, "COLUMNS": "200"}
    return subprocess.run(
        [str(IPS), *args], env=environment, capture_output=True, text=True, timeout=300, cwd=cwd, check=False
    )


@pytest.fixture(scope="module")
def sample(tmp_path_factory, image_server) -> Path:
    """samples/products.csv with its image URLs pointed at this session's image server."""
    path = tmp_path_factory.mktemp("cli") / "products.csv"
    path.write_text(SAMPLE.read_text().replace("http://127.0.0.1:8765", image_server.url))
    return path


@pytest.fixture(scope="module")
def finished(cloud: Cloud, sample: Path, tmp_path_factory) -> dict:
    """The sample uploaded with --wait --out: the run, its request ID and the downloaded output CSV."""
    out = tmp_path_factory.mktemp("cli-out") / "out.csv"
    run = ips(cloud.url, "upload", str(sample), "--wait", "--out", str(out), "--interval", "0.3")
    return {"run": run, "request_id": run.stdout.splitlines()[0].strip(), "out": out}


def test_upload_wait_out_ends_3_on_the_sample_with_its_failures_listed(cloud: Cloud, finished) -> None:
    run = finished["run"]
    assert run.returncode == 3, run.stderr
    assert "direct route" in run.stderr
    assert "COMPLETED_WITH_ERRORS" in run.stdout and "15 succeeded, 3 failed" in run.stdout
    table = [line.split("│") for line in run.stdout.splitlines() if line.startswith("│")]
    assert {(cells[1].strip(), cells[4].strip()) for cells in table} == EXPECTED_FAILURES  # S. No. and code
    assert "404" in run.stdout  # the reason, not only the code
    rows = list(csv.reader(finished["out"].open()))
    assert rows[0][-1] == "Output Image Urls" and [row[0] for row in rows[1:]] == ["1", "2", "3", "4", "5", "6"]
    assert rows[3][-1].count(",") == 2 and rows[3][-1].endswith(",")  # S. No. 3: the 404 left an empty slot


def test_status_json_is_the_whole_document(cloud: Cloud, finished) -> None:
    run = ips(cloud.url, "status", finished["request_id"], "--json")
    assert run.returncode == 3, run.stderr
    document = json.loads(run.stdout)
    assert (document["status"], document["succeeded"], document["failed"]) == ("COMPLETED_WITH_ERRORS", 15, 3)
    assert len(document["products"]) == 6 and document["nextCursor"] is None
    failures = {(p["serialNumber"], e["code"]) for p in document["products"] for e in p["errors"]}
    assert failures == EXPECTED_FAILURES


def test_the_client_follows_next_cursor_to_every_product(cloud: Cloud, finished) -> None:
    client = Client(cloud.url, KEYS[0])
    pages = list(client.status_pages(finished["request_id"], page_size=2))
    assert len(pages) == 3
    document = client.status(finished["request_id"], page_size=2)
    assert [p["serialNumber"] for p in document["products"]] == ["1", "2", "3", "4", "5", "6"]


def test_wait_and_download_use_a_fresh_status(cloud: Cloud, finished, tmp_path: Path) -> None:
    assert ips(cloud.url, "wait", finished["request_id"]).returncode == 3
    run = ips(cloud.url, "download", finished["request_id"], "--out", str(tmp_path / "again.csv"))
    assert run.returncode == 0, run.stderr
    assert (tmp_path / "again.csv").read_bytes() == finished["out"].read_bytes()
    # Without --out: <requestId>.csv in the working folder.
    assert ips(cloud.url, "download", finished["request_id"], cwd=tmp_path).returncode == 0
    assert (tmp_path / f"{finished['request_id']}.csv").read_bytes() == finished["out"].read_bytes()


def test_a_file_over_the_direct_cap_goes_presigned(cloud: Cloud, image_server, tmp_path: Path) -> None:
    notes = "n" * 4000  # an ignored column makes the file big without making it slow
    rows = "".join(f"{n},Mug {n},{image_server.url}/sk_coffee.png,{notes}\n" for n in range(1, 6))
    big = tmp_path / "big.csv"
    big.write_text(HEADER + rows)
    assert DIRECT_MAX_BYTES < big.stat().st_size < PRESIGNED_MAX_BYTES
    run = ips(cloud.url, "upload", str(big), "--wait", "--interval", "0.3")
    assert run.returncode == 0, run.stderr
    assert "presigned route" in run.stderr
    assert "COMPLETED" in run.stdout and "5 succeeded, 0 failed" in run.stdout


def test_an_invalid_big_file_ends_failed_with_its_rows_listed(cloud: Cloud, tmp_path: Path) -> None:
    notes = "n" * 4000
    rows = "".join(f"{n},Mug {n},ftp://files/{n}.png,{notes}\n" for n in range(1, 6))
    big = tmp_path / "bad-big.csv"
    big.write_text(HEADER + rows)
    run = ips(cloud.url, "upload", str(big), "--wait", "--interval", "0.3")
    assert run.returncode == 1
    assert "FAILED" in run.stdout and "CSV_INVALID" in run.stdout
    assert "row 2, column 'Input Image Urls': INVALID_URL" in run.stdout
    assert "row 6, column 'Input Image Urls': INVALID_URL" in run.stdout


def test_a_refused_csv_is_one_line_and_its_problems_listed(cloud: Cloud, tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("S. No.,Product Name,Input Image Urls\n1,Mug,not-a-url\n1,Cup,http://127.0.0.1:1/a.jpg\n")
    run = ips(cloud.url, "upload", str(bad))
    assert run.returncode == 1
    lines = run.stderr.strip().splitlines()
    assert lines[0].startswith("error: 400 CSV_INVALID: ")
    assert any("row 2, column 'Input Image Urls': INVALID_URL" in line for line in lines[1:])
    assert any("row 3" in line and "DUPLICATE_SERIAL" in line for line in lines[1:])
    assert run.stdout == ""  # no request ID: nothing was accepted


def test_exit_codes_for_refusals_unreachable_and_usage(cloud: Cloud, sample: Path) -> None:
    refused = ips(cloud.url, "upload", str(sample), key="not-a-key")
    assert refused.returncode == 1
    assert refused.stderr.strip() == "error: 403 INVALID_API_KEY: A valid x-api-key header is required."
    unknown = ips(cloud.url, "status", "no-such-request")
    assert unknown.returncode == 1 and "404 REQUEST_NOT_FOUND" in unknown.stderr
    closed = ips(f"http://127.0.0.1:{free_port()}", "status", "any")
    assert closed.returncode == 1 and "cannot reach http://127.0.0.1:" in closed.stderr
    assert ips(cloud.url, "upload", "/no/such/file.csv").returncode == 2
    assert ips(cloud.url, "upload", str(sample), "--quality", "0").returncode == 2
    assert ips(cloud.url, "frobnicate").returncode == 2


def test_flags_override_the_environment(cloud: Cloud, finished) -> None:
    run = ips("http://127.0.0.1:1", "--api-url", cloud.url, "--api-key", KEYS[0], "status", finished["request_id"])
    assert run.returncode == 3, run.stderr
    other_tenant = ips(cloud.url, "--api-key", KEYS[1], "status", finished["request_id"])
    assert other_tenant.returncode == 1 and "REQUEST_NOT_FOUND" in other_tenant.stderr
