"""Processed images carry Cache-Control in S3 itself (moto), whichever way they were written: a put, a reuse's
server-side copy (of an image written before the header existed, too) and a multipart upload. CloudFront serves
the origin's header; the local gateway passes it on the same way."""

from __future__ import annotations

import boto3
from moto import mock_aws

from ips_adapters.aws import IMMUTABLE, S3BlobStore


def test_every_write_of_a_processed_image_stores_its_cache_control() -> None:
    with mock_aws():
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket="processed")
        s3.put_object(Bucket="processed", Key="old/1/0-a.jpg", Body=b"jpeg", ContentType="image/jpeg")  # no header
        store = S3BlobStore(s3, "processed", cache_control=IMMUTABLE)
        store.put("req/1/0-a.jpg", b"jpeg", "image/jpeg")
        assert store.copy("old/1/0-a.jpg", "req/1/1-b.jpg", "image/jpeg")
        big = [b"x" * S3BlobStore.PART_BYTES, b"y"]  # two parts: a multipart upload
        store.put_stream("req/1/2-c.avif", big, "image/avif")
        for key in ("req/1/0-a.jpg", "req/1/1-b.jpg", "req/1/2-c.avif"):
            assert s3.head_object(Bucket="processed", Key=key).get("CacheControl") == IMMUTABLE, key


def test_the_uploads_bucket_stores_no_cache_control() -> None:
    with mock_aws():
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket="uploads")
        S3BlobStore(s3, "uploads").put("req/output.csv", b"a,b\n", "text/csv")
        assert "CacheControl" not in s3.head_object(Bucket="uploads", Key="req/output.csv")
