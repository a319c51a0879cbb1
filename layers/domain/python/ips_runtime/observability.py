"""Powertools Logger, Metrics and Tracer, one set per function, named by the environment.

Strangers' URLs (input images, webhooks) often carry tokens in their query strings, so:
- the tracer patches only our own backends (botocore, pymongo). X-Ray's patches of requests and http.client
  would add an X-Amzn-Trace-Id header to every image fetch and webhook post (our trace IDs, sent to anyone's
  server) and record each URL; the outbound client also drops trace headers itself (see
  ips.adapters.outbound.transport), whatever else patches it;
- decorated functions' return values and exceptions are not recorded as trace metadata (handlers return status
  pages and presigned fields full of URLs);
- every log handler redacts URLs' query strings (ips.redaction)."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer

from ips.redaction import install_url_redaction

NAMESPACE = "ImageProcessingSystem"
TRACED_MODULES = ("botocore", "pymongo")


class PrivateTracer(Tracer):
    """A powertools Tracer whose decorators never put a function's response or error into trace metadata."""

    def capture_lambda_handler(
        self, lambda_handler: Any = None, capture_response: Any = None, capture_error: Any = None
    ) -> Any:
        return super().capture_lambda_handler(lambda_handler, capture_response=False, capture_error=False)

    def capture_method(self, method: Any = None, capture_response: Any = None, capture_error: Any = None) -> Any:
        return super().capture_method(method, capture_response=False, capture_error=False)


def observability(service: str) -> tuple[Logger, Metrics, Tracer]:
    logger = Logger(service=service)
    install_url_redaction(*logger.handlers)
    return (
        logger,
        Metrics(namespace=NAMESPACE, service=service),
        PrivateTracer(service=service, patch_modules=TRACED_MODULES),
    )
