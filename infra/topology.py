"""The system's topology, described once: read by the CDK stack (infra/) and by the local cloud (localcloud/).

Routes -> functions, queues -> functions (batch size, window), stream -> function (filter), the usage plan and
the names every function finds its resources by. Neither runtime hard-codes any of it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ips_adapters.dynamodb import COMPLETION_FILTER


@dataclass(frozen=True)
class Function:
    name: str
    code: str  # folder under the project root; deployed as the function's code asset
    description: str
    handler: str = "handler.lambda_handler"
    memory_mb: int = 512
    timeout_s: int = 30
    reserved_concurrency: int | None = None

    @property
    def module(self) -> str:
        """The handler's import path from the project root (how the local cloud loads it)."""
        return f"{self.code.replace('/', '.')}.{self.handler.rsplit('.', 1)[0]}"

    @property
    def entry_point(self) -> str:
        return self.handler.rsplit(".", 1)[1]


@dataclass(frozen=True)
class Route:
    method: str
    path: str  # API Gateway syntax: /api/v1/status/{requestId}
    function: str


@dataclass(frozen=True)
class Queue:
    name: str
    dead_letter_name: str
    visibility_timeout_s: int
    max_receive_count: int
    retention_days: int = 14  # SQS's maximum: work waits out a long outage instead of vanishing


@dataclass(frozen=True)
class QueueSource:
    queue: str
    function: str
    batch_size: int
    max_batching_window_s: int


@dataclass(frozen=True)
class StreamSource:
    function: str
    batch_size: int
    filter_pattern: dict[str, Any]
    retry_attempts: int


@dataclass(frozen=True)
class BucketNotification:
    """S3 ObjectCreated on the uploads bucket under `prefix` -> `function` (the presigned-upload path), invoked
    asynchronously: an event that still fails after `retry_attempts` retries goes to the `failures_queue`
    (Lambda's on-failure destination), which the reconciler drains by ingesting the file again."""

    function: str
    prefix: str
    retry_attempts: int = 2  # Lambda's maximum for asynchronous invocations
    failures_queue: str = "ips-ingest-failures"


@dataclass(frozen=True)
class Schedule:
    """`function` invoked every `rate_minutes` (an EventBridge rate schedule; a timer runner locally)."""

    function: str
    rate_minutes: int


@dataclass(frozen=True)
class UsagePlan:
    rate_per_second: float
    burst: int
    quota_per_day: int


@dataclass(frozen=True)
class GatewayResponse:
    status: int
    code: str
    message: str


@dataclass(frozen=True)
class PayloadLimits:
    """AWS's hard payload quotas, which every limit the API advertises must fit inside. The CDK stack deploys
    under them and the local gateway enforces them as API Gateway and Lambda do."""

    gateway_body_bytes: int = 10 * 1024 * 1024  # API Gateway REST: the request body (413 above it)
    # Lambda's synchronous invocation: the event JSON in, the result JSON out (6 MiB; responses get 100 bytes
    # more). API Gateway base64-encodes binary bodies into the event, so a body costs 4/3 of its size.
    invoke_request_bytes: int = 6 * 1024 * 1024
    invoke_response_bytes: int = 6 * 1024 * 1024 + 100
    # Room kept for the rest of the proxy event around a body (headers and query twice, requestContext).
    envelope_bytes: int = 64 * 1024
    # What a page of a list answer (a status page) leaves unused under the response limit: the result's envelope
    # around the body (status, headers), with room to spare.
    page_room_bytes: int = 1024 * 1024

    @property
    def function_body_bytes(self) -> int:
        """The largest binary request body whose proxy event fits a Lambda invocation."""
        return (self.invoke_request_bytes - self.envelope_bytes) // 4 * 3

    @property
    def page_bytes(self) -> int:
        """The most a page of a list answer takes once encoded into the result JSON: 5 MiB + 100."""
        return self.invoke_response_bytes - self.page_room_bytes


@dataclass(frozen=True)
class Topology:
    functions: tuple[Function, ...]
    routes: tuple[Route, ...]
    images_queue: Queue
    queue_source: QueueSource
    # The fan-out's own queue: one chunk of CSV rows per invocation, expanded into image messages.
    chunks_queue: Queue
    chunk_source: QueueSource
    # Webhook deliveries on their own queue: notify queues a wake-up, the webhook function makes each attempt.
    webhooks_queue: Queue
    webhook_source: QueueSource
    stream_source: StreamSource
    upload_notification: BucketNotification
    reconcile_schedule: Schedule
    usage_plan: UsagePlan
    # API Gateway answers these itself (before any function); both runtimes give the same JSON bodies.
    gateway_responses: dict[str, GatewayResponse]
    binary_media_types: tuple[str, ...]
    payload_limits: PayloadLimits = PayloadLimits()
    uploads_bucket: str = "ips-uploads"
    processed_bucket: str = "ips-processed"
    requests_table: str = "ips-requests"
    # S3 lifecycle expiry (both runtimes): the uploads bucket holds the input and output CSVs, the processed
    # bucket the images (their public URLs stop working then).
    uploads_retention_days: int = 30
    processed_retention_days: int = 365
    stage: str = "v1"
    environment: dict[str, str] = field(default_factory=dict)

    def function_environment(self) -> dict[str, str]:
        """Settings every function gets besides its resource names and secrets."""
        return {
            **self.environment,
            "MAX_RECEIVE_COUNT": str(self.images_queue.max_receive_count),
            # Rounds further apart than twice this had a store outage between them (ips.reconcile.service).
            "RECONCILE_INTERVAL_SECONDS": str(self.reconcile_schedule.rate_minutes * 60),
            # Status pages stop adding products 1 MiB before their JSON would pass Lambda's response payload.
            "STATUS_PAGE_MAX_BYTES": str(self.payload_limits.page_bytes),
            # A reconciler round holds its lease at most as long as its invocation may run.
            "RECONCILE_LEASE_SECONDS": str(self.function(self.reconcile_schedule.function).timeout_s),
        }

    @property
    def max_body_bytes(self) -> int:
        """API Gateway's request body limit."""
        return self.payload_limits.gateway_body_bytes

    def function(self, name: str) -> Function:
        return next(function for function in self.functions if function.name == name)


PROCESS_TIMEOUT_S = 60
EXPAND_TIMEOUT_S = 120
NOTIFY_TIMEOUT_S = 300
WEBHOOK_TIMEOUT_S = 30  # one attempt: a POST of at most WEBHOOK_TIMEOUT_SECONDS (10 s), the claim and the record
# A webhook claim outlives one attempt (the webhook function's timeout) and ends before the webhook queue's
# visibility timeout, so the redelivery of a sender that died mid-POST finds it expired.
WEBHOOK_LEASE_S = 2 * WEBHOOK_TIMEOUT_S

TOPOLOGY = Topology(
    functions=(
        Function(
            "upload",
            "functions/upload",
            "Validate a CSV, store it, create the request, fan out",
            memory_mb=1024,
            timeout_s=29,  # API Gateway's integration timeout
        ),
        Function("status", "functions/status", "Report a request's progress and results", timeout_s=10),
        Function(
            "process",
            "functions/process",
            "Fetch, compress and store one image per queue message",
            memory_mb=2048,  # a 50 MP RGBA image decoded is 200 MB; Lambda CPU also scales with memory
            timeout_s=PROCESS_TIMEOUT_S,
            reserved_concurrency=20,  # protects MongoDB's connection limit
        ),
        Function(
            "ingest",
            "functions/ingest",
            "Validate a CSV uploaded straight to S3 and fan it out (the presigned-upload path)",
            memory_mb=1024,
            timeout_s=300,  # a 100 MB CSV is streamed and validated in one pass
        ),
        Function("secret", "functions/secret", "Read and rotate a tenant's webhook signing secret", timeout_s=10),
        Function(
            "expand",
            "functions/expand",
            "Expand one chunk of CSV rows into product records and image messages, resumably",
            timeout_s=EXPAND_TIMEOUT_S,
            reserved_concurrency=5,  # product inserts share MongoDB's connection limit with the process function
        ),
        Function(
            "notify",
            "functions/notify",
            "Write the output CSV, finalise, queue the webhook",
            timeout_s=NOTIFY_TIMEOUT_S,  # a million images' output CSV, streamed
        ),
        Function(
            "webhook",
            "functions/webhook",
            "Sign and send one attempt of an ended request's webhook; schedule the next through its queue",
            timeout_s=WEBHOOK_TIMEOUT_S,
            reserved_concurrency=10,  # its claims and records share MongoDB's connections with the pipeline's
        ),
        Function(
            "reconcile",
            "functions/reconcile",
            "Make every request end: wait out outages, drain DLQs, enforce deadlines, re-queue stalled work",
            timeout_s=300,
        ),
    ),
    routes=(
        Route("POST", "/api/v1/upload", "upload"),
        Route("POST", "/api/v1/uploads", "upload"),
        Route("GET", "/api/v1/status/{requestId}", "status"),
        Route("GET", "/api/v1/webhook-secret", "secret"),
        Route("POST", "/api/v1/webhook-secret/rotate", "secret"),
    ),
    images_queue=Queue(
        name="ips-images",
        dead_letter_name="ips-images-dlq",
        visibility_timeout_s=6 * PROCESS_TIMEOUT_S,  # AWS's guidance: at least 6x the function timeout
        max_receive_count=5,
    ),
    queue_source=QueueSource(queue="ips-images", function="process", batch_size=10, max_batching_window_s=1),
    chunks_queue=Queue(
        name="ips-chunks",
        dead_letter_name="ips-chunks-dlq",
        visibility_timeout_s=6 * EXPAND_TIMEOUT_S,
        max_receive_count=5,
    ),
    # One chunk per invocation: a chunk is sized (CHUNK_IMAGES) to fit one, and never waits behind another.
    chunk_source=QueueSource(queue="ips-chunks", function="expand", batch_size=1, max_batching_window_s=0),
    webhooks_queue=Queue(
        name="ips-webhooks",
        dead_letter_name="ips-webhooks-dlq",
        visibility_timeout_s=6 * WEBHOOK_TIMEOUT_S,
        # deliveries that crash or time out; failed attempts are not receives (ips.completion.service)
        max_receive_count=5,
    ),
    # One wake-up per invocation: a receiver that never answers holds one invocation for one POST's timeout.
    webhook_source=QueueSource(queue="ips-webhooks", function="webhook", batch_size=1, max_batching_window_s=0),
    stream_source=StreamSource(function="notify", batch_size=10, filter_pattern=COMPLETION_FILTER, retry_attempts=5),
    upload_notification=BucketNotification(function="ingest", prefix="incoming/"),
    reconcile_schedule=Schedule(function="reconcile", rate_minutes=5),
    usage_plan=UsagePlan(rate_per_second=20, burst=40, quota_per_day=100_000),
    gateway_responses={
        "INVALID_API_KEY": GatewayResponse(403, "INVALID_API_KEY", "A valid x-api-key header is required."),
        "THROTTLED": GatewayResponse(429, "THROTTLED", "Too many requests; slow down and retry."),
        "QUOTA_EXCEEDED": GatewayResponse(429, "QUOTA_EXCEEDED", "The daily request quota is used up."),
        "MISSING_AUTHENTICATION_TOKEN": GatewayResponse(404, "NOT_FOUND", "No such route."),
        # Also what API Gateway answers when the proxy event would pass Lambda's payload limit.
        "REQUEST_TOO_LARGE": GatewayResponse(
            413, "PAYLOAD_TOO_LARGE", "The request body is too large; send big CSVs with POST /api/v1/uploads."
        ),
    },
    binary_media_types=("multipart/form-data", "text/csv", "application/octet-stream"),
    environment={
        "POWERTOOLS_METRICS_NAMESPACE": "ImageProcessingSystem",
        "JPEG_QUALITY": "50",
        "WEBHOOK_LEASE_SECONDS": str(WEBHOOK_LEASE_S),
    },
)
