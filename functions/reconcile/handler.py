"""Scheduled (EventBridge rate schedule; a timer runner locally) -> one reconciler round: wait out a store
outage (moving deadlines by it afterwards), put dead letters back or end them, re-ingest failed uploads, end
expired uploads and requests past their deadline, re-queue stalled work, wake webhooks whose wake-up was lost.
Idempotent, and safe beside the pipeline; one round at a time (a lease: an overlapping one is skipped). Each round
that runs publishes ReconcilerRounds, the heartbeat the stack alarms on."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from ips.reconcile.service import reconcile
from ips_runtime.observability import observability
from ips_runtime.roots import RECONCILE as root

logger, metrics, tracer = observability("reconcile")
RESERVE_S = 30.0  # stop starting new work this long before the function's timeout


@logger.inject_lambda_context(log_event=False)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    report = reconcile(root(), lambda: context.get_remaining_time_in_millis() / 1000 - RESERVE_S)
    summary = report.as_dict()
    if report.skipped:
        metrics.add_metric("ReconcilerRoundsSkipped", MetricUnit.Count, 1)
        return summary
    # The heartbeat: a round that ran to its end (the ReconcilerHeartbeat alarm fires when none has for 15 min).
    metrics.add_metric("ReconcilerRounds", MetricUnit.Count, 1)
    for name, metric in (
        ("store_outage", "StoreOutageRounds"),
        ("deadlines_paused", "DeadlinesPaused"),
        ("redriven", "DeadLettersRedriven"),
        ("dead_images", "DeadLetteredImages"),
        ("dead_chunks", "DeadLetteredChunks"),
        ("dead_dropped", "DeadLettersDropped"),
        ("uploads_reingested", "UploadsReingested"),
        ("uploads_expired", "UploadsExpired"),
        ("past_deadline", "RequestsPastDeadline"),
        ("images_failed_at_deadline", "ImagesFailedAtDeadline"),
        ("stalled", "RequestsStalled"),
        ("webhooks_woken", "WebhooksWoken"),
    ):
        metrics.add_metric(metric, MetricUnit.Count, int(summary[name]))
    logger.info("reconciler round finished", extra=summary)
    return summary
