"""Queue bodies are parsed as typed models, record by record: anything that is not a task is refused with what is
wrong, never with an exception that would take the rest of a batch with it."""

from __future__ import annotations

import pytest

from ips.shared.csv_input import Chunk, Columns
from ips.shared.messages import MalformedMessage, parse_as, parse_task
from ips.shared.model import ChunkTask, ImageTask, WebhookTask


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
        # Every message this system sends carries its tenant and its options: one without is not one of ours.
        '{"requestId": "r", "row": 2, "index": 0, "url": "u", "salt": "s"}',
        '{"requestId": "r", "row": 2, "index": 0, "url": "u", "salt": "s", "tenant": "t"}',
        '{"requestId": "r", "row": 2, "index": 0, "url": "u", "salt": "s", "tenant": "t", "options": {"quality": 0}}',
        '{"type": "chunk", "requestId": "r", "key": "k", "columns": {}, "chunk": [1, 2], "salt": "s"}',
    ],
)
def test_anything_else_is_malformed_with_a_reason(body: str) -> None:
    with pytest.raises(MalformedMessage) as caught:
        parse_task(body)
    assert str(caught.value)


IMAGE = ImageTask("req", 2, 1, "https://a.invalid/1.jpg", "salt", "tenant-a")
CHUNK = ChunkTask("req", "req/input.csv", Columns(0, 1, 2, 3, True), Chunk(10, 900, 2, 7, 12), "salt", "tenant-a")
WAKE = WebhookTask("req", "w1")


@pytest.mark.parametrize(
    ("task", "kind", "problem"),
    [
        (CHUNK, ImageTask, "a chunk, not an image task"),
        (WAKE, ImageTask, "a webhook wake-up, not an image task"),
        (IMAGE, ChunkTask, "an image task, not a chunk"),
        (WAKE, ChunkTask, "a webhook wake-up, not a chunk"),
        (IMAGE, WebhookTask, "an image task, not a webhook wake-up"),
        (CHUNK, WebhookTask, "a chunk, not a webhook wake-up"),
    ],
)
def test_another_queues_task_is_malformed_on_this_one(task, kind, problem) -> None:
    """GIVEN a task of one queue WHEN it is read as a message of another THEN it is malformed there, as any body that
    is not that queue's (one rule for every queue), and says which kind it is."""
    with pytest.raises(MalformedMessage, match=f"^{problem}$"):
        parse_as(task.to_message(), kind)


@pytest.mark.parametrize("task", [IMAGE, CHUNK, WAKE], ids=lambda task: type(task).__name__)
def test_each_queues_own_task_is_read_as_itself(task) -> None:
    assert parse_as(task.to_message(), type(task)) == task
