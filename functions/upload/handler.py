"""POST /api/v1/upload: validate a CSV and accept it as a request (202), or list what is wrong (400)."""

# No `from __future__ import annotations`: powertools reads the route's annotations at runtime for
# validation and the OpenAPI schema.

from http import HTTPStatus
from typing import Annotated, Any

from aws_lambda_powertools.event_handler import Response, content_types
from aws_lambda_powertools.event_handler.openapi.params import Query
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from ips.intake.service import accept_csv, create_upload
from ips.shared.options import parse_options
from ips_runtime.api import (
    API_PREFIX,
    MULTIPART,
    OPTION_DESCRIPTIONS,
    ApiError,
    PresignedFields,
    UploadAccepted,
    UploadSlotRequest,
    UploadSlotResponse,
    create_resolver,
    error_responses,
    raw_body,
    read_upload,
    tenant_of,
)
from ips_runtime.observability import observability
from ips_runtime.roots import UPLOAD as root

logger, metrics, tracer = observability("upload")
app = create_resolver(logger, root.settings())

UPLOAD_BODY = {
    "required": True,
    "content": {
        MULTIPART: {
            "schema": {
                "type": "object",
                "required": ["file"],
                "properties": {
                    "file": {"type": "string", "format": "binary", "description": "The products CSV"},
                    "webhookUrl": {"type": "string", "format": "uri"},
                    **{name: {"type": "string", "description": text} for name, text in OPTION_DESCRIPTIONS.items()},
                },
            }
        },
        "text/csv": {"schema": {"type": "string"}},
    },
}


@app.post(
    f"{API_PREFIX}/upload",
    summary="Upload a products CSV",
    description="Validates the whole CSV, stores it and queues every image. Problems are listed by row and "
    "column, and nothing is stored when there is any.",
    responses={
        202: {"description": "Accepted", "content": {"application/json": {"model": UploadAccepted}}},
        **error_responses(
            HTTPStatus.BAD_REQUEST,
            HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
            HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
        ),
    },
    openapi_extensions={"requestBody": UPLOAD_BODY},
)
@tracer.capture_method
def upload(
    webhookUrl: Annotated[
        str | None, Query(description="Called once when the request completes (raw CSV bodies)")
    ] = None,
    format: Annotated[str | None, Query(max_length=16, description=OPTION_DESCRIPTIONS["format"])] = None,
    quality: Annotated[str | None, Query(max_length=16, description=OPTION_DESCRIPTIONS["quality"])] = None,
    maxWidth: Annotated[str | None, Query(max_length=16, description=OPTION_DESCRIPTIONS["maxWidth"])] = None,
    maxHeight: Annotated[str | None, Query(max_length=16, description=OPTION_DESCRIPTIONS["maxHeight"])] = None,
    background: Annotated[str | None, Query(max_length=16, description=OPTION_DESCRIPTIONS["background"])] = None,
) -> Response[UploadAccepted]:
    event = app.current_event
    tenant = tenant_of(event)
    wiring = root()
    body = raw_body(event)
    limit = wiring.csv_max_bytes
    too_large = ApiError(
        HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
        "PAYLOAD_TOO_LARGE",
        f"The CSV is over this route's {limit}-byte limit; send big files with POST {API_PREFIX}/uploads.",
    )
    if len(body) > limit + 64 * 1024:  # room for the multipart envelope around a file at the limit
        raise too_large  # before parsing a body that cannot hold a CSV in range
    data, form = read_upload(event.headers.get("content-type", ""), body)
    if len(data) > limit:
        raise too_large  # the same answer for any CSV over the cap, so clients can switch to the presigned route
    query = {"format": format, "quality": quality, "maxWidth": maxWidth, "maxHeight": maxHeight}
    options = parse_options({**query, "background": background, **form}, default_quality=wiring.jpeg_quality)
    webhook_url = form.get("webhookUrl") or webhookUrl
    accepted = accept_csv(data, tenant, webhook_url, wiring.intake, options, check_url=wiring.check_webhook_url)
    logger.set_correlation_id(accepted.request_id)
    logger.info("request accepted", extra={"products": accepted.total_products, "images": accepted.total_images})
    metrics.add_metric("RequestsAccepted", MetricUnit.Count, 1)
    metrics.add_metric("ImagesQueued", MetricUnit.Count, accepted.total_images)
    result = UploadAccepted(
        requestId=accepted.request_id,
        status=accepted.status,
        totalProducts=accepted.total_products,
        totalImages=accepted.total_images,
        statusUrl=f"{API_PREFIX}/status/{accepted.request_id}",
    )
    return Response(HTTPStatus.ACCEPTED.value, content_types.APPLICATION_JSON, result)


@app.post(
    f"{API_PREFIX}/uploads",
    summary="Start a direct-to-S3 upload for a big CSV",
    description="Answers a presigned S3 POST bound to one key: send its fields, then the file as field 'file'. "
    "The file is validated when it lands; the request's status says WAITING_FOR_UPLOAD until then, and the "
    "request ends FAILED if the upload expires or the file is invalid.",
    responses={
        201: {"description": "Created", "content": {"application/json": {"model": UploadSlotResponse}}},
        **error_responses(HTTPStatus.BAD_REQUEST, HTTPStatus.UNSUPPORTED_MEDIA_TYPE),
    },
)
@tracer.capture_method
def start_upload(body: UploadSlotRequest) -> Response[UploadSlotResponse]:
    wiring = root()
    options = parse_options(body.model_dump(), default_quality=wiring.jpeg_quality)
    tenant = tenant_of(app.current_event)
    slot = create_upload(tenant, body.webhookUrl, wiring.intake, options, check_url=wiring.check_webhook_url)
    logger.set_correlation_id(slot.request_id)
    logger.info("presigned upload created", extra={"upload_filename": body.filename})
    metrics.add_metric("UploadsStarted", MetricUnit.Count, 1)
    result = UploadSlotResponse(
        requestId=slot.request_id,
        upload=PresignedFields(url=slot.post.url, fields=slot.post.fields),
        expiresIn=slot.expires_in,
        maxBytes=slot.max_bytes,
        statusUrl=f"{API_PREFIX}/status/{slot.request_id}",
    )
    return Response(HTTPStatus.CREATED.value, content_types.APPLICATION_JSON, result)


@logger.inject_lambda_context(log_event=False)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
