"""The functions' settings: small shared parts, and one model per function composed of exactly the parts it reads.

A part (`Part`) is a few environment variables, typed, each with its default, and what they make: its fields are
named as the domain's own (`ImageLimits.max_bytes`, `RetryPolicy.attempts`, `IntakePolicy.chunk_images`), each
read from the variable its alias names (`IMAGE_MAX_BYTES`), so a part builds its domain object from its own
fields (`ImageLimits(**part.model_dump())`), with no copy by hand. The defaults are the domain's, named, never
repeated.

A function's model (`UploadFunction`, ..., `ReconcileFunction`; `FUNCTIONS` by name) is its parts, read from the
environment together at cold start: every problem of every part is one line of one SettingsError. Its
`variables()` are what it is given: `function_environment(name, available)` picks them (and powertools' own)
from every value a runtime knows, for the CDK stack (infra/constructs/functions.py) and for the local cloud's
execution environments alike (localcloud/cloud.py), which checks them before it starts. A root takes its parts by
type (`settings.part(CsvCaps)`).

A secret may be given as itself (`WEBHOOK_SECRET`, `MONGODB_URI`: the local cloud, tests) or, in AWS, by the
ARN of the Secrets Manager secret that holds it (`WEBHOOK_SECRET_SECRET_ARN`, `MONGODB_URI_SECRET_ARN`): a
function whose model reads the ARN is the one the stack lets read the secret (infra/constructs/secrets.py)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Annotated, Any, Literal, Self, cast
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic_settings import NoDecode

from ips.completion.policy import RetryPolicy, WebhookPolicy
from ips.completion.tenant_secrets import TenantSecrets
from ips.intake.policy import IntakePolicy
from ips.processing.polite import DEFAULT_PER_HOST
from ips.processing.ports import ProcessingPorts, ReusePorts
from ips.reconcile.policy import ReconcilePolicy
from ips.shared.csv_input import PRESIGNED_CSV_LIMITS, CsvLimits
from ips.shared.deadlines import DeadlinePolicy
from ips.shared.imaging import ImageLimits
from ips.shared.options import DEFAULT_OPTIONS
from ips.shared.output_links import OutputLinks
from ips.shared.quotas import WORK_UNIT_S, ImageQuota
from ips_adapters.outbound.policy import DEFAULT_CONTACT_URL, DEFAULT_USER_AGENT, OutboundPolicy, parse_origin
from ips_runtime.env_settings import EnvSettings, SettingsError
from ips_runtime.status_document import PAGE_MAX_BYTES

Count = Annotated[int, Field(ge=1)]
Whole = Annotated[int, Field(ge=0)]
Seconds = Annotated[float, Field(ge=0)]
Timeout = Annotated[float, Field(gt=0)]
MONGODB_SCHEMES = ("mongodb://", "mongodb+srv://")
# Connections per execution environment: one invocation at a time, whose threads that reach MongoDB are the
# process function's 4 finishing threads (ips.processing.service.STORE_IN_FLIGHT) and the handler's own. pymongo's
# default is 100: a burst of 20 process containers could open 2,000 against Atlas's limit (1,500 on an M10).
MONGODB_MAX_POOL_SIZE = 5
RUNTIME_PREFIX = "POWERTOOLS_"  # read by powertools itself, in every function


class Part(EnvSettings):
    """A few variables some functions read, and the domain object they make."""

    @classmethod
    def variables(cls) -> dict[str, bool]:
        """Each variable, and whether it must be set."""
        return {cls.variable(name): field.is_required() for name, field in cls.model_fields.items()}


# -- where things are (the stack, or the local cloud, names them) ---------------------------------------------


class UploadsBucket(Part):
    uploads_bucket: str  # the CSVs: direct uploads, presigned uploads, the pinned copies, the outputs


class ProcessedBucket(Part):
    processed_bucket: str


class AssetBaseUrl(Part):
    asset_base_url: str  # where processed objects are publicly readable: CloudFront in AWS, the gateway locally


class ImagesQueue(Part):
    images_queue_url: str


class ChunksQueue(Part):
    chunks_queue_url: str  # the fan-out's: intake sends chunks, expand re-queues them, the reconciler re-plans


class WebhooksQueue(Part):
    webhooks_queue_url: str  # wake-ups of webhook deliveries: notify and the reconciler send, webhook sends on


class RequestsTable(Part):
    requests_table: str  # the counters, quotas, chunk progress and the reconciler's lease


class DeadLetterQueues(Part):
    """The reconciler's only: the queues it drains."""

    dead_letter_queue_urls: Annotated[tuple[str, ...], NoDecode] = ()  # comma separated
    ingest_failures_queue_url: str | None = None  # ingestions that failed every try

    @field_validator("dead_letter_queue_urls", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        return tuple(url.strip() for url in value.split(",") if url.strip()) if isinstance(value, str) else value


class WebOrigin(Part):
    web_origin: str | None = None  # the upload page's origin: the API's CORS headers allow it


class AdapterHook(Part):
    ips_adapter_hook: str | None = None  # local cloud only: `module:function` wrapping the adapters (chaos)


class MongoDb(Part):
    mongodb_uri: str | None = None
    mongodb_uri_secret_arn: str | None = None
    mongodb_database: str = "ips"
    # uri: the credentials, if any, are in the URI (the local cloud; a password kept in Secrets Manager); iam:
    # MONGODB-AWS, the function's IAM role (the stack's default), the URI carrying no user or password.
    mongodb_auth: Literal["uri", "iam"] = "uri"
    mongodb_max_pool_size: Count = MONGODB_MAX_POOL_SIZE

    def connection_uri(self, *, fresh: bool = False) -> str:
        """Checked when the function first connects; `fresh`: read from Secrets Manager again, not from the cache
        (credentials were refused)."""
        uri = resolve_secret(self.mongodb_uri, self.mongodb_uri_secret_arn, fresh=fresh)
        if not uri:
            raise SettingsError("MONGODB_URI (or MONGODB_URI_SECRET_ARN) must be set")
        where = (
            "MONGODB_URI" if self.mongodb_uri else f"the secret MONGODB_URI_SECRET_ARN={self.mongodb_uri_secret_arn}"
        )
        if not uri.startswith(MONGODB_SCHEMES):
            # The stack creates the secret with a random placeholder; the value itself is never quoted.
            raise SettingsError(
                f"{where} holds no MongoDB connection string (the stack's random placeholder until the Atlas URI "
                "is put there): aws secretsmanager put-secret-value --secret-id <that ARN> --secret-string "
                "'mongodb+srv://...' (docs/deployment.md)"
            )
        if self.mongodb_auth == "iam" and (urlsplit(uri).username or urlsplit(uri).password):
            raise SettingsError(
                f"{where} carries a user or password, but MONGODB_AUTH=iam authenticates with the function's IAM "
                "role: store the URI without credentials, or deploy with mongodbAuth=uri"
            )
        return uri


# -- policies: each part's fields are its domain object's --------------------------------------------------


class CsvCaps(Part):
    """`CsvLimits` of both routes: the direct upload's (the CSV is the request body) and the presigned one's
    (streamed from S3); URLs per row are capped alike on both."""

    max_bytes: Count = Field(CsvLimits.max_bytes, alias="CSV_MAX_BYTES")
    max_rows: Count = Field(CsvLimits.max_rows, alias="CSV_MAX_ROWS")
    max_urls_per_row: Count = Field(CsvLimits.max_urls_per_row, alias="CSV_MAX_URLS_PER_ROW")
    presigned_max_bytes: Count = Field(PRESIGNED_CSV_LIMITS.max_bytes, alias="PRESIGNED_CSV_MAX_BYTES")
    presigned_max_rows: Count = Field(PRESIGNED_CSV_LIMITS.max_rows, alias="PRESIGNED_CSV_MAX_ROWS")

    @property
    def direct(self) -> CsvLimits:
        return CsvLimits(max_bytes=self.max_bytes, max_rows=self.max_rows, max_urls_per_row=self.max_urls_per_row)

    @property
    def presigned(self) -> CsvLimits:
        return CsvLimits(
            max_bytes=self.presigned_max_bytes, max_rows=self.presigned_max_rows, max_urls_per_row=self.max_urls_per_row
        )


class ImageCaps(Part):
    """`ImageLimits`: an image's bytes (also where its download stops reading: TOO_LARGE), pixels, CPU seconds."""

    max_bytes: Count = Field(ImageLimits.max_bytes, alias="IMAGE_MAX_BYTES")
    max_pixels: Count = Field(ImageLimits.max_pixels, alias="IMAGE_MAX_PIXELS")
    max_decode_seconds: Timeout = Field(ImageLimits.max_decode_seconds, alias="IMAGE_MAX_DECODE_SECONDS")
    # an encode's estimate (TOO_COSTLY past it)
    max_encode_seconds: Timeout = Field(ImageLimits.max_encode_seconds, alias="IMAGE_MAX_ENCODE_SECONDS")

    @property
    def limits(self) -> ImageLimits:
        return ImageLimits(**self.model_dump())


class TenantImageLimits(BaseModel):
    """One API key's own image limits in TENANT_IMAGE_QUOTAS; a missing one is every key's."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    perDay: Count | None = None  # the JSON's (and the stack parameter's) spelling
    inFlight: Count | None = None


class Quotas(Part):
    """Every API key's `ImageQuota`, some keys' own, and the estimated encode seconds an image counts for."""

    per_day: Count = Field(ImageQuota.per_day, alias="IMAGE_QUOTA_PER_DAY")
    in_flight: Count = Field(ImageQuota.in_flight, alias="IMAGES_IN_FLIGHT")
    work_unit_s: Timeout = Field(WORK_UNIT_S, alias="IMAGE_QUOTA_WORK_SECONDS")
    # JSON by API key id: {"<id>": {"perDay": n, "inFlight": m}} (the local cloud writes it from IMAGE_QUOTAS).
    tenants: Annotated[dict[str, TenantImageLimits], NoDecode] = Field(
        default_factory=dict, alias="TENANT_IMAGE_QUOTAS"
    )

    @field_validator("tenants", mode="before")
    @classmethod
    def _json(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        try:
            return json.loads(value)
        except json.JSONDecodeError as exc:
            raise ValueError(f"not JSON ({exc})") from None

    @property
    def default(self) -> ImageQuota:
        return ImageQuota(self.per_day, self.in_flight)

    @property
    def by_tenant(self) -> dict[str, ImageQuota]:
        return {
            tenant: ImageQuota(limits.perDay or self.per_day, limits.inFlight or self.in_flight)
            for tenant, limits in self.tenants.items()
        }


class Intake(Part):
    """`IntakePolicy` beyond the CSV limits: its chunks, how long its upload may take, its `DeadlinePolicy`."""

    # Images per fan-out chunk: one chunk's expansion fits an expand invocation (whole rows; a bigger row alone).
    chunk_images: Count = Field(IntakePolicy.chunk_images, alias="CHUNK_IMAGES")
    upload_expiry_s: Whole = Field(IntakePolicy.upload_expiry_s, alias="UPLOAD_EXPIRY_SECONDS")
    upload_grace_s: Seconds = Field(IntakePolicy.upload_grace_s, alias="UPLOAD_GRACE_SECONDS")
    deadline_base_s: Seconds = Field(DeadlinePolicy.base_s, alias="REQUEST_DEADLINE_SECONDS")
    deadline_per_image_s: Seconds = Field(DeadlinePolicy.per_image_s, alias="REQUEST_DEADLINE_PER_IMAGE_SECONDS")

    def policy(self, csv: CsvCaps) -> IntakePolicy:
        """These fields with both routes' CSV limits."""
        return IntakePolicy(
            csv_limits=csv.direct,
            presigned_csv_limits=csv.presigned,
            chunk_images=self.chunk_images,
            upload_expiry_s=self.upload_expiry_s,
            upload_grace_s=self.upload_grace_s,
            deadlines=DeadlinePolicy(self.deadline_base_s, self.deadline_per_image_s),
        )


class RequestDefaults(Part):
    jpeg_quality: Annotated[int, Field(ge=1, le=100)] = Field(DEFAULT_OPTIONS.quality, alias="JPEG_QUALITY")


class Processing(Part):
    """How the process function treats an image beyond its limits: retries, reuse, politeness to sources."""

    max_receive_count: Count = Field(ProcessingPorts.max_receive_count, alias="MAX_RECEIVE_COUNT")
    reuse: bool = Field(True, alias="IMAGE_REUSE")  # off: every image is fetched and compressed afresh
    output_retention_days: Annotated[float, Field(gt=0)] = Field(
        ReusePorts.output_retention_days, alias="OUTPUT_RETENTION_DAYS"
    )
    per_host: Count = Field(DEFAULT_PER_HOST, alias="FETCH_PER_HOST")  # downloads in flight per host, per process


class OutputUrls(Part):
    expiry_s: Whole = Field(OutputLinks.expiry_s, alias="OUTPUT_URL_EXPIRY_SECONDS")


class StatusPages(Part):
    max_bytes: Count = Field(PAGE_MAX_BYTES, alias="STATUS_PAGE_MAX_BYTES")


class WebhookDelivery(Part):
    """`WebhookPolicy` but its window (`ResendWindow`, the reconciler's too): its `RetryPolicy` (attempts, first
    pause), one attempt's limit and the claim a sender holds."""

    attempts: Count = Field(RetryPolicy.attempts, alias="WEBHOOK_ATTEMPTS")
    first_delay: Seconds = Field(RetryPolicy.first_delay, alias="WEBHOOK_FIRST_DELAY")
    timeout_s: Timeout = Field(WebhookPolicy.timeout_s, alias="WEBHOOK_TIMEOUT_SECONDS")
    lease_s: Count = Field(WebhookPolicy.lease_s, alias="WEBHOOK_LEASE_SECONDS")

    @property
    def retry(self) -> RetryPolicy:
        return RetryPolicy(self.attempts, self.first_delay)

    def policy(self, resend: ResendWindow) -> WebhookPolicy:
        return WebhookPolicy(self.retry, self.timeout_s, self.lease_s, resend.webhook_resend_window_s)


class ResendWindow(Part):
    webhook_resend_window_s: Seconds = Field(WebhookPolicy.resend_window_s, alias="WEBHOOK_RESEND_WINDOW_SECONDS")


class WebhookSigning(Part):
    secret: str | None = Field(None, alias="WEBHOOK_SECRET")  # the master whsec_... tenants' secrets derive from
    secret_arn: str | None = Field(None, alias="WEBHOOK_SECRET_SECRET_ARN")
    rotation_window_s: Whole = Field(TenantSecrets.rotation_window_s, alias="WEBHOOK_ROTATION_WINDOW_SECONDS")

    def master(self) -> str | None:
        """The master secret (fetched from Secrets Manager when given by ARN)."""
        return resolve_secret(self.secret, self.secret_arn)


class Reconciling(Part):
    """`ReconcilePolicy` but its webhook window (`ResendWindow`): when work counts as lost, how often a dead letter
    is put back, its rounds."""

    stall_after_s: Seconds = Field(ReconcilePolicy.stall_after_s, alias="STALL_AFTER_SECONDS")
    dead_letter_redrives: Whole = Field(ReconcilePolicy.dead_letter_redrives, alias="DEAD_LETTER_REDRIVES")
    # The topology sets both: the function's timeout and the schedule's rate.
    lease_s: Timeout = Field(ReconcilePolicy.lease_s, alias="RECONCILE_LEASE_SECONDS")
    interval_s: Timeout = Field(ReconcilePolicy.interval_s, alias="RECONCILE_INTERVAL_SECONDS")

    def policy(self, resend: ResendWindow) -> ReconcilePolicy:
        return ReconcilePolicy(**self.model_dump(), webhook_resend_window_s=resend.webhook_resend_window_s)


class Outbound(Part):
    """`OutboundPolicy`: image downloads and webhook deliveries (and the upload's check of a webhook URL)."""

    allowlist: Annotated[frozenset[tuple[str, int]], NoDecode] = Field(
        OutboundPolicy.allowlist, alias="OUTBOUND_ALLOWLIST"
    )
    max_redirects: Whole = Field(OutboundPolicy.max_redirects, alias="OUTBOUND_MAX_REDIRECTS")
    connect_timeout: Timeout = Field(OutboundPolicy.connect_timeout, alias="OUTBOUND_CONNECT_TIMEOUT")
    read_timeout: Timeout = Field(OutboundPolicy.read_timeout, alias="OUTBOUND_READ_TIMEOUT")
    total_timeout: Timeout = Field(OutboundPolicy.total_timeout, alias="OUTBOUND_TOTAL_TIMEOUT")
    agent: str = Field(DEFAULT_USER_AGENT, alias="FETCH_USER_AGENT")
    contact_url: str = Field(DEFAULT_CONTACT_URL, alias="FETCH_CONTACT_URL")

    @field_validator("allowlist", mode="before")
    @classmethod
    def _origins(cls, value: Any) -> Any:
        """host:port, comma separated: `127.0.0.1:8080,localhost:9000,[::1]:8443`."""
        if isinstance(value, str):
            return frozenset(parse_origin(item.strip()) for item in value.split(",") if item.strip())
        return value

    def policy(self, max_bytes: int = OutboundPolicy.max_bytes) -> OutboundPolicy:
        """`max_bytes`: where a response stops being read (the process function's: the image byte cap)."""
        fields = self.model_dump(exclude={"agent", "contact_url"})
        return OutboundPolicy(**fields, max_bytes=max_bytes, user_agent=f"{self.agent} (+{self.contact_url})")


def resolve_secret(value: str | None, arn: str | None, *, fresh: bool = False) -> str | None:
    """The value given, or the Secrets Manager secret `arn` names (cached by powertools for 5 minutes; `fresh`:
    fetched again)."""
    if value or not arn:
        return value
    from aws_lambda_powertools.utilities.parameters import get_secret

    return str(get_secret(arn, max_age=300, force_fetch=fresh))


# -- one model per function ----------------------------------------------------------------------------------


class FunctionSettings(BaseModel):
    """A function's settings: its parts (every field one), read together. Every function has the adapter hook."""

    model_config = ConfigDict(frozen=True)
    hook: AdapterHook

    @classmethod
    def parts(cls) -> dict[str, type[Part]]:
        return {name: cast(type[Part], field.annotation) for name, field in cls.model_fields.items()}

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Self:
        """Every part read from `env` (the process environment when None); SettingsError names every bad
        variable of every part, one line each."""
        read: dict[str, Part] = {}
        problems: list[str] = []
        for name, part in cls.parts().items():
            try:
                read[name] = part.from_env(env)
            except SettingsError as refused:
                problems.extend(refused.problems)
        if problems:
            raise SettingsError(*problems)
        return cls.model_validate(read)

    @classmethod
    def variables(cls) -> dict[str, bool]:
        """Each variable the function reads, and whether it must be set: what the stack gives it."""
        return {name: required for part in cls.parts().values() for name, required in part.variables().items()}

    def part[P: Part](self, kind: type[P]) -> P:
        for value in self.__dict__.values():
            if isinstance(value, kind):
                return value
        raise LookupError(f"{type(self).__name__} has no {kind.__name__}: add it to the function's settings")


class UploadFunction(FunctionSettings):
    """POST /upload and /uploads: validate, store (or sign), reserve the images, open the counter, fan out."""

    mongodb: MongoDb
    uploads: UploadsBucket
    chunks_queue: ChunksQueue
    table: RequestsTable
    web_origin: WebOrigin
    intake: Intake
    csv: CsvCaps
    quotas: Quotas
    defaults: RequestDefaults
    outbound: Outbound  # the webhook URL's check


class IngestFunction(FunctionSettings):
    """The presigned upload's file, as S3 announces it: pin, plan, reserve, open, fan out."""

    mongodb: MongoDb
    uploads: UploadsBucket
    chunks_queue: ChunksQueue
    table: RequestsTable
    intake: Intake
    csv: CsvCaps
    quotas: Quotas


class ExpandFunction(FunctionSettings):
    """A chunk's rows into products and image tasks."""

    mongodb: MongoDb
    uploads: UploadsBucket
    images_queue: ImagesQueue
    chunks_queue: ChunksQueue
    table: RequestsTable
    csv: CsvCaps


class ProcessFunction(FunctionSettings):
    """Fetch, compress, store and count each image."""

    mongodb: MongoDb
    processed: ProcessedBucket
    assets: AssetBaseUrl
    images_queue: ImagesQueue
    table: RequestsTable
    images: ImageCaps
    processing: Processing
    quotas: Quotas
    outbound: Outbound


class NotifyFunction(FunctionSettings):
    """A request's end: the output CSV, the images out of flight, the webhook's first wake-up."""

    mongodb: MongoDb
    uploads: UploadsBucket
    webhooks_queue: WebhooksQueue
    table: RequestsTable
    quotas: Quotas


class WebhookFunction(FunctionSettings):
    """One signed attempt of a request's webhook."""

    mongodb: MongoDb
    uploads: UploadsBucket  # the output CSV's presigned link
    webhooks_queue: WebhooksQueue
    output_urls: OutputUrls
    delivery: WebhookDelivery
    resend: ResendWindow
    signing: WebhookSigning
    outbound: Outbound


class StatusFunction(FunctionSettings):
    """GET /status: progress, a page of products, the output CSV's link."""

    mongodb: MongoDb
    uploads: UploadsBucket
    table: RequestsTable
    web_origin: WebOrigin
    output_urls: OutputUrls
    pages: StatusPages


class SecretFunction(FunctionSettings):
    """GET and POST /webhook-secret: a tenant's signing secret, derived from the master; its rotation."""

    mongodb: MongoDb
    web_origin: WebOrigin
    signing: WebhookSigning


class ReconcileFunction(FunctionSettings):
    """The scheduled round: dead letters, lost chunks and images, expired uploads, deadlines, lost webhooks."""

    mongodb: MongoDb
    uploads: UploadsBucket
    images_queue: ImagesQueue
    chunks_queue: ChunksQueue
    webhooks_queue: WebhooksQueue
    table: RequestsTable
    dead_letters: DeadLetterQueues
    intake: Intake
    csv: CsvCaps
    quotas: Quotas
    reconciling: Reconciling
    resend: ResendWindow


FUNCTIONS: dict[str, type[FunctionSettings]] = {
    "upload": UploadFunction,
    "ingest": IngestFunction,
    "expand": ExpandFunction,
    "process": ProcessFunction,
    "notify": NotifyFunction,
    "webhook": WebhookFunction,
    "status": StatusFunction,
    "secret": SecretFunction,
    "reconcile": ReconcileFunction,
}


def function_environment(name: str, available: Mapping[str, str]) -> dict[str, str]:
    """What the function `name` is given of `available` (every value the runtime knows): the variables its model
    reads that `available` sets, powertools' own and its service name. In AWS its whole environment (the stack's);
    in the local cloud, its execution environments' besides what a local process needs (localcloud.cloud)."""
    reads = FUNCTIONS[name].variables()
    return {
        **{variable: value for variable, value in available.items() if variable in reads},
        **{variable: value for variable, value in available.items() if variable.startswith(RUNTIME_PREFIX)},
        "POWERTOOLS_SERVICE_NAME": name,
    }


class EveryFunction(
    UploadFunction,
    IngestFunction,
    ExpandFunction,
    ProcessFunction,
    NotifyFunction,
    WebhookFunction,
    StatusFunction,
    SecretFunction,
    ReconcileFunction,
):
    """Every function's parts at once: one set of adapters that can build every root (tests that override every
    root with one `Adapters`, the tools that reach every store; tests/unit/test_function_settings.py checks it
    is every model of FUNCTIONS)."""


def parts() -> list[type[Part]]:
    """Every part some function reads."""
    return list(dict.fromkeys(EveryFunction.parts().values()))
