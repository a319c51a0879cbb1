"""GET /api/v1/status/{requestId}: progress, products and the output CSV link. Another key's request is 404."""

# No `from __future__ import annotations`: powertools reads the route's annotations at runtime for
# validation and the OpenAPI schema.

from http import HTTPStatus
from typing import Annotated, Any

from aws_lambda_powertools.event_handler.openapi.params import Path, Query
from aws_lambda_powertools.utilities.typing import LambdaContext

from ips.status.service import MAX_PAGE, decode_cursor, request_status
from ips_runtime.api import API_PREFIX, ApiError, StatusResponse, create_resolver, error_responses, tenant_of
from ips_runtime.observability import observability
from ips_runtime.roots import STATUS as root
from ips_runtime.status_document import status_document

logger, metrics, tracer = observability("status")
app = create_resolver(logger, root.settings())


@app.get(
    f"{API_PREFIX}/status/<requestId>",
    summary="Status of a request",
    responses=error_responses(HTTPStatus.BAD_REQUEST, HTTPStatus.NOT_FOUND),
)
@tracer.capture_method
def status(
    requestId: Annotated[str, Path(description="The id returned by the upload", max_length=64)],
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE, description="Products per page")] = MAX_PAGE,
    cursor: Annotated[str | None, Query(max_length=64, description="nextCursor of the previous page")] = None,
) -> StatusResponse:
    logger.set_correlation_id(requestId)
    wiring = root()
    after_row = decode_cursor(cursor) if cursor else 0
    progress = request_status(requestId, tenant_of(app.current_event), wiring.status, limit=limit, after_row=after_row)
    if progress is None:
        raise ApiError(HTTPStatus.NOT_FOUND, "REQUEST_NOT_FOUND", f"No request {requestId}.")
    return StatusResponse.model_validate(status_document(progress, wiring.page_max_bytes))


@logger.inject_lambda_context(log_event=False)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
