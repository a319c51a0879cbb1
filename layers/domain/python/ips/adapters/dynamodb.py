"""The request ledger on DynamoDB: exact counters, counted once per image, completion flips a status.

One item per request (sk COUNTER) plus one marker per counted image (sk IMAGE#row#index). A transaction puts
the marker (only if absent) and moves the counter together, so a redelivered message counts nothing. The
update that counts the last image also flips `status` from OPEN to COMPLETE; stream filters cannot compare two
attributes, so that flip is what the completion function's filter matches (COMPLETION_FILTER). A request that
ends FAILED (a refused upload, a failed fan-out, an expired upload) flips OPEN to FAILED, through the same
filter: the notify function is the one place a webhook is signed and sent.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import Any

from tenacity import RetryError

from ips.adapters.retries import Again, again
from ips.model import NO_SAVINGS, Counts, ImageTask, Savings
from ips.ports import CountResult

COUNTER_SK = "COUNTER"
OPEN, COMPLETE, FAILED = "OPEN", "COMPLETE", "FAILED"
TTL_ATTRIBUTE = "expiresAt"
QUOTA_IN_FLIGHT, QUOTA_MARKER, WORK_MARKER = "INFLIGHT", "QUOTA", "WORK"

# Lambda event filter for the table's stream (NEW_AND_OLD_IMAGES): only the update that completes a request.
COMPLETION_FILTER: dict[str, Any] = {
    "eventName": ["MODIFY"],
    "dynamodb": {
        "Keys": {"sk": {"S": [COUNTER_SK]}},
        "OldImage": {"status": {"S": [OPEN]}},
        "NewImage": {"status": {"S": [COMPLETE, FAILED]}},
    },
}


class LedgerError(RuntimeError):
    pass


class DynamoLedger:
    def __init__(
        self,
        client: Any,
        table: str,
        *,
        retention_days: int = 30,
        attempts: int = 8,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._client = client
        self.table = table
        self._retention = retention_days * 86_400
        self._attempts = attempts
        self._clock = clock

    def _key(self, request_id: str, sk: str = COUNTER_SK) -> dict[str, Any]:
        return {"pk": {"S": request_id}, "sk": {"S": sk}}

    def _expires(self) -> dict[str, str]:
        return {"N": str(int(self._clock()) + self._retention)}

    def open(self, request_id: str, total: int) -> bool:
        try:
            self._put_counter(request_id, total)
        except self._client.exceptions.ConditionalCheckFailedException:
            return False
        return True

    def _put_counter(self, request_id: str, total: int) -> None:
        self._client.put_item(
            TableName=self.table,
            Item={
                **self._key(request_id),
                "status": {"S": OPEN},
                "total": {"N": str(total)},
                "remaining": {"N": str(total)},
                "succeeded": {"N": "0"},
                "failed": {"N": "0"},
                "progressAt": {"N": str(int(self._clock()))},
                TTL_ATTRIBUTE: self._expires(),
            },
            ConditionExpression="attribute_not_exists(pk)",
        )

    def fail(self, request_id: str) -> bool:
        """Flip the counter OPEN -> FAILED (creating it first, empty, when the request never had one), so the
        completion filter hands the request to the notify function. False when it had already ended."""
        with contextlib.suppress(self._client.exceptions.ConditionalCheckFailedException):
            self._put_counter(request_id, 0)
        try:
            self._client.update_item(
                TableName=self.table,
                Key=self._key(request_id),
                UpdateExpression="SET #status = :failed",
                ConditionExpression="#status = :open",
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues={":failed": {"S": FAILED}, ":open": {"S": OPEN}},
            )
        except self._client.exceptions.ConditionalCheckFailedException:
            return False
        return True

    def touch(self, request_id: str) -> None:
        with contextlib.suppress(self._client.exceptions.ConditionalCheckFailedException):
            self._client.update_item(
                TableName=self.table,
                Key=self._key(request_id),
                UpdateExpression="SET progressAt = :now",
                ConditionExpression="attribute_exists(pk)",
                ExpressionAttributeValues={":now": {"N": str(int(self._clock()))}},
            )

    def count(self, task: ImageTask, succeeded: bool, savings: Savings = NO_SAVINGS) -> CountResult:
        # Most images are not the last: try the plain count first (one call); the counter's condition sends
        # the last image to the completing variant.
        last = False
        try:
            for attempt in again(self._attempts, 0.05, jitter=True):
                with attempt:
                    try:
                        self._client.transact_write_items(
                            TransactItems=self._count_items(task, succeeded, savings, last=last)
                        )
                        return CountResult(counted=True, completed=last)
                    except self._client.exceptions.TransactionCanceledException as exc:
                        marker, counter = (reason.get("Code") for reason in exc.response.get("CancellationReasons", []))
                        if marker == "ConditionalCheckFailed":
                            return CountResult(counted=False, completed=False)
                        if counter == "ConditionalCheckFailed":
                            # Our guess of whether this is the last image was wrong: read which variant applies.
                            last = self._remaining(task.request_id) == 1
                            raise Again("the other variant", wait=False) from None
                        if "TransactionConflict" not in (marker, counter):
                            raise
                        raise Again("transaction conflict") from None
        except RetryError:  # every attempt conflicted
            pass
        raise LedgerError(f"could not count image {task.output_key} after {self._attempts} attempts")

    def _count_items(self, task: ImageTask, succeeded: bool, savings: Savings, *, last: bool) -> list[dict[str, Any]]:
        # progressAt: when the request last moved, which is how the reconciler tells a stalled request.
        update = "SET remaining = remaining - :one, succeeded = succeeded + :s, failed = failed + :f, progressAt = :now"
        values = {
            ":now": {"N": str(int(self._clock()))},
            ":one": {"N": "1"},
            ":s": {"N": "1" if succeeded else "0"},
            ":f": {"N": "0" if succeeded else "1"},
            ":in": {"N": str(savings.bytes_in)},
            ":out": {"N": str(savings.bytes_out)},
            ":reused": {"N": str(savings.reused)},
        }
        if last:
            update += ", #status = :complete"
            values[":complete"] = {"S": COMPLETE}
            condition = "remaining = :one"
        else:
            condition = "remaining > :one"
        # The request's savings move with its counts, in the same write: reading them costs nothing extra.
        update += " ADD bytesIn :in, bytesOut :out, reused :reused"
        return [
            {
                "Put": {
                    "TableName": self.table,
                    "Item": {
                        **self._key(task.request_id, f"IMAGE#{task.row}#{task.index}"),
                        "succeeded": {"BOOL": succeeded},
                        TTL_ATTRIBUTE: self._expires(),
                    },
                    "ConditionExpression": "attribute_not_exists(pk)",
                }
            },
            {
                "Update": {
                    "TableName": self.table,
                    "Key": self._key(task.request_id),
                    "UpdateExpression": update,
                    "ConditionExpression": condition,
                    "ExpressionAttributeValues": values,
                    **({"ExpressionAttributeNames": {"#status": "status"}} if last else {}),
                }
            },
        ]

    def _counter(self, request_id: str) -> dict[str, Any] | None:
        return self._client.get_item(TableName=self.table, Key=self._key(request_id), ConsistentRead=True).get("Item")

    def _remaining(self, request_id: str) -> int:
        item = self._counter(request_id)
        if item is None:
            raise LedgerError(f"request {request_id} has no counter")
        return int(item["remaining"]["N"])

    def counts(self, request_id: str) -> Counts | None:
        item = self._counter(request_id)
        if item is None:
            return None
        savings = Savings(*(int(item.get(name, {"N": "0"})["N"]) for name in ("bytesIn", "bytesOut", "reused")))
        progress = item.get("progressAt")
        return Counts(
            int(item["total"]["N"]),
            int(item["succeeded"]["N"]),
            int(item["failed"]["N"]),
            savings,
            progress_at=float(progress["N"]) if progress else None,
        )


class DynamoQuotas:
    """Per-tenant image counters in the ledger's table: `TENANT#<tenant>` / `DAY#<date>` (images accepted that
    day, and the work charged to it, expiring) and / `INFLIGHT`; one `QUOTA` marker per request (pk = the request
    id) holding what it reserved, so a reservation and its release each happen once, and one `WORK#row#index`
    marker per image whose work was charged, so a charge happens once."""

    def __init__(self, client: Any, table: str, *, attempts: int = 8, clock: Callable[[], float] = time.time) -> None:
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

    def _add_within(self, pk: str, sk: str, images: int, limit: int, **extra: dict[str, str]) -> dict[str, Any]:
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

    def _add_to_day(self, tenant: str, day: str, images: int, per_day: int) -> dict[str, Any]:
        expires = {"N": str(int(self._clock()) + 2 * 86_400)}
        return self._add_within(f"TENANT#{tenant}", f"DAY#{day}", images, per_day, **{TTL_ATTRIBUTE: expires})

    def _put_marker(self, pk: str, sk: str, **attributes: dict[str, str]) -> dict[str, Any]:
        item = {**self._key(pk, sk), **attributes, TTL_ATTRIBUTE: {"N": str(int(self._clock()) + 30 * 86_400)}}
        return {"Put": {"TableName": self.table, "Item": item, "ConditionExpression": "attribute_not_exists(pk)"}}

    def _transact(self, items: list[dict[str, Any]], what: str) -> list[str | None] | None:
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
        items = [
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
