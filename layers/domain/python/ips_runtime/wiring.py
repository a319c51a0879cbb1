"""Build the domain's Context from the functions' settings (ips_runtime.settings) and the standard AWS
environment (AWS_ENDPOINT_URL, credentials, region: read by boto3 itself).

The handlers do not know which runtime they are in: AWS or the local cloud differ only in these variables."""

from __future__ import annotations

import contextlib
import functools
import importlib
import os
from collections.abc import Iterator, Mapping

import boto3
from botocore.config import Config

from ips.adapters.aws import S3BlobStore, S3UploadStore, SqsDeadLetterQueue, SqsTaskQueue
from ips.adapters.dynamodb import DynamoLedger, DynamoQuotas
from ips.adapters.mongo import MongoCatalog, MongoSecretGenerations, connect
from ips.adapters.mongo_reuse import MongoReuseIndex
from ips.adapters.outbound import OutboundClient, check_url
from ips.context import Backends, Context
from ips.polite import HostLimiter, PoliteFetcher
from ips_runtime.settings import FunctionSettings


def context_from_env(env: Mapping[str, str] = os.environ) -> Context:
    return context_from_settings(FunctionSettings.from_env(env))


def context_from_settings(settings: FunctionSettings) -> Context:
    config = Config(retries={"mode": "standard", "max_attempts": 5})
    # SigV4 for presigned URLs and POSTs (regions since 2014 accept nothing else; it also carries X-Amz-Expires).
    s3 = boto3.client("s3", config=config.merge(Config(signature_version="s3v4")))
    dynamodb = boto3.client("dynamodb", config=config)
    policy = settings.outbound_policy()
    outbound = OutboundClient(policy)
    database = connect(settings.mongodb_connection_uri(), settings.mongodb_database)
    catalog = MongoCatalog(database)
    # Once per container; a no-op when the index exists. Product pages and the output CSV read by request, in
    # row order: without it a 100,000-product request would be a collection scan per page.
    catalog.ensure_indexes()
    reuse = MongoReuseIndex(database) if settings.image_reuse else None
    if reuse is not None:
        reuse.ensure_indexes()
    sqs = boto3.client("sqs", config=config)
    return Context(
        settings=settings.domain(),
        backends=Backends(
            uploads=S3UploadStore(s3, settings.uploads_bucket),
            processed=S3BlobStore(s3, settings.processed_bucket),
            queue=SqsTaskQueue(sqs, settings.images_queue_url),
            ledger=DynamoLedger(dynamodb, settings.requests_table),
            quotas=DynamoQuotas(dynamodb, settings.requests_table),
            catalog=catalog,
            # Capped per source host for this process (every invocation a worker runs shares the limiter).
            fetcher=PoliteFetcher(outbound, HostLimiter(settings.fetch_per_host)),
            webhooks=outbound,
            secret_generations=MongoSecretGenerations(database),
            check_webhook_url=functools.partial(check_url, policy=policy),
            reuse=reuse,
            # Only the reconciler's environment names them (and only its role may read them).
            dead_letters=tuple(SqsDeadLetterQueue(sqs, url) for url in settings.dead_letter_queue_urls),
        ),
    )


_installed: list[Context] = []


@functools.cache
def _context_from_env() -> Context:
    settings = FunctionSettings.from_env()
    context = context_from_settings(settings)
    # Local cloud only (never set in AWS): `module:function` given the context, returning the one to use. The
    # chaos suite injects faults at every port this way, in whatever process runs the functions.
    hook = settings.ips_context_hook
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
