"""The HTTP contract shared by the API functions: response models, errors with stable codes, tenants."""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import asdict
from http import HTTPStatus

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import APIGatewayRestResolver, CORSConfig, Response, content_types
from aws_lambda_powertools.event_handler.openapi.exceptions import (
    RequestUnsupportedContentType,
    RequestValidationError,
)
from aws_lambda_powertools.event_handler.openapi.types import OpenAPIResponse
from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEvent
from pydantic import BaseModel, Field

from ips.shared.errors import MAX_PROBLEMS, InvalidInput, Problem, listed, shortened
from ips.shared.model import RequestStatus
from ips.shared.options import ImageOptions
from ips.shared.quotas import QuotaExceeded
from ips_runtime.multipart import MultipartInvalid, form_fields
from ips_runtime.settings import FunctionSettings, WebOrigin

API_PREFIX = "/api/v1"


class ErrorItem(BaseModel):
    row: int | None = Field(description="Spreadsheet row (the header is row 1); null for file-level problems")
    column: str | None
    code: str
    message: str


ERRORS_DESCRIPTION = f"Each problem, at most {MAX_PROBLEMS} (errorsOmitted counts the rest)"
OMITTED_DESCRIPTION = "Problems found but not listed in errors"


class ErrorResponse(BaseModel):
    code: str = Field(description="Stable machine-readable error code")
    message: str
    errors: list[ErrorItem] = Field(default_factory=list, description=ERRORS_DESCRIPTION)
    errorsOmitted: int = Field(default=0, description=OMITTED_DESCRIPTION)

    @classmethod
    def of(cls, code: str, message: str, problems: Sequence[Problem] = (), omitted: int = 0) -> ErrorResponse:
        """An error answer that fits any response: the first problems listed, the rest counted, messages cut."""
        kept, omitted = listed(problems, omitted)
        return cls(
            code=code,
            message=shortened(message),
            errors=[ErrorItem(**asdict(problem)) for problem in kept],
            errorsOmitted=omitted,
        )


class UploadAccepted(BaseModel):
    requestId: str
    status: RequestStatus
    totalProducts: int
    totalImages: int
    statusUrl: str


class ImageError(BaseModel):
    index: int = Field(description="Position of the URL within the product, from 0")
    url: str
    code: str | None
    message: str | None


class ImageDetail(BaseModel):
    status: str = Field(description="SUCCEEDED or FAILED (the reason is in `errors`)")
    inputFormat: str | None = None
    inputBytes: int | None = None
    outputFormat: str | None = None
    outputBytes: int | None = None
    width: int | None = Field(default=None, description="Output dimensions")
    height: int | None = None
    reused: bool | None = Field(default=None, description="The output of an earlier request, reused unchanged")


class ProductStatus(BaseModel):
    serialNumber: str
    productName: str
    inputImageUrls: list[str]
    outputImageUrls: list[str | None] = Field(description="Same order as the inputs; null while pending or failed")
    inputImageBytes: list[int | None] = Field(description="Each source image's size; null while pending or failed")
    outputImageBytes: list[int | None] = Field(description="Each stored image's size; null while pending or failed")
    errors: list[ImageError]
    images: list[ImageDetail | None] = Field(
        default_factory=list, description="Same order as the inputs; null while pending"
    )


class Savings(BaseModel):
    bytesIn: int = Field(description="Source bytes of the succeeded images")
    bytesOut: int = Field(description="Output bytes of the succeeded images")
    ratio: float | None = Field(description="bytesOut / bytesIn; null before any image succeeded")


class WebhookDelivery(BaseModel):
    delivered: bool
    attempts: int = Field(description="Attempts made so far (each one POST; at most WEBHOOK_ATTEMPTS)")
    lastStatus: int | None = Field(description="The HTTP status of the last attempt; null if it got no answer")
    lastError: str | None = Field(description="Why the last attempt failed; null once delivered")
    nextAttemptAt: str | None = Field(
        default=None, description="When the next attempt is due (ISO 8601, UTC); null once delivered or given up"
    )
    gaveUp: bool = Field(default=False, description="No attempt will be made again: out of attempts or of time")


class RequestError(BaseModel):
    code: str
    message: str
    errors: list[ErrorItem] = Field(default_factory=list, description=ERRORS_DESCRIPTION)
    errorsOmitted: int = Field(default=0, description=OMITTED_DESCRIPTION)


class PresignedFields(BaseModel):
    url: str
    fields: dict[str, str] = Field(description="Send these form fields first, then the file as field 'file'")


class UploadSlotResponse(BaseModel):
    requestId: str
    upload: PresignedFields
    expiresIn: int = Field(description="Seconds the upload stays valid")
    maxBytes: int
    statusUrl: str


# Options are typed loosely here and validated by ips.shared.options.parse_options, so a bad one is a 400
# OPTION_INVALID naming the field, the same on both upload routes.
OPTION_DESCRIPTIONS = {
    "format": "Output format: jpeg (default), webp or avif",
    "quality": "Encoder quality, 1 to 95 (default 50)",
    "maxWidth": "Fit inside this width, keeping the aspect ratio; never enlarges",
    "maxHeight": "Fit inside this height, keeping the aspect ratio; never enlarges",
    "background": "#rrggbb used when flattening transparency into a JPEG (default #ffffff)",
}


class UploadSlotRequest(BaseModel):
    webhookUrl: str | None = Field(default=None, max_length=2048)
    filename: str | None = Field(default=None, max_length=256, description="Kept for your reference only")
    format: str | None = Field(default=None, max_length=16, description=OPTION_DESCRIPTIONS["format"])
    quality: int | str | None = Field(default=None, description=OPTION_DESCRIPTIONS["quality"])
    maxWidth: int | str | None = Field(default=None, description=OPTION_DESCRIPTIONS["maxWidth"])
    maxHeight: int | str | None = Field(default=None, description=OPTION_DESCRIPTIONS["maxHeight"])
    background: str | None = Field(default=None, max_length=16, description=OPTION_DESCRIPTIONS["background"])


class StatusResponse(BaseModel):
    requestId: str
    status: RequestStatus
    detail: str | None = Field(description="WAITING_FOR_UPLOAD while a presigned upload is awaited")
    total: int = Field(description="Images in the request")
    succeeded: int
    failed: int
    totalProducts: int
    createdAt: str
    completedAt: str | None
    uploadExpiresAt: str | None
    options: ImageOptions = Field(description="The request's output options")
    savings: Savings = Field(description="Over the succeeded images so far")
    reused: int = Field(description="Succeeded images whose output was reused from an earlier request")
    products: list[ProductStatus] = Field(description="One page of products, in row order")
    nextCursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last")
    outputCsvUrl: str | None
    webhook: WebhookDelivery | None = None
    error: RequestError | None = Field(default=None, description="Why a FAILED request failed")


class WebhookSecretResponse(BaseModel):
    secret: str = Field(description="whsec_...: verify your webhooks with it (Standard Webhooks)")
    generation: int = Field(description="How many times the secret was rotated")
    rotatedAt: str | None
    previousSecretValidUntil: str | None = Field(
        description="Until then webhooks also carry a signature with the previous secret; null when none"
    )


class ApiError(Exception):
    def __init__(self, status: HTTPStatus, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def error_response(status: HTTPStatus, body: ErrorResponse) -> Response[str]:
    return Response(
        status_code=status.value,
        content_type=content_types.APPLICATION_JSON,
        body=body.model_dump_json(),
    )


GATEWAY_STATUSES = (HTTPStatus.FORBIDDEN, HTTPStatus.TOO_MANY_REQUESTS)  # API Gateway may answer these on any route


def error_responses(*statuses: HTTPStatus) -> dict[int, OpenAPIResponse]:
    """OpenAPI response entries for the given error statuses and those the gateway itself may answer."""
    return {
        status.value: {
            "description": status.phrase,
            "content": {"application/json": {"model": ErrorResponse}},
        }
        for status in sorted({*statuses, *GATEWAY_STATUSES})
    }


def create_resolver(logger: Logger, settings: FunctionSettings) -> APIGatewayRestResolver:
    """A REST resolver whose every error is JSON with a stable `code`, and whose answers carry CORS headers
    for the upload page's origin (the function's WEB_ORIGIN) so a browser there may read them. `settings`: the
    function's, read as its handler is imported, so a malformed one fails the execution environment's init."""
    web_origin = settings.part(WebOrigin).web_origin
    cors = CORSConfig(allow_origin=web_origin, max_age=600) if web_origin else None
    app = APIGatewayRestResolver(enable_validation=True, cors=cors)

    @app.exception_handler(InvalidInput)
    def invalid_input(exc: InvalidInput) -> Response[str]:
        return error_response(
            HTTPStatus.BAD_REQUEST, ErrorResponse.of(exc.code, exc.message, exc.problems, exc.omitted)
        )

    @app.exception_handler(QuotaExceeded)
    def quota_exceeded(exc: QuotaExceeded) -> Response[str]:
        return error_response(HTTPStatus.TOO_MANY_REQUESTS, ErrorResponse.of(exc.code, exc.message))

    @app.exception_handler(ApiError)
    def api_error(exc: ApiError) -> Response[str]:
        return error_response(exc.status, ErrorResponse.of(exc.code, exc.message))

    @app.exception_handler(RequestUnsupportedContentType)
    def unsupported_type(exc: RequestUnsupportedContentType) -> Response[str]:
        return error_response(
            HTTPStatus.UNSUPPORTED_MEDIA_TYPE, ErrorResponse.of("UNSUPPORTED_MEDIA_TYPE", "Unsupported content type.")
        )

    @app.exception_handler(RequestValidationError)
    def invalid_request(exc: RequestValidationError) -> Response[str]:
        problems = [
            Problem(None, ".".join(map(str, error.get("loc", ()))), "INVALID", str(error.get("msg")))
            for error in exc.errors()
        ]
        return error_response(
            HTTPStatus.BAD_REQUEST, ErrorResponse.of("REQUEST_INVALID", "The request is invalid.", problems)
        )

    @app.not_found
    def not_found(exc: Exception) -> Response[str]:
        return error_response(HTTPStatus.NOT_FOUND, ErrorResponse.of("NOT_FOUND", "No such route."))

    @app.exception_handler(Exception)
    def internal_error(exc: Exception) -> Response[str]:
        logger.exception("unhandled error")
        return error_response(
            HTTPStatus.INTERNAL_SERVER_ERROR,
            ErrorResponse.of("INTERNAL_ERROR", "Something went wrong on our side; try again."),
        )

    return app


def tenant_of(event: APIGatewayProxyEvent) -> str:
    """The API key's id (never the key itself) is the tenant: a key sees only its own requests."""
    key_id = event.request_context.identity.api_key_id
    if not key_id:
        raise ApiError(HTTPStatus.FORBIDDEN, "INVALID_API_KEY", "An API key is required.")
    return key_id


def raw_body(event: APIGatewayProxyEvent) -> bytes:
    body = event.body or ""
    return base64.b64decode(body) if event.is_base64_encoded else body.encode("utf-8")


CSV_CONTENT_TYPES = ("text/csv", "application/csv", "text/plain", "application/octet-stream")
MULTIPART = "multipart/form-data"


def read_upload(content_type: str, body: bytes) -> tuple[bytes, dict[str, str]]:
    """The CSV bytes and the form's other fields (webhookUrl, the options), from a multipart form (field
    `file`) or a raw CSV body (no fields)."""
    media_type = content_type.split(";", 1)[0].strip().lower()
    if media_type in CSV_CONTENT_TYPES:
        return body, {}
    if media_type != MULTIPART:
        raise ApiError(
            HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
            "UNSUPPORTED_MEDIA_TYPE",
            f"Send the CSV as {MULTIPART} (field 'file') or as a text/csv body, not {media_type or 'nothing'}.",
        )
    fields = _multipart_fields(content_type, body)
    if "file" not in fields:
        raise ApiError(HTTPStatus.BAD_REQUEST, "FILE_MISSING", "The form has no 'file' field.")
    data = fields.pop("file")
    return data, {name: value.decode("utf-8", "replace").strip() for name, value in fields.items()}


def _multipart_fields(content_type: str, body: bytes) -> dict[str, bytes]:
    try:
        return form_fields(content_type, body)
    except MultipartInvalid as exc:
        raise ApiError(
            HTTPStatus.BAD_REQUEST, "MULTIPART_INVALID", f"The multipart body could not be parsed: {exc}."
        ) from None
