"""Queue bodies are parsed as typed models, record by record: anything that is not a task is refused with what is
wrong, never with an exception that would take the rest of a batch with it."""

from __future__ import annotations

import pytest

from ips.csv_input import Chunk, Columns
from ips.messages import MalformedMessage, parse_task
from ips.model import ChunkTask, ImageTask


def test_image_and_chunk_tasks_round_trip() -> None:
    image = ImageTask("req", 2, 1, "https://a.invalid/1.jpg", "salt", "tenant-a")
    chunk = ChunkTask("req", "req/input.csv", Columns(0, 1, 2, 3, True), Chunk(10, 900, 2, 7, 12), "salt")
    assert parse_task(image.to_message()) == image
    assert parse_task(chunk.to_message()) == chunk


@pytest.mark.parametrize(
    "body",
    [
        "{not json",
        "",
        "[]",
        "null",
        "{}",
        '{"type": "video", "requestId": "r"}',
        '{"type": 5}',
        '{"requestId": "r", "row": "two", "index": 0, "url": "u", "salt": "s"}',
        '{"requestId": "r", "row": 1, "index": 0, "url": "u", "salt": "s"}',  # row 1 is the header
        '{"requestId": "r", "row": 2, "index": -1, "url": "u", "salt": "s"}',
        '{"requestId": "", "row": 2, "index": 0, "url": "u", "salt": "s"}',
        '{"requestId": "r", "row": 2, "index": 0, "url": "u"}',  # no salt: its output key cannot be made
        '{"type": "chunk", "requestId": "r", "key": "k", "columns": {}, "chunk": [1, 2], "salt": "s"}',
    ],
)
def test_anything_else_is_malformed_with_a_reason(body: str) -> None:
    with pytest.raises(MalformedMessage) as caught:
        parse_task(body)
    assert str(caught.value)
