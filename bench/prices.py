"""What a million images cost at AWS's list prices: the calls counted by bench.calls, the Lambda time measured by
bench.calls (small images) and bench.pipeline (photos), times the prices below.

Prices: AWS list prices for us-east-1 (N. Virginia), on-demand, without the free tier, as published in 2025;
DynamoDB's on-demand request prices are those after its 2024-11-01 cut. docs/performance.md says where each
comes from and how old it is. MongoDB Atlas is billed per cluster-hour, not per call: its calls are reported,
not priced. Pure functions (unit-tested)."""

from __future__ import annotations

from typing import Any

REGION = "us-east-1"
PRICES_AS_OF = "2025"
LAMBDA_GB_SECOND = 0.0000166667  # x86_64 (the stack's architecture)
LAMBDA_REQUEST = 0.20 / 1e6
S3_WRITE_CLASS = 0.005 / 1000  # PUT, COPY, POST, LIST
S3_READ_CLASS = 0.0004 / 1000  # GET, HEAD and the rest
SQS_REQUEST = 0.40 / 1e6  # standard queue, per 64 KB chunk of a call
DYNAMODB_WRITE_UNIT = 0.625 / 1e6  # on-demand; a transactional write is 2 units per item of up to 1 KB
DYNAMODB_READ_UNIT = 0.125 / 1e6  # a strongly consistent read of up to 4 KB is 1 unit; transactional 2
LOGS_INGESTED_GB = 0.50  # CloudWatch Logs, standard class
XRAY_TRACE = 5.00 / 1e6  # the stack traces actively: at most one trace per invocation (sampling records fewer)
LAMBDA_PLATFORM_LOG_BYTES = 350  # START, END and REPORT lines Lambda writes for each invocation
S3_WRITES = ("PutObject", "CopyObject", "PostObject", "CreateMultipartUpload", "UploadPart", "ListObjectsV2")
DYNAMODB_WRITES = ("PutItem", "UpdateItem", "DeleteItem")
DYNAMODB_READS = ("GetItem", "Query")
MILLION = 1_000_000


def dynamodb_units(calls: dict[str, int]) -> tuple[float, float]:
    """(write units, read units) of the counted DynamoDB calls; a transaction's items are counted by
    bench.service_calls under `dynamodb.TransactWriteItems#items`, each item taken as under 1 KB."""
    writes = reads = 0.0
    for key, count in calls.items():
        service, _, operation = key.partition(".")
        if service != "dynamodb":
            continue
        if operation == "TransactWriteItems#items":
            writes += 2 * count
        elif operation == "BatchWriteItem#items" or operation in DYNAMODB_WRITES:
            writes += count
        elif operation in DYNAMODB_READS:
            reads += count
    return writes, reads


def cost_per_million(
    calls: dict[str, int], images: int, lambda_time: dict[str, dict[str, float]], log_bytes: float
) -> dict[str, float]:
    """Dollars per 1,000,000 images by service, from one run's billed calls (`service.Operation` totals), its
    Lambda invocations and wall seconds by function (with each function's memory), and its log bytes."""
    scale = MILLION / max(1, images)
    s3_writes = sum(count for key, count in calls.items() if key.startswith("s3.") and key[3:] in S3_WRITES)
    s3_reads = sum(count for key, count in calls.items() if key.startswith("s3.") and key[3:] not in S3_WRITES)
    sqs = sum(count for key, count in calls.items() if key.startswith("sqs."))
    writes, reads = dynamodb_units(calls)
    invocations = sum(figures["invocations"] for figures in lambda_time.values())
    gb_seconds = sum(figures["wall_s"] * figures["memory_mb"] / 1024 for figures in lambda_time.values())
    logs_gb = (log_bytes + invocations * LAMBDA_PLATFORM_LOG_BYTES) / 1e9
    costs = {
        "lambda duration": gb_seconds * LAMBDA_GB_SECOND,
        "lambda requests": invocations * LAMBDA_REQUEST,
        "s3 requests": s3_writes * S3_WRITE_CLASS + s3_reads * S3_READ_CLASS,
        "sqs requests": sqs * SQS_REQUEST,
        "dynamodb requests": writes * DYNAMODB_WRITE_UNIT + reads * DYNAMODB_READ_UNIT,
        "cloudwatch logs": logs_gb * LOGS_INGESTED_GB,
        "x-ray traces (at most)": invocations * XRAY_TRACE,
    }
    costs = {name: value * scale for name, value in costs.items()}
    costs["total"] = sum(costs.values())
    return costs


def with_photo_time(lambda_time: dict[str, dict[str, float]], images: int, photo_ms: float) -> dict[str, Any]:
    """The same Lambda figures with the process function's wall time per image replaced by a photo's (measured
    by the pipeline part): the job Kraken.io and TinyPNG price, compressing photos."""
    figures = {function: dict(entry) for function, entry in lambda_time.items()}
    if "process" in figures:
        figures["process"]["wall_s"] = photo_ms / 1000 * images
    return figures
