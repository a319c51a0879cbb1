"""Build the domain's Context from the standard environment (AWS_ENDPOINT_URL, MONGODB_URI, ...).

The handlers do not know which runtime they are in: AWS or the local cloud differ only in these variables."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import importlib
import json
import os
from collections.abc import Iterator, Mapping

import boto3
from botocore.config import Config

from ips.adapters.aws import S3BlobStore, S3UploadStore, SqsDeadLetterQueue, SqsTaskQueue
from ips.adapters.chunk_progress import DynamoChunkProgress
from ips.adapters.dynamodb import DynamoLedger, DynamoQuotas
from ips.adapters.mongo import MongoCatalog, MongoSecretGenerations, connect
from ips.adapters.mongo_reuse import MongoReuseIndex
from ips.adapters.outbound import OutboundClient, OutboundPolicy, check_url
from ips.context import Backends, Context, Settings
from ips.csv_input import CsvLimits
from ips.imaging import ImageLimits
from ips.polite import DEFAULT_PER_HOST, HostLimiter, PoliteFetcher
from ips.quotas import ImageQuota
from ips.webhook import RetryPolicy


def secret_or_env(env: Mapping[str, str], name: str) -> str | None:
    """A variable's value, or in AWS the Secrets Manager secret named by `<name>_SECRET_ARN` (cached)."""
    if env.get(name):
        return env[name]
    arn = env.get(f"{name}_SECRET_ARN")
    if not arn:
        return None
    from aws_lambda_powertools.utilities.parameters import get_secret

    return str(get_secret(arn, max_age=300))


def image_quotas_from_env(env: Mapping[str, str]) -> tuple[ImageQuota, dict[str, ImageQuota]]:
    """Every key's image limits (IMAGE_QUOTA_PER_DAY, IMAGES_IN_FLIGHT) and some keys' own
    (TENANT_IMAGE_QUOTAS: JSON by API key id, {"<id>": {"perDay": n, "inFlight": m}}; a missing one is the default)."""
    default = ImageQuota(
        per_day=int(env.get("IMAGE_QUOTA_PER_DAY", ImageQuota.per_day)),
        in_flight=int(env.get("IMAGES_IN_FLIGHT", ImageQuota.in_flight)),
    )
    own = json.loads(env.get("TENANT_IMAGE_QUOTAS") or "{}")
    return default, {
        tenant: ImageQuota(
            per_day=int(limits.get("perDay", default.per_day)),
            in_flight=int(limits.get("inFlight", default.in_flight)),
        )
        for tenant, limits in own.items()
    }


def settings_from_env(env: Mapping[str, str] = os.environ) -> Settings:
    def number(name: str, default: float) -> float:
        return float(env.get(name, default))

    image_quota, tenant_image_quotas = image_quotas_from_env(env)
    return Settings(
        asset_base_url=env["ASSET_BASE_URL"],
        image_quota=image_quota,
        tenant_image_quotas=tenant_image_quotas,
        webhook_secret=secret_or_env(env, "WEBHOOK_SECRET"),
        webhook_rotation_window_s=int(number("WEBHOOK_ROTATION_WINDOW_SECONDS", 86_400)),
        jpeg_quality=int(number("JPEG_QUALITY", 50)),
        csv_limits=CsvLimits(
            max_bytes=int(number("CSV_MAX_BYTES", CsvLimits.max_bytes)),
            max_rows=int(number("CSV_MAX_ROWS", CsvLimits.max_rows)),
            max_urls_per_row=int(number("CSV_MAX_URLS_PER_ROW", CsvLimits.max_urls_per_row)),
        ),
        presigned_csv_limits=CsvLimits(
            max_bytes=int(number("PRESIGNED_CSV_MAX_BYTES", 100 * 1024 * 1024)),
            max_rows=int(number("PRESIGNED_CSV_MAX_ROWS", 200_000)),
            max_urls_per_row=int(number("CSV_MAX_URLS_PER_ROW", CsvLimits.max_urls_per_row)),
        ),
        upload_expiry_s=int(number("UPLOAD_EXPIRY_SECONDS", 900)),
        output_url_expiry_s=int(number("OUTPUT_URL_EXPIRY_SECONDS", 900)),
        chunk_images=int(number("CHUNK_IMAGES", Settings.chunk_images)),
        image_limits=ImageLimits(
            max_bytes=int(number("IMAGE_MAX_BYTES", ImageLimits.max_bytes)),
            max_pixels=int(number("IMAGE_MAX_PIXELS", ImageLimits.max_pixels)),
            max_decode_seconds=number("IMAGE_MAX_DECODE_SECONDS", ImageLimits.max_decode_seconds),
        ),
        max_receive_count=int(number("MAX_RECEIVE_COUNT", 5)),
        chunk_max_receive_count=int(number("CHUNK_MAX_RECEIVE_COUNT", Settings.chunk_max_receive_count)),
        status_page_max_bytes=int(number("STATUS_PAGE_MAX_BYTES", Settings.status_page_max_bytes)),
        webhook_retry=RetryPolicy(
            attempts=int(number("WEBHOOK_ATTEMPTS", RetryPolicy.attempts)),
            first_delay=number("WEBHOOK_FIRST_DELAY", RetryPolicy.first_delay),
        ),
        output_retention_days=number("OUTPUT_RETENTION_DAYS", 14),
        webhook_lease_seconds=int(number("WEBHOOK_LEASE_SECONDS", Settings.webhook_lease_seconds)),
        deadline_base_s=number("REQUEST_DEADLINE_SECONDS", Settings.deadline_base_s),
        deadline_per_image_s=number("REQUEST_DEADLINE_PER_IMAGE_SECONDS", Settings.deadline_per_image_s),
        stall_after_s=number("STALL_AFTER_SECONDS", Settings.stall_after_s),
        upload_grace_s=number("UPLOAD_GRACE_SECONDS", Settings.upload_grace_s),
        webhook_resend_window_s=number("WEBHOOK_RESEND_WINDOW_SECONDS", Settings.webhook_resend_window_s),
    )


def outbound_policy_from_env(env: Mapping[str, str] = os.environ) -> OutboundPolicy:
    # Fetches stop reading at the image byte cap: a bigger body fails as TOO_LARGE without being held.
    image_bytes = int(env.get("IMAGE_MAX_BYTES", ImageLimits.max_bytes))
    return dataclasses.replace(OutboundPolicy.from_env(env), max_bytes=image_bytes)


def context_from_env(env: Mapping[str, str] = os.environ) -> Context:
    config = Config(retries={"mode": "standard", "max_attempts": 5})
    # SigV4 for presigned URLs and POSTs (regions since 2014 accept nothing else; it also carries X-Amz-Expires).
    s3 = boto3.client("s3", config=config.merge(Config(signature_version="s3v4")))
    dynamodb = boto3.client("dynamodb", config=config)
    policy = outbound_policy_from_env(env)
    outbound = OutboundClient(policy)
    database = connect(_required(secret_or_env(env, "MONGODB_URI"), "MONGODB_URI"), env.get("MONGODB_DATABASE", "ips"))
    catalog = MongoCatalog(database)
    # Once per container; a no-op when the index exists. Product pages and the output CSV read by request, in
    # row order: without it a 100,000-product request would be a collection scan per page.
    catalog.ensure_indexes()
    reuse = MongoReuseIndex(database) if env.get("IMAGE_REUSE", "on").lower() not in ("off", "false", "0") else None
    if reuse is not None:
        reuse.ensure_indexes()
    sqs = boto3.client("sqs", config=config)
    return Context(
        settings=settings_from_env(env),
        backends=Backends(
            uploads=S3UploadStore(s3, env["UPLOADS_BUCKET"]),
            processed=S3BlobStore(s3, env["PROCESSED_BUCKET"]),
            queue=SqsTaskQueue(sqs, env["IMAGES_QUEUE_URL"]),
            chunks=SqsTaskQueue(sqs, env["CHUNKS_QUEUE_URL"]),
            chunk_progress=DynamoChunkProgress(dynamodb, env["REQUESTS_TABLE"]),
            ledger=DynamoLedger(dynamodb, env["REQUESTS_TABLE"]),
            quotas=DynamoQuotas(dynamodb, env["REQUESTS_TABLE"]),
            catalog=catalog,
            # Capped per source host for this process (every invocation a worker runs shares the limiter).
            fetcher=PoliteFetcher(outbound, HostLimiter(int(env.get("FETCH_PER_HOST", DEFAULT_PER_HOST)))),
            webhooks=outbound,
            secret_generations=MongoSecretGenerations(database),
            check_webhook_url=functools.partial(check_url, policy=policy),
            reuse=reuse,
            # Only the reconciler's environment names them (and only its role may read them).
            dead_letters=tuple(
                SqsDeadLetterQueue(sqs, url) for url in env.get("DEAD_LETTER_QUEUE_URLS", "").split(",") if url
            ),
        ),
    )


def _required(value: str | None, name: str) -> str:
    if not value:
        raise RuntimeError(f"{name} (or {name}_SECRET_ARN) must be set")
    return value


_installed: list[Context] = []


@functools.cache
def _context_from_env() -> Context:
    context = context_from_env()
    # Local cloud only (never set in AWS): `module:function` given the context, returning the one to use. The
    # chaos suite injects faults at every port this way, in whatever process runs the functions.
    hook = os.environ.get("IPS_CONTEXT_HOOK")
    if hook:
        module, _, name = hook.partition(":")
        context = getattr(importlib.import_module(module), name)(context)
    return context


def shared_context() -> Context:
    """One per container (or local-cloud process): clients and connection pools are reused across events.
    A context installed with `use_context` takes precedence (how fault tests put wrapped backends in)."""
    return _installed[-1] if _installed else _context_from_env()


def reset_shared_context() -> None:
    """Forget the context built from the environment (after the environment changed)."""
    _context_from_env.cache_clear()


@contextlib.contextmanager
def use_context(context: Context) -> Iterator[Context]:
    _installed.append(context)
    try:
        yield context
    finally:
        _installed.remove(context)
