"""The output CSV streams to S3 by multipart upload in constant memory, measured against the local cloud's S3
(moto server, in its own process, so only this process's memory is traced). CI runs 300,000 images (26 MB, peak
19 MiB: about two parts); `OUTPUT_CSV_IMAGES=1000000` measures a million (86 MB, see docs/reliability.md)."""

from __future__ import annotations

import csv
import io
import os
import tracemalloc
from collections.abc import Iterator

import boto3
import pytest

from ips.completion.csv_output import OutputRow, stream_output_csv
from ips_adapters.aws import S3BlobStore

IMAGES = int(os.environ.get("OUTPUT_CSV_IMAGES", 300_000))
PEAK_LIMIT = 24 * 1024 * 1024  # parts of 8 MiB; held whole, the file was about 300 bytes per image


def rows(count: int) -> Iterator[OutputRow]:
    for n in range(1, count + 1):
        yield OutputRow(str(n), f"Product {n}", [f"https://img.invalid/{n}.jpg"], [f"https://cdn.invalid/r/{n}.jpg"])


@pytest.fixture
def store(aws_endpoint: str) -> S3BlobStore:
    client = boto3.client("s3", endpoint_url=aws_endpoint)
    client.create_bucket(Bucket="csv-memory")
    return S3BlobStore(client, "csv-memory")


def test_a_million_image_output_csv_streams_in_constant_memory(store: S3BlobStore) -> None:
    tracemalloc.start()
    try:
        store.put_stream("r/output.csv", stream_output_csv(rows(IMAGES)), "text/csv")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    print(f"output CSV of {IMAGES:,} images: peak traced memory {peak / 2**20:.1f} MiB")
    assert peak < PEAK_LIMIT
    client = store._client
    head = client.head_object(Bucket=store.bucket, Key="r/output.csv")
    assert head["ContentLength"] > peak and "-" in head["ETag"]  # a multipart object, bigger than what was held
    tail = client.get_object(Bucket=store.bucket, Key="r/output.csv", Range="bytes=-200")["Body"].read().decode()
    assert tail.endswith(
        f"{IMAGES},Product {IMAGES},https://img.invalid/{IMAGES}.jpg,https://cdn.invalid/r/{IMAGES}.jpg\r\n"
    )


def test_a_small_output_csv_is_one_put_and_reads_back_whole(store: S3BlobStore) -> None:
    store.put_stream("r/small.csv", stream_output_csv(rows(3), piece_bytes=10), "text/csv")
    data = store.get("r/small.csv").decode()
    assert list(csv.reader(io.StringIO(data)))[1:] == [
        [str(n), f"Product {n}", f"https://img.invalid/{n}.jpg", f"https://cdn.invalid/r/{n}.jpg"] for n in (1, 2, 3)
    ]


def test_a_failing_stream_leaves_no_object_and_no_pending_upload(store: S3BlobStore) -> None:
    def broken() -> Iterator[bytes]:
        yield b"x" * (S3BlobStore.PART_BYTES + 1)
        raise RuntimeError("the catalog went away mid-file")

    with pytest.raises(RuntimeError):
        store.put_stream("r/broken.csv", broken(), "text/csv")
    client = store._client
    assert "Contents" not in client.list_objects_v2(Bucket=store.bucket, Prefix="r/broken")
    assert client.list_multipart_uploads(Bucket=store.bucket).get("Uploads", []) == []
