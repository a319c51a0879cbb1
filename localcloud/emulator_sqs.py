"""moto's SQS with its per-message costs made independent of the queue's length (standard queues).

moto 5.2 recomputes a queue's attributes, its approximate message counts among them (three scans of every
message), on each `SendMessage` and for each message a `ReceiveMessage` returns (the retention check reads
`MessageRetentionPeriod` through them); builds the list of all visible messages on each receive; and scans the
whole queue twice on each delete. Queueing and draining n messages cost O(n^2): a py-spy profile of the local
cloud put 61% of the emulator's samples in `Queue.attributes`. Here:

- the approximate counts that moto reads for itself on each send are recomputed at most once a second, while a
  `GetQueueAttributes` call counts afresh (one pass): a caller (the reconciler's backlog check, a test waiting
  for a queue to drain) never reads a count older than its own call;
- a receive walks the queue in order and stops at the batch size (in-flight messages at the head are skipped),
  reading the retention period from the queue itself;
- a delete finds its message through an index of receipt handles instead of scanning.

Receives and deletes hold the queue's own lock (moto's `_messages_lock`, taken by sends too) while they walk it.

FIFO queues keep moto's own code."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from moto.core.utils import unix_time, unix_time_millis
from moto.sqs import models as sqs_models
from moto.sqs.exceptions import ReceiptHandleIsInvalid
from moto.sqs.models import Message, Queue, SQSBackend

COUNTS_MAX_AGE_S = 1.0
_COUNTED = (
    "approximate_number_of_messages",
    "approximate_number_of_messages_not_visible",
    "approximate_number_of_messages_delayed",
)
_moto_receive = SQSBackend.receive_message
_moto_get_attributes = SQSBackend.get_queue_attributes
_moto_queue_delete = Queue.delete_message


def _counts(queue: Queue) -> dict[str, int]:
    """The three approximate counts in one pass over the messages, reused for up to a second."""
    cached = queue.__dict__.get("_approximate_counts")
    now = unix_time()
    if cached is not None and now - cached[0] < COUNTS_MAX_AGE_S:
        return cached[1]
    now_ms = unix_time_millis()
    visible = not_visible = delayed = 0
    for message in list(queue._messages):
        if now_ms < message.delayed_until:
            delayed += 1
        elif now_ms > message.visible_at:
            visible += 1
        if not now_ms > message.visible_at:
            not_visible += 1
    counts = dict(zip(_COUNTED, (visible, not_visible, delayed), strict=True))
    queue.__dict__["_approximate_counts"] = (now, counts)
    return counts


def _get_queue_attributes(self: SQSBackend, queue_name: str, attribute_names: list[str]) -> dict[str, Any]:
    self.get_queue(queue_name).__dict__.pop("_approximate_counts", None)
    return _moto_get_attributes(self, queue_name, attribute_names)


def _counted(name: str) -> property:
    return property(lambda queue: _counts(queue)[name])


def _receipts(queue: Queue) -> dict[str, Message]:
    """Receipt handle -> message, for the messages this emulator handed out."""
    return queue.__dict__.setdefault("_by_receipt", {})


def _receive_message(
    self: SQSBackend,
    queue_name: str,
    count: int,
    wait_seconds_timeout: int,
    visibility_timeout: int,
    message_attribute_names: list[str] | None = None,
) -> list[Message]:
    queue = self.get_queue(queue_name)
    if queue.fifo_queue:
        return _moto_receive(self, queue_name, count, wait_seconds_timeout, visibility_timeout, message_attribute_names)
    names = message_attribute_names or []
    retention_s = int(queue.message_retention_period)
    deadline = unix_time() + wait_seconds_timeout
    while True:
        result: list[Message] = []
        with queue._messages_lock:
            now_ms = unix_time_millis()
            to_dead_letters: list[Message] = []
            for message in queue._messages:
                if not now_ms > message.visible_at or now_ms < message.delayed_until:
                    continue
                queue.pending_messages.discard(message)  # visible again: its consumer timed out
                if (
                    queue.dead_letter_queue is not None
                    and queue.redrive_policy
                    and message.approximate_receive_count >= queue.redrive_policy["maxReceiveCount"]
                ):
                    to_dead_letters.append(message)
                    continue
                if retention_s + message.sent_timestamp / 1000 <= unix_time():
                    break  # moto's behaviour: an expired message ends the receive
                queue.pending_messages.add(message)
                message.mark_received(visibility_timeout=visibility_timeout)
                _receipts(queue)[message.receipt_handle] = message
                delivered = copy.deepcopy(message)  # the caller's copy, filtered, leaves the queue's intact
                sqs_models._filter_message_attributes(delivered, names)
                result.append(delivered)
                if len(result) >= count:
                    break
            for message in to_dead_letters:
                queue._messages.remove(message)
                _forget(queue, message)
        for message in to_dead_letters:
            queue.dead_letter_queue.add_message(message)  # type: ignore[union-attr]
        remaining = deadline - unix_time()
        if result or wait_seconds_timeout == 0 or remaining <= 0:
            return result
        with queue._messages_lock:
            queue._messages_lock.wait(timeout=min(1.0, remaining))


def _forget(queue: Queue, message: Message) -> None:
    receipts = _receipts(queue)
    for handle in message.all_receipt_handles or ():
        receipts.pop(handle, None)


def _delete_message(self: Queue, receipt_handle: str) -> None:
    with self._messages_lock:
        if receipt_handle in self.deleted_messages:
            return  # already deleted: SQS accepts a second delete
        message = _receipts(self).get(receipt_handle)
        if message is None:
            _moto_queue_delete(self, receipt_handle)
            return
        _forget(self, message)
        try:
            self._messages.remove(message)  # delivered messages sit near the head: a short search
        except ValueError:
            raise ReceiptHandleIsInvalid() from None  # purged meanwhile
        self.pending_messages.discard(message)
        self.deleted_messages.update(message.all_receipt_handles)  # type: ignore[arg-type]


def install() -> None:
    patches: dict[tuple[type, str], Callable[..., Any] | property] = {
        (SQSBackend, "receive_message"): _receive_message,
        (SQSBackend, "get_queue_attributes"): _get_queue_attributes,
        (Queue, "delete_message"): _delete_message,
        **{(Queue, name): _counted(name) for name in _COUNTED},
    }
    for (owner, name), replacement in patches.items():
        setattr(owner, name, replacement)
