"""The benchmark corpus (bench.corpus_folder(): BENCH_CORPUS, ../shared/corpus or samples/images), from its MANIFEST."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from bench import CORPUS


@dataclass(frozen=True)
class CorpusImage:
    name: str
    path: Path
    format: str  # JPEG, PNG, WEBP, GIF
    width: int  # as stored (before EXIF orientation)
    height: int
    bytes: int
    mode: str
    exif_orientation: int | None

    @property
    def pixels(self) -> int:
        return self.width * self.height


def load_corpus(folder: Path = CORPUS) -> list[CorpusImage]:
    """Every image the manifest lists, in manifest order. Fails loudly when the corpus is missing or changed."""
    manifest = folder / "MANIFEST.tsv"
    if not manifest.exists():
        raise FileNotFoundError(f"no corpus at {folder} (expected {manifest}); set BENCH_CORPUS to a folder with one")
    images = []
    with manifest.open(newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle, delimiter="\t"):
            path = folder / row["file"]
            size = path.stat().st_size
            if size != int(row["bytes"]):
                raise ValueError(f"{path} is {size} bytes; the manifest says {row['bytes']}")
            images.append(
                CorpusImage(
                    name=row["file"],
                    path=path,
                    format=row["format"],
                    width=int(row["width"]),
                    height=int(row["height"]),
                    bytes=size,
                    mode=row["mode"],
                    exif_orientation=int(row["exif_orientation"]) if row["exif_orientation"] else None,
                )
            )
    return images


def jpegs(images: list[CorpusImage]) -> list[CorpusImage]:
    return [image for image in images if image.format == "JPEG"]
