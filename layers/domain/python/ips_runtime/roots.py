"""Each function's composition root: the use cases its handler calls, given only the ports they use.

A root is built on the function's first invocation (once per container; the local cloud's worker processes
each build their own) from its function's settings model (ips_runtime.settings.FUNCTIONS: the parts it reads,
validated then; the API functions read it when their handler is imported) and a set of `Adapters` over it,
which builds an adapter only when a root asks for it. So the
status function connects to MongoDB, DynamoDB and S3 and nothing else, and never imports Pillow or the
outbound HTTP client.

Seams for tests: `Root.override(value)` puts a root built otherwise in place (fault tests build every root from
`Adapters(wrap=...)`); `IPS_ADAPTER_HOOK` wraps the adapters of every root in whatever process builds them
(the chaos suite, in the local cloud's workers); `reset_roots()` is a cold start, after a test changed the
environment."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ips.completion.ports import CompletionPorts, WebhookPorts
from ips.completion.tenant_secrets import TenantSecrets
from ips.expansion.ports import ChunkPorts
from ips.intake.ports import IntakePorts, UrlCheck
from ips.processing.ports import ProcessingPorts, ReusePorts
from ips.reconcile.ports import ReconcilePorts
from ips.shared.output_links import OutputLinks
from ips.shared.ports import TaskQueue
from ips.shared.quotas import Allowance
from ips.status.ports import StatusPorts
from ips_runtime.adapters import Adapters
from ips_runtime.settings import (
    FUNCTIONS,
    AssetBaseUrl,
    CsvCaps,
    FunctionSettings,
    ImageCaps,
    Intake,
    OutputUrls,
    Processing,
    Quotas,
    Reconciling,
    RequestDefaults,
    ResendWindow,
    StatusPages,
    WebhookDelivery,
    WebhookSigning,
)

if TYPE_CHECKING:  # the image engine (Pillow) is imported by the process function's root only
    from ips.processing.service import KnownRequests


class Root[T]:
    """A function's root: `root()` is what its handler calls, built once from the function's settings and the
    adapters over them; `settings()` is the function's model, read from the environment once."""

    def __init__(self, name: str, build: Callable[[Adapters], T]) -> None:
        self.name, self.build, self.model = name, build, FUNCTIONS[name]
        self._settings: FunctionSettings | None = None
        self._built: T | None = None
        self._override: T | None = None
        self._lock = threading.Lock()  # the local cloud runs a function's invocations in threads too
        _ROOTS.append(self)

    def settings(self) -> FunctionSettings:
        """The function's settings (SettingsError, naming every bad variable, when the environment is wrong)."""
        if self._settings is None:
            self._settings = self.model.from_env()
        return self._settings

    def __call__(self) -> T:
        if self._override is not None:
            return self._override
        if self._built is None:
            with self._lock:
                if self._built is None:
                    self._built = self.build(Adapters(self.settings()))
        return self._built

    @contextlib.contextmanager
    def override(self, root: T) -> Iterator[T]:
        """Use `root` instead, until the block ends."""
        previous, self._override = self._override, root
        try:
            yield root
        finally:
            self._override = previous

    def reset(self) -> None:
        self._settings = self._built = None


_ROOTS: list[Root[Any]] = []  # every function's: roots of different types


def reset_roots() -> None:
    """A cold start of every function in this process: the next invocation builds its root from the environment
    as it is now (in-process tests change it; a Lambda container's never changes)."""
    for root in _ROOTS:
        root.reset()


@contextlib.contextmanager
def overriding_roots(adapters: Adapters) -> Iterator[Adapters]:
    """Every function's root built from `adapters` (over EveryFunction's settings), until the block ends."""
    with contextlib.ExitStack() as stack:
        for root in list(_ROOTS):
            stack.enter_context(root.override(root.build(adapters)))
        yield adapters


# -- what several roots share --------------------------------------------------------------------------------


def allowance(adapters: Adapters) -> Allowance:
    quotas = adapters.part(Quotas)
    return Allowance(adapters.quotas, adapters.clock, quotas.default, quotas.by_tenant, quotas.work_unit_s)


def output_links(adapters: Adapters) -> OutputLinks:
    return OutputLinks(adapters.uploads, adapters.part(OutputUrls).expiry_s)


def tenant_secrets(adapters: Adapters) -> TenantSecrets:
    signing = adapters.part(WebhookSigning)
    return TenantSecrets(signing.master(), adapters.secret_generations, adapters.clock, signing.rotation_window_s)


def completion_ports(adapters: Adapters) -> CompletionPorts:
    return CompletionPorts(
        adapters.catalog, adapters.ledger, adapters.uploads, adapters.clock, allowance(adapters), adapters.webhook_queue
    )


def intake_ports(adapters: Adapters) -> IntakePorts:
    return IntakePorts(
        uploads=adapters.uploads,
        catalog=adapters.catalog,
        ledger=adapters.ledger,
        chunks=adapters.chunks,
        allowance=allowance(adapters),
        clock=adapters.clock,
        policy=adapters.part(Intake).policy(adapters.part(CsvCaps)),
    )


# -- one root per function -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class UploadRoot:
    intake: IntakePorts
    check_webhook_url: UrlCheck
    jpeg_quality: int  # the default quality of a request's options
    csv_max_bytes: int  # the direct route's cap on the CSV


def build_upload(adapters: Adapters) -> UploadRoot:
    adapters.ensure_indexes()  # requests start here: their collections are indexed before any is read
    return UploadRoot(
        intake_ports(adapters),
        adapters.check_webhook_url,
        adapters.part(RequestDefaults).jpeg_quality,
        adapters.part(CsvCaps).direct.max_bytes,
    )


def build_ingest(adapters: Adapters) -> IntakePorts:
    return intake_ports(adapters)


@dataclass(frozen=True)
class ProcessRoot:
    images: ProcessingPorts
    requests: KnownRequests  # the requests this container has seen (its batches look each up once)
    queue: TaskQueue  # a message is delayed on it when its source said when to come back


def build_process(adapters: Adapters) -> ProcessRoot:
    from ips.processing.service import KnownRequests

    processing = adapters.part(Processing)
    adapters.ensure_indexes(reuse=processing.reuse)  # products and reuse entries are written here
    reuse = ReusePorts(
        adapters.reuse,
        adapters.processed,
        adapters.clock,
        adapters.part(AssetBaseUrl).asset_base_url,
        processing.output_retention_days,
    )
    images = ProcessingPorts(
        fetcher=adapters.fetcher,
        processed=adapters.processed,
        catalog=adapters.catalog,
        ledger=adapters.ledger,
        reuse=reuse,
        allowance=allowance(adapters),
        clock=adapters.clock,
        image_limits=adapters.part(ImageCaps).limits,
        max_receive_count=processing.max_receive_count,
    )
    return ProcessRoot(images, KnownRequests(adapters.catalog), adapters.queue)


def build_expand(adapters: Adapters) -> ChunkPorts:
    return ChunkPorts(
        adapters.uploads,
        adapters.catalog,
        adapters.queue,
        adapters.chunks,
        adapters.chunk_progress,
        adapters.part(CsvCaps).presigned,
    )


def build_notify(adapters: Adapters) -> CompletionPorts:
    return completion_ports(adapters)


def build_webhook(adapters: Adapters) -> WebhookPorts:
    """The only root that signs and sends webhooks (and holds the master secret besides the secret route's)."""
    return WebhookPorts(
        catalog=adapters.catalog,
        receivers=adapters.receivers,
        secrets=tenant_secrets(adapters),
        poster=adapters.webhooks,
        links=output_links(adapters),
        queue=adapters.webhook_queue,
        clock=adapters.clock,
        policy=adapters.part(WebhookDelivery).policy(adapters.part(ResendWindow)),
    )


@dataclass(frozen=True)
class StatusRoot:
    status: StatusPorts
    page_max_bytes: int  # a status page's JSON, as a Lambda result carries it


def build_status(adapters: Adapters) -> StatusRoot:
    ports = StatusPorts(adapters.catalog, adapters.ledger, output_links(adapters))
    return StatusRoot(ports, adapters.part(StatusPages).max_bytes)


def build_secret(adapters: Adapters) -> TenantSecrets:
    return tenant_secrets(adapters)


def build_reconcile(adapters: Adapters) -> ReconcilePorts:
    return ReconcilePorts(
        catalog=adapters.catalog,
        ledger=adapters.ledger,
        queue=adapters.queue,
        chunks=adapters.chunks,
        progress=adapters.chunk_progress,
        uploads=adapters.uploads,
        dead_letters=adapters.dead_letters,
        clock=adapters.clock,
        completion=completion_ports(adapters),
        policy=adapters.part(Reconciling).policy(adapters.part(ResendWindow)),
        intake_policy=adapters.part(Intake).policy(adapters.part(CsvCaps)),
        lease=adapters.lease,
        rounds=adapters.rounds,
        ingest_failures=adapters.ingest_failures,
    )


UPLOAD = Root("upload", build_upload)
INGEST = Root("ingest", build_ingest)
PROCESS = Root("process", build_process)
EXPAND = Root("expand", build_expand)
NOTIFY = Root("notify", build_notify)
WEBHOOK = Root("webhook", build_webhook)
STATUS = Root("status", build_status)
SECRET = Root("secret", build_secret)
RECONCILE = Root("reconcile", build_reconcile)
