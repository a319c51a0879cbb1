"""GET /api/v1/webhook-secret and POST /api/v1/webhook-secret/rotate: the calling tenant's own webhook signing
secret (derived from the master, which no tenant ever sees), and its rotation."""

# No `from __future__ import annotations`: powertools reads the route's annotations at runtime for
# validation and the OpenAPI schema.

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from ips_runtime.api import API_PREFIX, WebhookSecretResponse, create_resolver, error_responses, tenant_of
from ips_runtime.observability import observability
from ips_runtime.roots import SECRET as root

logger, metrics, tracer = observability("secret")
app = create_resolver(logger, root.settings())


@app.get(
    f"{API_PREFIX}/webhook-secret",
    summary="Your webhook signing secret",
    description="The whsec_ secret your requests' webhooks are signed with (verify them with it). It is yours "
    "alone: another API key's webhooks are signed with another secret.",
    responses={
        200: {"description": "OK", "content": {"application/json": {"model": WebhookSecretResponse}}},
        **error_responses(),
    },
)
@tracer.capture_method
def webhook_secret() -> WebhookSecretResponse:
    return WebhookSecretResponse.model_validate(root().read(tenant_of(app.current_event)))


@app.post(
    f"{API_PREFIX}/webhook-secret/rotate",
    summary="Rotate your webhook signing secret",
    description="Makes a new secret and answers it. Webhooks are signed with both the new and the previous "
    "secret until previousSecretValidUntil (the rotation window), then with the new one only: switch your "
    "receiver to the new secret within the window.",
    responses={
        200: {"description": "OK", "content": {"application/json": {"model": WebhookSecretResponse}}},
        **error_responses(),
    },
)
@tracer.capture_method
def rotate() -> WebhookSecretResponse:
    tenant = tenant_of(app.current_event)
    document = root().rotate(tenant)
    logger.info("webhook secret rotated", extra={"tenant": tenant, "generation": document["generation"]})
    metrics.add_metric("WebhookSecretsRotated", MetricUnit.Count, 1)
    return WebhookSecretResponse.model_validate(document)


@logger.inject_lambda_context(log_event=False)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
