"""The adapters a function's composition root picks from, each built from the environment on first use.

Nothing is built until a root asks for it, and each adapter's libraries are imported then: the status function,
which reads the catalog, the counter and the uploads bucket, never imports Pillow or the outbound HTTP client.
`wrap(name, adapter)` sees every adapter as it is built and answers the one to use: how fault tests and the
chaos suite put wrapped backends in front of the real ones."""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable, Mapping
from functools import cached_property
from typing import TYPE_CHECKING, Any, Final

from ips.completion.ports import Receivers, SecretGenerations, WebhookPoster
from ips.intake.ports import UrlCheck
from ips.processing.ports import Fetcher, ReuseIndex
from ips.reconcile.ports import DeadLetterQueue, Lease, RoundLog
from ips.shared.ports import BlobStore, Catalog, ChunkProgress, Clock, Ledger, Quotas, TaskQueue, UploadStore, utc_now
from ips_runtime.settings import (
    AdapterHook,
    ChunksQueue,
    DeadLetterQueues,
    EveryFunction,
    FunctionSettings,
    ImageCaps,
    ImagesQueue,
    MongoDb,
    Outbound,
    Part,
    ProcessedBucket,
    Processing,
    RequestsTable,
    UploadsBucket,
    WebhooksQueue,
)

if TYPE_CHECKING:
    from botocore.config import Config
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sqs import SQSClient
    from pymongo.database import Database

    from ips_adapters.mongo_connection import MongoConnection
    from ips_adapters.outbound import OutboundPolicy

Wrap = Callable[[str, Any], Any]  # (port name, the adapter built) -> the adapter to use

# botocore checks every call's parameters against the service model before sending it: CPU on every call of the
# hot path (about 5% of a DynamoDB count, which walks its nested transaction) for mistakes the adapters cannot
# make at run time. Their parameters are built in code, typed, and sent to moto, LocalStack and DynamoDB Local by
# the tests; and AWS validates every request itself, answering a bad one with a ValidationException.
VALIDATE_AWS_PARAMETERS: Final[bool] = False


def _unwrapped[T](name: str, adapter: T) -> T:
    return adapter


def hook(settings: AdapterHook) -> Wrap:
    """IPS_ADAPTER_HOOK (local cloud only, never set in AWS): `module:function`, a Wrap for every adapter."""
    if not settings.ips_adapter_hook:
        return _unwrapped
    module, _, name = settings.ips_adapter_hook.partition(":")
    wrap: Wrap = getattr(importlib.import_module(module), name)
    return wrap


class Adapters:
    """One set of adapters (clients and connection pools shared by what is built from it), over one function's
    settings (read and validated before: a wrong value fails the cold start, naming the variable, before any
    client is built). An adapter reads the part that names its resource: one the function's model lacks is a
    LookupError (tests/integration/test_composition_roots.py builds every root from its own model)."""

    def __init__(self, settings: FunctionSettings, wrap: Wrap | None = None) -> None:
        self.settings = settings
        self._wrap = wrap or hook(settings.part(AdapterHook))

    @classmethod
    def from_env(
        cls,
        wrap: Wrap | None = None,
        env: Mapping[str, str] | None = None,
        model: type[FunctionSettings] = EveryFunction,
    ) -> Adapters:
        """`model` read from `env` (the process environment when None): every function's parts unless given."""
        return cls(model.from_env(env), wrap)

    def part[P: Part](self, kind: type[P]) -> P:
        return self.settings.part(kind)

    @cached_property
    def clock(self) -> Clock:
        clock: Clock = self._wrap("clock", utc_now)
        return clock

    # -- AWS ---------------------------------------------------------------------------------------------------

    @cached_property
    def _aws_config(self) -> Config:
        from botocore.config import Config

        return Config(retries={"mode": "standard", "max_attempts": 5}, parameter_validation=VALIDATE_AWS_PARAMETERS)

    @cached_property
    def _s3(self) -> S3Client:
        import boto3
        from botocore.config import Config

        # SigV4 for presigned URLs and POSTs (regions since 2014 accept nothing else; it also carries X-Amz-Expires).
        return boto3.client("s3", config=self._aws_config.merge(Config(signature_version="s3v4")))

    @cached_property
    def _dynamodb(self) -> DynamoDBClient:
        import boto3

        return boto3.client("dynamodb", config=self._aws_config)

    @cached_property
    def _sqs(self) -> SQSClient:
        import boto3

        return boto3.client("sqs", config=self._aws_config)

    @cached_property
    def uploads(self) -> UploadStore:
        from ips_adapters.aws import S3UploadStore

        return self._wrapped("uploads", S3UploadStore(self._s3, self.part(UploadsBucket).uploads_bucket))

    @cached_property
    def processed(self) -> BlobStore:
        from ips_adapters.aws import IMMUTABLE, S3BlobStore

        store = S3BlobStore(self._s3, self.part(ProcessedBucket).processed_bucket, cache_control=IMMUTABLE)
        return self._wrapped("processed", store)

    @cached_property
    def queue(self) -> TaskQueue:
        from ips_adapters.aws import SqsTaskQueue

        return self._wrapped("queue", SqsTaskQueue(self._sqs, self.part(ImagesQueue).images_queue_url))

    @cached_property
    def chunks(self) -> TaskQueue:
        from ips_adapters.aws import SqsTaskQueue

        return self._wrapped("chunks", SqsTaskQueue(self._sqs, self.part(ChunksQueue).chunks_queue_url))

    @cached_property
    def webhook_queue(self) -> TaskQueue:
        from ips_adapters.aws import SqsTaskQueue

        return self._wrapped("webhook_queue", SqsTaskQueue(self._sqs, self.part(WebhooksQueue).webhooks_queue_url))

    @cached_property
    def ingest_failures(self) -> DeadLetterQueue | None:
        """Only the reconciler's environment names it (in AWS: the ingest function's on-failure destination)."""
        from ips_adapters.aws import SqsDeadLetterQueue

        url = self.part(DeadLetterQueues).ingest_failures_queue_url
        return self._wrapped("ingest_failures", SqsDeadLetterQueue(self._sqs, url)) if url else None

    @cached_property
    def dead_letters(self) -> tuple[DeadLetterQueue, ...]:
        """Only the reconciler's environment names them (and only its role may read them)."""
        from ips_adapters.aws import SqsDeadLetterQueue

        urls = self.part(DeadLetterQueues).dead_letter_queue_urls
        return tuple(self._wrapped("dead_letters", SqsDeadLetterQueue(self._sqs, url)) for url in urls)

    @cached_property
    def ledger(self) -> Ledger:
        from ips_adapters.dynamodb import DynamoLedger

        return self._wrapped("ledger", DynamoLedger(self._dynamodb, self.part(RequestsTable).requests_table))

    @cached_property
    def quotas(self) -> Quotas:
        from ips_adapters.dynamodb import DynamoQuotas

        return self._wrapped("quotas", DynamoQuotas(self._dynamodb, self.part(RequestsTable).requests_table))

    @cached_property
    def chunk_progress(self) -> ChunkProgress:
        from ips_adapters.chunk_progress import DynamoChunkProgress

        table = self.part(RequestsTable).requests_table
        return self._wrapped("chunk_progress", DynamoChunkProgress(self._dynamodb, table))

    @cached_property
    def lease(self) -> Lease:
        from ips_adapters.lease import DynamoLease

        return self._wrapped("lease", DynamoLease(self._dynamodb, self.part(RequestsTable).requests_table))

    # -- MongoDB -----------------------------------------------------------------------------------------------

    @cached_property
    def _mongodb(self) -> MongoConnection:
        from ips_adapters.mongo_connection import MongoConnection, connect

        settings = self.part(MongoDb)
        return MongoConnection(
            lambda fresh: settings.connection_uri(fresh=fresh),
            lambda uri: connect(
                uri,
                settings.mongodb_database,
                max_pool_size=settings.mongodb_max_pool_size,
                aws_auth=settings.mongodb_auth == "iam",
            ),
        )

    def _on_mongodb(self, build: Callable[[Database[Any]], Any]) -> Any:
        """The adapter `build` makes, made again on a new client if the server refuses the credentials."""
        from ips_adapters.mongo_connection import Reconnecting

        return Reconnecting(self._mongodb, build)

    @cached_property
    def catalog(self) -> Catalog:
        from ips_adapters.mongo import MongoCatalog

        catalog: Catalog = self._on_mongodb(MongoCatalog)
        return self._wrapped("catalog", catalog)

    @cached_property
    def receivers(self) -> Receivers:
        from ips_adapters.mongo import MongoReceivers

        receivers: Receivers = self._on_mongodb(MongoReceivers)
        return self._wrapped("receivers", receivers)

    @cached_property
    def rounds(self) -> RoundLog:
        from ips_adapters.mongo import MongoRoundLog

        rounds: RoundLog = self._on_mongodb(MongoRoundLog)
        return self._wrapped("rounds", rounds)

    @cached_property
    def secret_generations(self) -> SecretGenerations:
        from ips_adapters.mongo import MongoSecretGenerations

        generations: SecretGenerations = self._on_mongodb(MongoSecretGenerations)
        return self._wrapped("secret_generations", generations)

    @cached_property
    def reuse(self) -> ReuseIndex | None:
        """None when IMAGE_REUSE is off: every image is fetched and compressed afresh."""
        if not self.part(Processing).reuse:
            return None
        from ips_adapters.mongo_reuse import MongoReuseIndex

        index: ReuseIndex = self._on_mongodb(MongoReuseIndex)
        return self._wrapped("reuse", index)

    def ensure_indexes(self, *, reuse: bool = False) -> None:
        """Create the collections' indexes (a no-op when they exist); `reuse`: the reuse index's too. Only the
        functions that write requests, products and reuse entries do it, once per container: the read-only
        routes never write (issue 10). Product pages and the output CSV read by request, in row order: without
        the index a 100,000-product request would be a collection scan per page."""
        from ips_adapters.mongo import MongoCatalog
        from ips_adapters.mongo_reuse import MongoReuseIndex

        self._on_mongodb(MongoCatalog).ensure_indexes()
        if reuse:
            self._on_mongodb(MongoReuseIndex).ensure_indexes()

    # -- outbound HTTP (image sources, webhooks) ----------------------------------------------------------------

    @cached_property
    def _policy(self) -> OutboundPolicy:
        """Webhook deliveries and the webhook URL's check: a response is read up to OutboundPolicy's own cap."""
        return self.part(Outbound).policy()

    @cached_property
    def fetcher(self) -> Fetcher:
        from ips.processing.polite import HostLimiter, PoliteFetcher
        from ips_adapters.outbound import OutboundClient

        # A download stops reading at the image byte cap: a bigger body fails as TOO_LARGE without being held.
        client = OutboundClient(self.part(Outbound).policy(self.part(ImageCaps).max_bytes))
        # Capped per source host for this process (every invocation a worker runs shares the limiter).
        limiter = HostLimiter(self.part(Processing).per_host)
        return self._wrapped("fetcher", PoliteFetcher(client, limiter))

    @cached_property
    def webhooks(self) -> WebhookPoster:
        from ips_adapters.outbound import OutboundClient

        return self._wrapped("webhooks", OutboundClient(self._policy))

    @cached_property
    def check_webhook_url(self) -> UrlCheck:
        from ips_adapters.outbound import check_url

        check: UrlCheck = self._wrapped("check_webhook_url", functools.partial(check_url, policy=self._policy))
        return check

    def _wrapped[T](self, name: str, adapter: T) -> T:
        wrapped: T = self._wrap(name, adapter)
        return wrapped
