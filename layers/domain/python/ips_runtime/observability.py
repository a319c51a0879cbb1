"""Powertools Logger, Metrics and Tracer, one set per function, named by the environment.

Strangers' URLs (input images, webhooks) often carry tokens in their query strings, so:
- the tracer patches only our own backends (botocore, pymongo). X-Ray's patches of requests and http.client
  would add an X-Amzn-Trace-Id header to every image fetch and webhook post (our trace IDs, sent to anyone's
  server) and record each URL; the outbound client also drops trace headers itself (see
  ips_adapters.outbound.transport), whatever else patches it;
- decorated functions' return values and exceptions are not recorded as trace metadata (handlers return status
  pages and presigned fields full of URLs);
- every log handler redacts URLs' query strings (ips.shared.redaction).

The tracer's own logger is off: it logs every exception passing through a decorated function with its traceback,
a 404 or a refused CSV included (on the local cloud's console, in CloudWatch in AWS), then re-raises it to
whoever handles it: the resolver's handlers answer those, and log what is unexpected themselves; Lambda reports
what escapes a handler.

Metrics go through `QuietMetricsProvider`: an invocation that added none (a status read) publishes nothing and
warns nothing, and with POWERTOOLS_METRICS_DISABLED (the local cloud's default) nothing is ever printed."""

from __future__ import annotations

import logging
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics.functions import is_metrics_disabled
from aws_lambda_powertools.metrics.provider.cloudwatch_emf.cloudwatch import AmazonCloudWatchEMFProvider

from ips.shared.redaction import install_url_redaction

NAMESPACE = "ImageProcessingSystem"
logging.getLogger("aws_lambda_powertools.tracing.tracer").disabled = True
TRACED_MODULES = ("botocore", "pymongo")


class PrivateTracer(Tracer):
    """A powertools Tracer whose decorators never put a function's response or error into trace metadata."""

    def capture_lambda_handler(
        self, lambda_handler: Any = None, capture_response: Any = None, capture_error: Any = None
    ) -> Any:
        return super().capture_lambda_handler(lambda_handler, capture_response=False, capture_error=False)

    def capture_method(self, method: Any = None, capture_response: Any = None, capture_error: Any = None) -> Any:
        return super().capture_method(method, capture_response=False, capture_error=False)


class QuietMetricsProvider(AmazonCloudWatchEMFProvider):
    """powertools' CloudWatch EMF provider, flushing as it does except in two cases, where it clears instead:
    - no metric was added: powertools warns "No application metrics to publish" on every such invocation (every
      status read; once per execution environment and warning location locally, on the console);
    - metrics are disabled: powertools skips the flush but keeps the set, which grows across invocations until
      `add_metric` prints it at 100 values, disabled or not (EMF lines on the local cloud's console)."""

    def flush_metrics(self, raise_on_empty_metrics: bool = False) -> None:
        if is_metrics_disabled() or not (self.metric_set or raise_on_empty_metrics):
            self.clear_metrics()
            return
        super().flush_metrics(raise_on_empty_metrics)


def observability(service: str) -> tuple[Logger, Metrics, Tracer]:
    logger = Logger(service=service)
    install_url_redaction(*logger.handlers)
    metrics = Metrics(provider=QuietMetricsProvider(namespace=NAMESPACE, service=service))
    return logger, metrics, PrivateTracer(service=service, patch_modules=TRACED_MODULES)
