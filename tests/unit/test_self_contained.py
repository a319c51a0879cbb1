"""The repository runs from its own clone: `make test`, `make demo` and `make up` read nothing beside it.

Only the benchmarks (bench/) may use the bigger shared corpus beside the clone, and only when it is there; prose may
mention it. Everything else uses what the repository ships (samples/images)."""

from __future__ import annotations

import csv
import hashlib
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SAMPLE_IMAGES = ROOT / "samples" / "images"
# Spelled in two pieces so that this file does not match itself.
OUTSIDE_REFERENCES = ("../" + "shared", 'parent / "' + 'shared"')


def repository_files() -> list[Path]:
    """The files git tracks plus the untracked ones it does not ignore: what a clone, or the next commit, has."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    return [ROOT / name for name in listed.split("\0") if name and (ROOT / name).is_file()]


def test_nothing_outside_bench_and_prose_refers_to_the_folder_beside_the_clone() -> None:
    offenders = []
    for path in repository_files():
        relative = path.relative_to(ROOT)
        if relative.parts[0] == "bench" or path.suffix == ".md":
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue  # images and other binaries
        offenders += [f"{relative}: {ref}" for ref in OUTSIDE_REFERENCES if ref in text]
    assert not offenders, offenders


def test_the_check_sees_the_files_it_must_judge() -> None:
    names = {path.relative_to(ROOT).as_posix() for path in repository_files()}
    assert {"tests/conftest.py", "localcloud/demo.py", "samples/products.csv", "Makefile"} <= names


def test_every_shipped_sample_is_in_the_manifest_with_its_licence_and_bytes() -> None:
    rows = list(csv.DictReader((SAMPLE_IMAGES / "MANIFEST.tsv").open(encoding="utf-8"), delimiter="\t"))
    licences = (SAMPLE_IMAGES / "LICENSES.md").read_text(encoding="utf-8")
    shipped = {path.name for path in SAMPLE_IMAGES.iterdir() if path.is_file()} - {"MANIFEST.tsv", "LICENSES.md"}

    assert {row["file"] for row in rows} == shipped
    for row in rows:
        data = (SAMPLE_IMAGES / row["file"]).read_bytes()
        assert len(data) == int(row["bytes"]), row["file"]
        assert hashlib.sha256(data).hexdigest()[:12] == row["sha256_12"], row["file"]
        assert row["license"], row["file"]
        assert f"`{row['file']}`" in licences, f"{row['file']} has no entry in LICENSES.md"
    assert sum((SAMPLE_IMAGES / name).stat().st_size for name in shipped) < 7_500_000  # a few MB, not a corpus


def test_the_sample_csv_points_only_at_shipped_files_or_its_deliberate_failures() -> None:
    shipped = {path.name for path in SAMPLE_IMAGES.iterdir() if path.is_file()}
    with (ROOT / "samples" / "products.csv").open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    urls = [url for row in rows for url in row["Input Image Urls"].split(",")]
    local = [url.removeprefix("http://127.0.0.1:8765/") for url in urls if url.startswith("http://127.0.0.1:8765/")]

    assert (len(rows), len(urls)) == (6, 18)
    assert [name for name in local if name not in shipped] == ["does-not-exist.jpg"]  # the deliberate 404
    assert "MANIFEST.tsv" in local  # the deliberate text file
    assert [url for url in urls if not url.startswith("http://127.0.0.1:8765/")] == [
        "http://169.254.169.254/latest/meta-data/iam/security-credentials/"
    ]
