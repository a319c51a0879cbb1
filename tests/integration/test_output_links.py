"""Presigned output links against the local cloud's S3 emulator (a moto server with S3's expiry enforced)."""

from __future__ import annotations

import time

import boto3
import requests
from botocore.config import Config

from ips_adapters.aws import S3UploadStore


def test_a_presigned_get_works_then_expires(aws_endpoint: str) -> None:
    s3 = boto3.client("s3", endpoint_url=aws_endpoint, config=Config(signature_version="s3v4"))
    s3.create_bucket(Bucket="links-expire")
    store = S3UploadStore(s3, "links-expire")
    store.put("r1/output.csv", b"S. No.,Product Name\n1,Mug\n", "text/csv")

    url = store.presigned_get("r1/output.csv", 1)
    assert requests.get(url, timeout=10).content == b"S. No.,Product Name\n1,Mug\n"
    assert requests.get(f"{aws_endpoint}/links-expire/r1/output.csv", timeout=10).status_code == 403  # unsigned
    time.sleep(2.1)  # past X-Amz-Date + 1 s
    expired = requests.get(url, timeout=10)
    assert expired.status_code == 403 and b"Request has expired" in expired.content
    assert requests.get(store.presigned_get("r1/output.csv", 60), timeout=10).status_code == 200  # a fresh one works
