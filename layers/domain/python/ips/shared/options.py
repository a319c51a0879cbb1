"""A request's output options: format, quality, fit-inside size and the matte for flattening alpha.

The defaults are the service's own behaviour (JPEG, quality 50, same dimensions, white matte): a request that
gives no options is processed that way. The options are validated once, at the API, stored on the request,
carried in every image task and shown in the status and the webhook."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from enum import StrEnum
from typing import Any, Final

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ips.shared.errors import QUOTED_CHARS, InvalidInput, Problem, shortened

OPTION_INVALID: Final = "OPTION_INVALID"
# The largest box side a request may give. WebP holds one pixel less (16,383): its outputs are fitted inside
# the box narrowed to that (ips.shared.imaging.encode_cost.output_size), so every format takes the same options.
MAX_DIMENSION: Final = 16384


class OutputFormat(StrEnum):
    JPEG = "jpeg"
    WEBP = "webp"
    AVIF = "avif"

    @property
    def pillow_name(self) -> str:
        return self.value.upper()

    @property
    def extension(self) -> str:
        return "jpg" if self is OutputFormat.JPEG else self.value

    @property
    def content_type(self) -> str:
        return f"image/{self.value}"

    @property
    def keeps_alpha(self) -> bool:
        return self is not OutputFormat.JPEG


class ImageOptions(BaseModel):
    """Field names are the API's (camelCase); the model is frozen so tasks can share one instance."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    format: OutputFormat = OutputFormat.JPEG
    quality: int = Field(default=50, ge=1, le=95)
    maxWidth: int | None = Field(default=None, ge=1, le=MAX_DIMENSION)
    maxHeight: int | None = Field(default=None, ge=1, le=MAX_DIMENSION)
    background: str = Field(default="#ffffff", pattern=r"^#[0-9a-fA-F]{6}$")

    @property
    def matte(self) -> tuple[int, int, int]:
        value = int(self.background[1:], 16)
        return value >> 16, (value >> 8) & 0xFF, value & 0xFF

    @property
    def bounds(self) -> tuple[int, int] | None:
        """The box the output must fit inside, or None to keep the source's dimensions."""
        if self.maxWidth is None and self.maxHeight is None:
            return None
        return self.maxWidth or MAX_DIMENSION, self.maxHeight or MAX_DIMENSION

    def to_document(self) -> dict[str, Any]:
        """What is stored (MongoDB), queued (task messages) and shown (status, webhook): every field."""
        return self.model_dump(mode="json")

    @classmethod
    def from_document(cls, document: Mapping[str, Any]) -> ImageOptions:
        return cls.model_validate(dict(document))

    def fingerprint(self) -> str:
        """Identifies what the options make of a source: equal options, equal outputs (the reuse key).
        The background only matters where alpha is flattened (JPEG)."""
        relevant = self.to_document()
        if self.format.keeps_alpha:
            relevant.pop("background")
        canonical = json.dumps(relevant, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:32]


DEFAULT_OPTIONS: Final = ImageOptions()
OPTION_FIELDS: Final = tuple(ImageOptions.model_fields)

# pydantic's error types, as the stable codes an API client sees for each field.
_CODES: Final = {
    "enum": "UNKNOWN_VALUE",
    "int_parsing": "NOT_AN_INTEGER",
    "int_type": "NOT_AN_INTEGER",
    "int_from_float": "NOT_AN_INTEGER",
    "greater_than_equal": "OUT_OF_RANGE",
    "less_than_equal": "OUT_OF_RANGE",
    "string_pattern_mismatch": "NOT_A_COLOUR",
    "string_type": "NOT_A_COLOUR",
}
_HINTS: Final = {
    "format": "one of jpeg, webp, avif",
    "quality": "an integer from 1 to 95",
    "maxWidth": f"an integer from 1 to {MAX_DIMENSION}",
    "maxHeight": f"an integer from 1 to {MAX_DIMENSION}",
    "background": "a colour written #rrggbb",
}


def _quoted(value: Any) -> str:
    """A value as a message quotes it: its repr, shortened (a form field may hold megabytes)."""
    return shortened(repr(value), QUOTED_CHARS)


def parse_options(raw: Mapping[str, Any], *, default_quality: int = 50) -> ImageOptions:
    """Options from form fields, query parameters or JSON: only the option names are read, empty values mean
    "not given". Raises InvalidInput OPTION_INVALID naming every bad field."""
    given = {name: raw[name] for name in OPTION_FIELDS if raw.get(name) not in (None, "")}
    if isinstance(given.get("format"), str):
        given["format"] = given["format"].strip().lower()
    given.setdefault("quality", min(default_quality, 95))
    try:
        return ImageOptions.model_validate(given)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            name = str(error["loc"][0])
            message = f"{name} must be {_HINTS[name]}, not {_quoted(given.get(name))}."
            problems.append(Problem(None, name, _CODES.get(error["type"], "INVALID"), message))
        raise InvalidInput(OPTION_INVALID, "An image option is invalid.", problems) from None
