"""The queues' message bodies as typed models: each record is parsed and validated on its own, so one malformed
message never touches the rest of its batch."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, TypeAdapter, ValidationError

from ips.csv_input import Chunk, Columns
from ips.model import ChunkTask, ImageTask
from ips.options import ImageOptions


class MalformedMessage(ValueError):
    """A body that is not a task this system sends: removed from its batch, never retried."""


class _Message(BaseModel):
    model_config = ConfigDict(populate_by_name=True, frozen=True)

    request_id: str = Field(alias="requestId", min_length=1, max_length=64)
    salt: str = Field(min_length=1)  # the request's asset salt: image keys are tagged under it
    tenant: str = ""  # older messages carry neither: the defaults
    options: dict[str, Any] | None = None


class ImageMessage(_Message):
    type: Literal["image"] = "image"
    row: int = Field(ge=2)  # spreadsheet rows: the header is row 1
    index: int = Field(ge=0)
    url: str = Field(min_length=1)

    def task(self) -> ImageTask:
        return ImageTask(
            self.request_id,
            self.row,
            self.index,
            self.url,
            self.salt,
            self.tenant,
            ImageOptions.from_document(self.options),
        )


class ColumnsModel(BaseModel):
    model_config = ConfigDict(populate_by_name=True, frozen=True)

    serial: int = Field(ge=0)
    name: int = Field(ge=0)
    urls: int = Field(ge=0)
    width: int = Field(ge=1)
    urls_last: bool = Field(alias="urlsLast")


class ChunkMessage(_Message):
    type: Literal["chunk"]
    key: str = Field(min_length=1)
    columns: ColumnsModel
    chunk: tuple[int, int, int, int, int]  # start, end, first_row, products, images

    def task(self) -> ChunkTask:
        columns = self.columns
        return ChunkTask(
            self.request_id,
            self.key,
            Columns(columns.serial, columns.name, columns.urls, columns.width, columns.urls_last),
            Chunk(*self.chunk),
            self.salt,
            self.tenant,
            ImageOptions.from_document(self.options),
        )


def _kind(value: Any) -> str:
    # Image messages carry no "type" (they are the bulk of the traffic); chunks say so.
    found = value.get("type", "image") if isinstance(value, dict) else getattr(value, "type", "image")
    return found if isinstance(found, str) else "invalid"


_TASK: TypeAdapter[ImageMessage | ChunkMessage] = TypeAdapter(
    Annotated[Annotated[ImageMessage, Tag("image")] | Annotated[ChunkMessage, Tag("chunk")], Discriminator(_kind)]
)


def parse_task(body: str) -> ImageTask | ChunkTask:
    """A message of the work queues. Raises MalformedMessage (with what is wrong) for anything else."""
    try:
        return _TASK.validate_json(body).task()
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in exc.errors()[:5])
        raise MalformedMessage(problems) from None
