"""The queues' message bodies as typed models: each record is parsed and validated on its own, so one malformed
message never touches the rest of its batch.

A message the reconciler put back from a dead-letter queue carries how many times it was (`redrives`), so that a
message that keeps dying is ended after a few redrives instead of going round for ever."""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, TypeAdapter, ValidationError

from ips.shared.csv_input import Chunk, Columns
from ips.shared.model import ChunkTask, ImageTask, WebhookTask
from ips.shared.options import ImageOptions


class MalformedMessage(ValueError):
    """A body that is not a task this system sends: removed from its batch, never retried."""


class _Message(BaseModel):
    model_config = ConfigDict(populate_by_name=True, frozen=True)

    request_id: str = Field(alias="requestId", min_length=1, max_length=64)
    salt: str = Field(min_length=1)  # the request's asset salt: image keys are tagged under it
    tenant: str  # whose request: the reuse index is per tenant
    options: ImageOptions
    redrives: int = Field(0, ge=0)  # times the reconciler put it back from its dead-letter queue


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
            self.options,
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
            self.options,
        )


class WebhookMessage(BaseModel):
    model_config = ConfigDict(populate_by_name=True, frozen=True)

    type: Literal["webhook"]
    request_id: str = Field(alias="requestId", min_length=1, max_length=64)
    wake: str | None = Field(None, min_length=1, max_length=64)
    redrives: int = Field(0, ge=0)

    def task(self) -> WebhookTask:
        return WebhookTask(self.request_id, self.wake)


def _kind(value: Any) -> str:
    # Image messages carry no "type" (they are the bulk of the traffic); chunks say so.
    found = value.get("type", "image") if isinstance(value, dict) else getattr(value, "type", "image")
    return found if isinstance(found, str) else "invalid"


_TASK: TypeAdapter[ImageMessage | ChunkMessage | WebhookMessage] = TypeAdapter(
    Annotated[
        Annotated[ImageMessage, Tag("image")]
        | Annotated[ChunkMessage, Tag("chunk")]
        | Annotated[WebhookMessage, Tag("webhook")],
        Discriminator(_kind),
    ]
)


_NAMES: dict[type, str] = {ImageTask: "an image task", ChunkTask: "a chunk", WebhookTask: "a webhook wake-up"}


def parse_task(body: str) -> ImageTask | ChunkTask | WebhookTask:
    """A message of any of the work queues (the reconciler's dead letters). Raises MalformedMessage (with what is
    wrong) for anything else."""
    return _parse(body).task()


def parse_as[T: (ImageTask, ChunkTask, WebhookTask)](body: str, kind: type[T]) -> T:
    """A message of the queue whose tasks are `kind`. Another queue's task is malformed here like any other body
    that is not this queue's: one rule, removed and never retried."""
    task = parse_task(body)
    if not isinstance(task, kind):
        raise MalformedMessage(f"{_NAMES[type(task)]}, not {_NAMES[kind]}")
    return task


def redrive_count(body: str) -> int:
    """How many times the message was put back from its dead-letter queue. Raises MalformedMessage."""
    return _parse(body).redrives


def redriven(body: str) -> str:
    """The same message, put back once more: its redrive count one higher, the rest as it was."""
    message = json.loads(body)
    message["redrives"] = redrive_count(body) + 1
    return json.dumps(message, separators=(",", ":"))


def _parse(body: str) -> ImageMessage | ChunkMessage | WebhookMessage:
    try:
        return _TASK.validate_json(body)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in exc.errors()[:5])
        raise MalformedMessage(problems) from None
