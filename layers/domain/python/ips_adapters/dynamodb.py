"""The request ledger on DynamoDB: exact counters, counted once per image, completion flips a status.

Per request: a COUNTER item (status, total, how many shards, when it last moved), its count shards (sk
COUNTER#k: succeeded, failed and the savings, summed on read), and one marker per counted image (sk
IMAGE#row#index). Every image of a request counted on one item would cap the request: DynamoDB cancels
concurrent transactions on an item (TransactionConflict). So a request of more than a batch or so has up to
MAX_SHARDS shards, and a batch's count touches one of them.

Counting a batch is one transaction: a marker per image (only if absent) and one ADD per request on a shard. A
redelivered image finds its marker, and the cancellation names it: the others go again without it. After the
transaction, the request's counter items are read back (one strongly consistent Query) and summed; when every
image is counted, a conditional update flips the COUNTER's `status` OPEN -> COMPLETE. Why it flips exactly once:
the sums only grow, each image counted once; whichever batch commits last reads after every count has committed
(each item read strongly consistent, after its own commit), so it sees the full sum and flips; any other writer
that sees the full sum too meets the condition and does nothing. A writer that crashed after its commit and
before the flip is redelivered: its images find their markers, and the check runs again. Stream filters cannot
compare two attributes, so that flip is what the completion function's filter matches (COMPLETION_FILTER); shard
items never match it (their sk is not COUNTER). A request that ends FAILED (a refused upload, a failed fan-out,
an expired upload) flips OPEN to FAILED, through the same filter: the notify function is the one place a webhook
is signed and sent.
"""

from __future__ import annotations

import contextlib
import random
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from tenacity import RetryError

from ips.shared.model import Counts, ImageTask, Savings
from ips.shared.ports import CountResult, ImageCount
from ips_adapters.retries import Again, again

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodb.type_defs import TransactWriteItemTypeDef

COUNTER_SK = "COUNTER"
SHARD_SK = "COUNTER#"  # + the shard's number
OPEN, COMPLETE, FAILED = "OPEN", "COMPLETE", "FAILED"
TTL_ATTRIBUTE = "expiresAt"
QUOTA_IN_FLIGHT, QUOTA_MARKER, WORK_MARKER = "INFLIGHT", "QUOTA", "WORK"
# A request gets a shard per IMAGES_PER_SHARD images, up to MAX_SHARDS: one for a request of ten batches, as
# many as the process function has containers (and more) for a big one. Reading them all is one Query of at
# most MAX_SHARDS + 1 small items.
IMAGES_PER_SHARD = 100
MAX_SHARDS = 32
MAX_TRANSACTION_ITEMS = 100  # TransactWriteItems' limit
# Cancellation reasons worth another try: another transaction held an item, or the table was throttled.
RETRYABLE = frozenset({"TransactionConflict", "ThrottlingError", "ProvisionedThroughputExceeded"})
DONE_BEFORE = "ConditionalCheckFailed"  # a marker's condition: the image was counted before
PASSED = frozenset({"None", None})  # an item whose part of a cancelled transaction was fine
_REMEMBERED = 1024  # requests whose shard count (and chosen shard) a ledger keeps: a hint, learned again

# Lambda event filter for the table's stream (NEW_AND_OLD_IMAGES): only the update that completes a request.
COMPLETION_FILTER: dict[str, Any] = {
    "eventName": ["MODIFY"],
    "dynamodb": {
        "Keys": {"sk": {"S": [COUNTER_SK]}},
        "OldImage": {"status": {"S": [OPEN]}},
        "NewImage": {"status": {"S": [COMPLETE, FAILED]}},
    },
}


def shard_count(total: int) -> int:
    """The shards of a request of `total` images (1 for the small ones)."""
    return max(1, min(MAX_SHARDS, -(-total // IMAGES_PER_SHARD)))


class LedgerError(RuntimeError):
    pass


class DynamoLedger:
    def __init__(
        self,
        client: DynamoDBClient,
        table: str,
        *,
        retention_days: int = 30,
        attempts: int = 10,
        rng: random.Random | None = None,
    ) -> None:
        self._client = client
        self.table = table
        self._retention = retention_days * 86_400
        self._attempts = attempts
        self._random = rng or random.Random()
        self._shard_counts: dict[str, int] = {}  # request -> its shards (COUNTER.shards: never changes)
        # Each thread (a container's one invocation at a time, a test's writer) keeps the shard it counts on,
        # per request, until it conflicts there: concurrent writers spread out over the shards and stay apart.
        self._chosen = threading.local()

    def _key(self, request_id: str, sk: str = COUNTER_SK) -> dict[str, Any]:
        return {"pk": {"S": request_id}, "sk": {"S": sk}}

    def _expires(self, at: datetime) -> dict[str, str]:
        return {"N": str(int(at.timestamp()) + self._retention)}

    def open(self, request_id: str, total: int, at: datetime) -> bool:
        try:
            self._put_counter(request_id, total, at)
        except self._client.exceptions.ConditionalCheckFailedException:
            return False
        return True

    def _put_counter(self, request_id: str, total: int, at: datetime) -> None:
        self._client.put_item(
            TableName=self.table,
            Item={
                **self._key(request_id),
                "status": {"S": OPEN},
                "total": {"N": str(total)},
                "shards": {"N": str(shard_count(total))},
                "progressAt": {"N": str(int(at.timestamp()))},
                TTL_ATTRIBUTE: self._expires(at),
            },
            ConditionExpression="attribute_not_exists(pk)",
        )

    def fail(self, request_id: str, at: datetime) -> bool:
        """Flip the counter OPEN -> FAILED (creating it first, empty, when the request never had one), so the
        completion filter hands the request to the notify function. False when it had already ended."""
        with contextlib.suppress(self._client.exceptions.ConditionalCheckFailedException):
            self._put_counter(request_id, 0, at)
        return self._flip(request_id, FAILED)

    def _flip(self, request_id: str, status: str) -> bool:
        try:
            self._client.update_item(
                TableName=self.table,
                Key=self._key(request_id),
                UpdateExpression="SET #status = :to",
                ConditionExpression="#status = :open",
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues={":to": {"S": status}, ":open": {"S": OPEN}},
            )
        except self._client.exceptions.ConditionalCheckFailedException:
            return False
        return True

    def touch(self, request_id: str, at: datetime) -> None:
        with contextlib.suppress(self._client.exceptions.ConditionalCheckFailedException):
            self._client.update_item(
                TableName=self.table,
                Key=self._key(request_id),
                UpdateExpression="SET progressAt = :at",
                ConditionExpression="attribute_exists(pk)",
                ExpressionAttributeValues={":at": {"N": str(int(at.timestamp()))}},
            )

    # -- counting -----------------------------------------------------------------------------------------------

    def count_many(self, counts: Sequence[ImageCount], at: datetime) -> list[CountResult]:
        firsts: dict[tuple[str, int, int], int] = {}  # each image's first position: the one that is counted
        for position, item in enumerate(counts):
            firsts.setdefault((item.task.request_id, item.task.row, item.task.index), position)
        counted: set[int] = set()
        for group in _transactions([(position, counts[position]) for position in firsts.values()]):
            counted |= self._commit(group, at)
        completed: set[int] = set()
        last_of: dict[str, int] = {counts[position].task.request_id: position for position in firsts.values()}
        for request_id, position in last_of.items():
            # Also when nothing was counted here: a redelivery after a crash between the commit and the flip.
            if self._complete_if_done(request_id):
                completed.add(position)
        return [CountResult(position in counted, position in completed) for position in range(len(counts))]

    def _commit(self, group: list[tuple[int, ImageCount]], at: datetime) -> set[int]:
        """Count the group's images in one transaction; the positions it counted. A cancellation names each item:
        an image counted before is left out (a redelivery), an image another writer's transaction holds right now
        (the same image delivered twice at once) is set aside while the rest goes again at once, then tried on
        its own after a wait (by then the other writer has counted it, most often); a shard another writer holds
        sends this writer to another shard, after a wait."""
        counted: set[int] = set()
        left: list[tuple[int, ImageCount]] = group
        contended: list[tuple[int, ImageCount]] = []
        try:
            for attempt in again(self._attempts, 0.05, jitter=True, max_wait=1.0):
                with attempt:
                    if not left:
                        left, contended = contended, []
                    shards = {item.task.request_id: self._shard(item.task.request_id) for _, item in left}
                    try:
                        self._client.transact_write_items(TransactItems=self._count_items(left, shards, at))
                    except self._client.exceptions.TransactionCanceledException as exc:
                        codes = [reason.get("Code") for reason in exc.response.get("CancellationReasons", [])]
                        markers, updates = codes[: len(left)], codes[len(left) :]
                        if len(codes) != len(left) + len(shards) or not (
                            set(markers) <= {DONE_BEFORE, *PASSED, *RETRYABLE} and set(updates) <= {*PASSED, *RETRYABLE}
                        ):
                            raise  # not a cancellation this knows how to mend
                        if {DONE_BEFORE, *RETRYABLE} & set(markers):
                            contended += [entry for entry, code in zip(left, markers, strict=True) if code in RETRYABLE]
                            left = [entry for entry, code in zip(left, markers, strict=True) if code in PASSED]
                            if not left and not contended:
                                return counted  # each counted before: nothing to do
                            raise Again("without the images counted before or held", wait=not left) from None
                        for request_id, code in zip(shards, updates, strict=True):
                            if code in RETRYABLE:
                                self._move(request_id)
                        raise Again("transaction conflict") from None
                    counted |= {position for position, _ in left}
                    left = []
                    if contended:
                        raise Again("the images another writer held")
                    return counted
        except RetryError:  # every attempt was cancelled
            pass
        raise LedgerError(f"could not count {len(left) + len(contended)} image(s) after {self._attempts} attempts")

    def _count_items(
        self, group: list[tuple[int, ImageCount]], shards: dict[str, int], at: datetime
    ) -> list[TransactWriteItemTypeDef]:
        expires = self._expires(at)
        markers: list[TransactWriteItemTypeDef] = [
            {
                "Put": {
                    "TableName": self.table,
                    "Item": {
                        **self._key(item.task.request_id, f"IMAGE#{item.task.row}#{item.task.index}"),
                        "succeeded": {"BOOL": item.succeeded},
                        TTL_ATTRIBUTE: expires,
                    },
                    "ConditionExpression": "attribute_not_exists(pk)",
                }
            }
            for _, item in group
        ]
        sums: dict[str, list[int]] = {request_id: [0, 0, 0, 0, 0] for request_id in shards}
        for _, item in group:
            savings, total = item.savings, sums[item.task.request_id]
            added = (item.succeeded, not item.succeeded, savings.bytes_in, savings.bytes_out, savings.reused)
            for slot, value in enumerate(added):
                total[slot] += int(value)
        updates: list[TransactWriteItemTypeDef] = [
            {
                "Update": {
                    "TableName": self.table,
                    "Key": self._key(request_id, f"{SHARD_SK}{shards[request_id]}"),
                    # progressAt: when the request last moved, which is how the reconciler tells a stalled one.
                    "UpdateExpression": "SET progressAt = :at, #expires = if_not_exists(#expires, :expires) "
                    "ADD succeeded :s, failed :f, bytesIn :in, bytesOut :out, reused :reused",
                    "ExpressionAttributeNames": {"#expires": TTL_ATTRIBUTE},
                    "ExpressionAttributeValues": {
                        ":at": {"N": str(int(at.timestamp()))},
                        ":expires": expires,
                        **{
                            name: {"N": str(value)}
                            for name, value in zip((":s", ":f", ":in", ":out", ":reused"), total, strict=True)
                        },
                    },
                }
            }
            for request_id, total in sums.items()
        ]
        return markers + updates  # markers first: the cancellation's reasons come in this order

    def _shard(self, request_id: str) -> int:
        chosen: dict[str, int] = self._chosen.__dict__.setdefault("shards", {})
        if request_id not in chosen:
            if len(chosen) >= _REMEMBERED:
                chosen.clear()
            chosen[request_id] = self._random.randrange(self._shards_of(request_id))
        return chosen[request_id]

    def _move(self, request_id: str) -> None:
        """Count this request on another of its shards from now on (this thread's writes conflicted there)."""
        chosen: dict[str, int] = self._chosen.__dict__.setdefault("shards", {})
        shards, current = self._shards_of(request_id), chosen.get(request_id)
        if shards > 1:
            chosen[request_id] = self._random.choice([shard for shard in range(shards) if shard != current])

    def _shards_of(self, request_id: str) -> int:
        if request_id not in self._shard_counts:
            item = self._client.get_item(TableName=self.table, Key=self._key(request_id)).get("Item")
            self._remember_shards(request_id, item)
        return self._shard_counts[request_id]

    def _remember_shards(self, request_id: str, counter: dict[str, Any] | None) -> None:
        if len(self._shard_counts) >= _REMEMBERED:
            self._shard_counts.clear()
        # No counter (a request never opened): one shard.
        self._shard_counts[request_id] = int(counter["shards"]["N"]) if counter else 1

    def _complete_if_done(self, request_id: str) -> bool:
        """Flip the request OPEN -> COMPLETE once every image is counted; True when this call flipped it."""
        counter, counts = self._read(request_id)
        if counter is None or counts is None or counter["status"]["S"] != OPEN or not counts.complete:
            return False
        return self._flip(request_id, COMPLETE)

    # -- reading ------------------------------------------------------------------------------------------------

    def _items(self, request_id: str) -> Iterator[dict[str, Any]]:
        """The request's COUNTER item and its shards: one strongly consistent Query (one page, but followed)."""
        query: dict[str, Any] = {
            "TableName": self.table,
            "KeyConditionExpression": "pk = :pk AND begins_with(sk, :counter)",
            "ExpressionAttributeValues": {":pk": {"S": request_id}, ":counter": {"S": COUNTER_SK}},
            "ConsistentRead": True,
        }
        while True:
            page = self._client.query(**query)
            yield from page.get("Items", [])
            if "LastEvaluatedKey" not in page:
                return
            query["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def _read(self, request_id: str) -> tuple[dict[str, Any] | None, Counts | None]:
        counter, sums, progress = None, [0, 0, 0, 0, 0], None
        for item in self._items(request_id):
            if item["sk"]["S"] == COUNTER_SK:
                counter = item  # the status, the total, the shards: the counts are on the shards
            else:
                for at, name in enumerate(("succeeded", "failed", "bytesIn", "bytesOut", "reused")):
                    sums[at] += int(item.get(name, {"N": "0"})["N"])
            if "progressAt" in item:
                progress = max(progress or 0.0, float(item["progressAt"]["N"]))
        if counter is None:
            return None, None
        self._remember_shards(request_id, counter)
        succeeded, failed, *savings = sums
        return counter, Counts(int(counter["total"]["N"]), succeeded, failed, Savings(*savings), progress_at=progress)

    def counts(self, request_id: str) -> Counts | None:
        return self._read(request_id)[1]


def _transactions(items: list[tuple[int, ImageCount]]) -> Iterator[list[tuple[int, ImageCount]]]:
    """The items in groups of at most MAX_TRANSACTION_ITEMS transaction items: a marker each, and one shard
    update for each request in the group."""
    group: list[tuple[int, ImageCount]] = []
    requests: set[str] = set()
    for entry in items:
        request_id = entry[1].task.request_id
        cost = 1 if request_id in requests else 2
        if len(group) + len(requests) + cost > MAX_TRANSACTION_ITEMS:
            yield group
            group, requests = [], set()
        group.append(entry)
        requests.add(request_id)
    if group:
        yield group


class DynamoQuotas:
    """Per-tenant image counters in the ledger's table: `TENANT#<tenant>` / `DAY#<date>` (images accepted that
    day, and the work charged to it, expiring) and / `INFLIGHT`; one `QUOTA` marker per request (pk = the request
    id) holding what it reserved, so a reservation and its release each happen once, and one `WORK#row#index`
    marker per image whose work was charged, so a charge happens once."""

    def __init__(
        self, client: DynamoDBClient, table: str, *, attempts: int = 8, clock: Callable[[], float] = time.time
    ) -> None:
        self._client = client
        self.table = table
        self._attempts = attempts
        self._clock = clock

    @staticmethod
    def _key(pk: str, sk: str) -> dict[str, Any]:
        return {"pk": {"S": pk}, "sk": {"S": sk}}

    def _images(self, pk: str, sk: str) -> int:
        item = self._client.get_item(TableName=self.table, Key=self._key(pk, sk), ConsistentRead=True).get("Item")
        return int(item["images"]["N"]) if item and "images" in item else 0

    def usage(self, tenant: str, day: str) -> tuple[int, int]:
        return self._images(f"TENANT#{tenant}", f"DAY#{day}"), self._images(f"TENANT#{tenant}", QUOTA_IN_FLIGHT)

    def _add_within(
        self, pk: str, sk: str, images: int, limit: int, **extra: dict[str, str]
    ) -> TransactWriteItemTypeDef:
        values = {":n": {"N": str(images)}, ":zero": {"N": "0"}, ":room": {"N": str(limit - images)}}
        update = "SET images = if_not_exists(images, :zero) + :n"
        for name, value in extra.items():
            update += f", {name} = :{name}"
            values[f":{name}"] = value
        return {
            "Update": {
                "TableName": self.table,
                "Key": self._key(pk, sk),
                "UpdateExpression": update,
                "ConditionExpression": "attribute_not_exists(images) OR images <= :room",
                "ExpressionAttributeValues": values,
            }
        }

    def _add_to_day(self, tenant: str, day: str, images: int, per_day: int) -> TransactWriteItemTypeDef:
        expires = {"N": str(int(self._clock()) + 2 * 86_400)}
        return self._add_within(f"TENANT#{tenant}", f"DAY#{day}", images, per_day, **{TTL_ATTRIBUTE: expires})

    def _put_marker(self, pk: str, sk: str, **attributes: dict[str, str]) -> TransactWriteItemTypeDef:
        item = {**self._key(pk, sk), **attributes, TTL_ATTRIBUTE: {"N": str(int(self._clock()) + 30 * 86_400)}}
        return {"Put": {"TableName": self.table, "Item": item, "ConditionExpression": "attribute_not_exists(pk)"}}

    def _transact(self, items: list[TransactWriteItemTypeDef], what: str) -> list[str | None] | None:
        """Write the transaction, again while it conflicts with another; None when it went through, else the
        cancellation reasons' codes, one per item (a condition failed)."""
        try:
            for attempt in again(self._attempts, 0.05, jitter=True):
                with attempt:
                    try:
                        self._client.transact_write_items(TransactItems=items)
                        return None
                    except self._client.exceptions.TransactionCanceledException as exc:
                        codes = [reason.get("Code") for reason in exc.response.get("CancellationReasons", [])]
                        if "TransactionConflict" in codes:
                            raise Again("transaction conflict") from None
                        if "ConditionalCheckFailed" not in codes:
                            raise
                        return codes
        except RetryError:  # every attempt conflicted
            pass
        raise LedgerError(f"could not {what} after {self._attempts} attempts")

    def reserve(self, tenant: str, request_id: str, images: int, per_day: int, in_flight: int, day: str) -> str | None:
        if images > per_day:
            return "perDay"
        if images > in_flight:
            return "inFlight"
        items = [
            self._add_to_day(tenant, day, images, per_day),
            self._add_within(f"TENANT#{tenant}", QUOTA_IN_FLIGHT, images, in_flight),
            self._put_marker(request_id, QUOTA_MARKER, tenant={"S": tenant}, images={"N": str(images)}),
        ]
        codes = self._transact(items, f"reserve the images of {request_id}")
        if codes is None:
            return None
        day_check, _, marker = codes
        if marker == "ConditionalCheckFailed":
            return None  # reserved before, by this request's earlier attempt
        return "perDay" if day_check == "ConditionalCheckFailed" else "inFlight"

    def charge(self, task: ImageTask, images: int, per_day: int, day: str) -> bool:
        if images > per_day:
            return False
        items = [
            self._add_to_day(task.tenant, day, images, per_day),
            self._put_marker(task.request_id, f"{WORK_MARKER}#{task.row}#{task.index}", images={"N": str(images)}),
        ]
        codes = self._transact(items, f"charge the work of {task.output_key}")
        return codes is None or codes[1] == "ConditionalCheckFailed"  # charged now, or before for this image

    def release(self, request_id: str) -> None:
        marker = self._client.get_item(
            TableName=self.table, Key=self._key(request_id, QUOTA_MARKER), ConsistentRead=True
        ).get("Item")
        if marker is None or "released" in marker:
            return
        items: list[TransactWriteItemTypeDef] = [
            {
                "Update": {
                    "TableName": self.table,
                    "Key": self._key(request_id, QUOTA_MARKER),
                    "UpdateExpression": "SET released = :yes",
                    "ConditionExpression": "attribute_exists(pk) AND attribute_not_exists(released)",
                    "ExpressionAttributeValues": {":yes": {"BOOL": True}},
                }
            },
            {
                "Update": {
                    "TableName": self.table,
                    "Key": self._key(f"TENANT#{marker['tenant']['S']}", QUOTA_IN_FLIGHT),
                    "UpdateExpression": "SET images = images - :n",
                    "ExpressionAttributeValues": {":n": marker["images"]},
                }
            },
        ]
        # A failed condition is the marker's: released by another call.
        self._transact(items, f"release the images of {request_id}")
