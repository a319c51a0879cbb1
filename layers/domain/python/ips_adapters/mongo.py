"""The catalog on MongoDB: one document per request, one per product (with its images' terminal states)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict
from datetime import datetime, timedelta
from typing import Any

from pymongo import ASCENDING, ReturnDocument, UpdateOne
from pymongo.database import Database
from pymongo.errors import BulkWriteError, DuplicateKeyError

from ips.completion.policy import RetryPolicy
from ips.completion.ports import SecretGeneration
from ips.shared.csv_input import ProductRow
from ips.shared.errors import Problem, failure_record
from ips.shared.model import Counts, ImageOutcome, ImageStatus, ImageTask, RequestStatus, Savings
from ips.shared.options import ImageOptions
from ips.shared.ports import ProductRecord, RequestRecord

_INSERT_BATCH = 1000
_DUPLICATE_KEY = 11000
_OPEN = {"$nin": [status.value for status in RequestStatus if status.is_final]}
_FINAL = {"$in": [status.value for status in RequestStatus if status.is_final]}


def product_id(request_id: str, row: int) -> str:
    return f"{request_id}:{row:09d}"


class MongoCatalog:
    def __init__(self, database: Database[dict[str, Any]]) -> None:
        self._requests = database["requests"]
        self._products = database["products"]

    def ensure_indexes(self) -> None:
        self._products.create_index([("requestId", ASCENDING), ("row", ASCENDING)])
        # The reconciler's rounds: open requests, and ended ones by completion time (webhooks to resend).
        self._requests.create_index([("status", ASCENDING), ("completedAt", ASCENDING)])

    def create(self, record: RequestRecord) -> None:
        self._requests.insert_one(
            {
                "_id": record.request_id,
                "tenant": record.tenant,
                "status": record.status.value,
                "createdAt": record.created_at,
                "totalProducts": record.total_products,
                "totalImages": record.total_images,
                "webhookUrl": record.webhook_url,
                "inputKey": record.input_key,
                "assetSalt": record.asset_salt,
                "uploadExpiresAt": record.upload_expires_at,
                "options": record.options.to_document(),
                "deadlineAt": record.deadline_at,
            }
        )

    def get(self, request_id: str) -> RequestRecord | None:
        document = self._requests.find_one({"_id": request_id})
        return None if document is None else _request_record(document)

    def upload_arrived(
        self, request_id: str, input_key: str, total_products: int, total_images: int, deadline_at: datetime
    ) -> bool:
        result = self._requests.update_one(
            {"_id": request_id, "uploadExpiresAt": {"$ne": None}, "status": _OPEN},
            {
                "$set": {
                    "inputKey": input_key,
                    "totalProducts": total_products,
                    "totalImages": total_images,
                    "uploadExpiresAt": None,
                    "deadlineAt": deadline_at,
                }
            },
        )
        return result.modified_count == 1

    def add_products(self, request_id: str, products: Sequence[ProductRow]) -> None:
        for start in range(0, len(products), _INSERT_BATCH):
            documents = [
                {
                    "_id": product_id(request_id, product.row),
                    "requestId": request_id,
                    "row": product.row,
                    "serialNumber": product.serial_number,
                    "productName": product.product_name,
                    "inputImageUrls": list(product.image_urls),
                    "images": [{"status": ImageStatus.PENDING.value} for _ in product.image_urls],
                }
                for product in products[start : start + _INSERT_BATCH]
            ]
            try:
                self._products.insert_many(documents, ordered=False)
            except BulkWriteError as exc:
                # A redelivered chunk: the products it already added stay as they are (with their images).
                if any(error["code"] != _DUPLICATE_KEY for error in exc.details["writeErrors"]):
                    raise

    def record_images(self, outcomes: Sequence[tuple[ImageTask, ImageOutcome]]) -> list[ImageOutcome | None]:
        if not outcomes:
            return []
        # Each image's slot is set only while it is PENDING: the first terminal state wins.
        writes = [
            UpdateOne(
                {
                    "_id": product_id(task.request_id, task.row),
                    f"images.{task.index}.status": ImageStatus.PENDING.value,
                },
                {"$set": {f"images.{task.index}": outcome.to_document()}},
            )
            for task, outcome in outcomes
        ]
        result = self._products.bulk_write(writes, ordered=False)
        if result.modified_count == len(writes):
            return [outcome for _, outcome in outcomes]
        # Some slot was terminal already (a redelivery) or is not there: read what the batch's products hold.
        ids = list({product_id(task.request_id, task.row) for task, _ in outcomes})
        stored = {
            document["_id"]: document["images"]
            for document in self._products.find({"_id": {"$in": ids}}, {"images": True})
        }
        answer: list[ImageOutcome | None] = []
        for task, _ in outcomes:
            images = stored.get(product_id(task.request_id, task.row))
            if images is None or task.index >= len(images):
                answer.append(None)
            elif images[task.index]["status"] == ImageStatus.PENDING.value:
                raise RuntimeError(f"image {task.output_key} is still pending after it was recorded")
            else:
                answer.append(ImageOutcome.from_document(images[task.index]))
        return answer

    def note_failed_delivery(self, task: ImageTask, reason: str) -> None:
        slot = f"images.{task.index}"
        self._products.update_one(
            {"_id": product_id(task.request_id, task.row), f"{slot}.status": ImageStatus.PENDING.value},
            {"$set": {f"{slot}.lastError": reason}},
        )

    def last_error(self, task: ImageTask) -> str | None:
        document = self._products.find_one({"_id": product_id(task.request_id, task.row)}, {"images": True})
        if document is None or task.index >= len(document["images"]):
            return None
        image = document["images"][task.index]
        return image.get("lastError") if image["status"] == ImageStatus.PENDING.value else None

    def products(self, request_id: str, after_row: int = 0, limit: int | None = None) -> Iterator[ProductRecord]:
        documents: Iterable[dict[str, Any]] | None = self._next_rows(request_id, after_row, limit) if limit else None
        if documents is None:
            cursor = self._products.find({"requestId": request_id, "row": {"$gt": after_row}}).sort("row", ASCENDING)
            documents = cursor.limit(limit) if limit is not None else cursor
        for document in documents:
            yield ProductRecord(
                row=document["row"],
                serial_number=document["serialNumber"],
                product_name=document["productName"],
                input_urls=document["inputImageUrls"],
                images=[
                    None if image["status"] == ImageStatus.PENDING.value else ImageOutcome.from_document(image)
                    for image in document["images"]
                ],
            )

    def _next_rows(self, request_id: str, after_row: int, limit: int) -> list[dict[str, Any]] | None:
        """The `limit` products after `after_row` read by their ids, when the rows that follow it are (nearly)
        consecutive, as a catalogue's are: the rows after_row+1 .. after_row+limit+1 (one more, for the header's
        row or a blank line). If `limit` of them exist they are the page, since every other row is further on;
        else None, and the page is the general query's. A status poll reads a page of a request that may hold
        100,000 products: the general query (a range on the index, sorted) is a page's work on MongoDB, but
        SecantusDB, the local MongoDB, sorts every product of the request first (about 40 ms per 1,000)."""
        ids = [product_id(request_id, row) for row in range(after_row + 1, after_row + limit + 2)]
        found = sorted(self._products.find({"_id": {"$in": ids}}), key=lambda document: document["row"])
        return found[:limit] if len(found) >= limit else None

    def finalise(
        self, request_id: str, status: RequestStatus, counts: Counts, output_csv_key: str, at: datetime
    ) -> bool:
        result = self._requests.update_one(
            {"_id": request_id, "status": _OPEN},
            {
                "$set": {
                    "status": status.value,
                    "succeeded": counts.succeeded,
                    "failed": counts.failed,
                    "outputCsvKey": output_csv_key,
                    "savings": asdict(counts.savings),
                    "completedAt": at,
                }
            },
        )
        return result.modified_count == 1

    def mark_failed(
        self,
        request_id: str,
        code: str,
        message: str,
        at: datetime,
        problems: Sequence[Problem] = (),
        *,
        omitted: int = 0,
    ) -> bool:
        error = failure_record(code, message, problems, omitted=omitted)
        result = self._requests.update_one(
            {"_id": request_id, "status": _OPEN},
            {
                "$set": {
                    "status": RequestStatus.FAILED.value,
                    "error": error,
                    "uploadExpiresAt": None,
                    "completedAt": at,
                }
            },
        )
        return result.modified_count == 1

    def extend_deadline(
        self, request_id: str, deadline_at: datetime, paused_through: datetime, *, was: datetime | None
    ) -> bool:
        result = self._requests.update_one(
            {"_id": request_id, "status": _OPEN, "pausedThrough": was},
            {"$set": {"deadlineAt": deadline_at, "pausedThrough": paused_through}},
        )
        return result.modified_count == 1

    def claim_webhook(self, request_id: str, lease_seconds: int, now: datetime) -> int | None:
        document = self._requests.find_one_and_update(
            {
                "_id": request_id,
                **_WEBHOOK_PENDING,
                "$and": [_unclaimed(now), {"$or": [{"webhook.next_attempt_at": None}, _due("$lte", now)]}],
            },
            {"$set": {"webhookClaimUntil": now + timedelta(seconds=lease_seconds)}, "$inc": {"webhook.attempts": 1}},
            projection={"webhook.attempts": True},
            return_document=ReturnDocument.AFTER,
        )
        return None if document is None else int(document["webhook"]["attempts"])

    def record_webhook(self, request_id: str, outcome: dict[str, Any]) -> None:
        fields = {f"webhook.{name}": value for name, value in outcome.items()}
        self._requests.update_one({"_id": request_id}, {"$set": {**fields, "webhookClaimUntil": None}})

    def reschedule_webhook(self, request_id: str, at: datetime, wake: str) -> None:
        self._requests.update_one(
            {"_id": request_id, **_WEBHOOK_PENDING},
            {"$set": {"webhook.next_attempt_at": at, "webhook.wake": wake}},
        )

    def open_requests(self) -> Iterator[RequestRecord]:
        for document in self._requests.find({"status": _OPEN}):
            yield _request_record(document)

    def undelivered_webhooks(self, ended_after: datetime, due_before: datetime, now: datetime) -> Iterator[str]:
        never_attempted = {"webhook.next_attempt_at": None, "completedAt": {"$lt": due_before}}
        query = {
            "status": _FINAL,
            "completedAt": {"$gte": ended_after},
            "webhookUrl": {"$ne": None},
            **_WEBHOOK_PENDING,
            "$and": [_unclaimed(now), {"$or": [_due("$lt", due_before), never_attempted]}],
        }
        for document in self._requests.find(query, {"_id": True}):
            yield document["_id"]


_WEBHOOK_PENDING = {"webhook.delivered": {"$ne": True}, "webhook.gave_up": {"$ne": True}}


def _unclaimed(now: datetime) -> dict[str, Any]:
    return {"$or": [{"webhookClaimUntil": None}, {"webhookClaimUntil": {"$lt": now}}]}


def _due(operator: str, moment: datetime) -> dict[str, Any]:
    return {"webhook.next_attempt_at": {operator: moment}}


class MongoRoundLog:
    """The reconciler's note, one document in `reconciler`."""

    def __init__(self, database: Database[dict[str, Any]]) -> None:
        self._notes = database["reconciler"]

    def last_healthy(self) -> datetime | None:
        document = self._notes.find_one({"_id": "rounds"})
        healthy: datetime | None = None if document is None else document.get("lastHealthy")
        return healthy

    def mark_healthy(self, at: datetime) -> None:
        self._notes.update_one({"_id": "rounds"}, {"$set": {"lastHealthy": at}}, upsert=True)


class MongoReceivers:
    """One document per receiver that failed (`webhookReceivers`): its failures in a row and until when it
    pauses; a receiver that answers has none."""

    def __init__(self, database: Database[dict[str, Any]]) -> None:
        self._receivers = database["webhookReceivers"]

    def admit(self, receiver: str, now: datetime, probe_s: float) -> datetime | None:
        document = self._receivers.find_one({"_id": receiver})
        until: datetime | None = document.get("until") if document is not None else None
        if until is None:
            return None
        if until > now:
            return until
        # Its pause is over: one caller takes the attempt that tries it again, the others wait for its answer.
        probe = now + timedelta(seconds=probe_s)
        taken = self._receivers.update_one({"_id": receiver, "until": until}, {"$set": {"until": probe}})
        if taken.modified_count == 1:
            return None
        document = self._receivers.find_one({"_id": receiver})
        return document.get("until") if document is not None else None

    def failed(self, receiver: str, now: datetime, policy: RetryPolicy) -> datetime:
        document = self._receivers.find_one_and_update(
            {"_id": receiver},
            {"$inc": {"failures": 1}, "$setOnInsert": {"until": now}},
            upsert=True,
            return_document=ReturnDocument.AFTER,
        )
        assert document is not None  # an upsert returning the document after it always has one
        failures = int(document["failures"])
        until = now + timedelta(seconds=policy.delay(failures))
        self._receivers.update_one({"_id": receiver, "failures": failures}, {"$set": {"until": until}})
        return until

    def answered(self, receiver: str) -> None:
        self._receivers.delete_one({"_id": receiver})


class MongoSecretGenerations:
    """One document per tenant that has rotated its webhook secret (`tenants` collection); the secrets themselves
    are derived, never stored."""

    def __init__(self, database: Database[dict[str, Any]], *, attempts: int = 5) -> None:
        self._tenants = database["tenants"]
        self._attempts = attempts

    def current(self, tenant: str) -> SecretGeneration:
        document = self._tenants.find_one({"_id": tenant})
        if document is None:
            return SecretGeneration()
        return SecretGeneration(
            generation=document["generation"],
            rotated_at=document.get("rotatedAt"),
            previous_generation=document.get("previousGeneration"),
            previous_until=document.get("previousUntil"),
        )

    def rotate(self, tenant: str, now: datetime, window_s: int) -> SecretGeneration:
        # Compare-and-set on the generation read: two rotations at once move it by two, never lose one.
        now = now.replace(microsecond=now.microsecond // 1000 * 1000)  # what BSON keeps: answer what is stored
        for _ in range(self._attempts):
            generation = self.current(tenant).generation
            rotated = SecretGeneration(generation + 1, now, generation, now + timedelta(seconds=window_s))
            try:
                result = self._tenants.update_one(
                    {"_id": tenant, "generation": generation},  # generation 0: no document yet, so it is created
                    {
                        "$set": {
                            "generation": rotated.generation,
                            "rotatedAt": now,
                            "previousGeneration": generation,
                            "previousUntil": rotated.previous_until,
                        }
                    },
                    upsert=True,
                )
            except DuplicateKeyError:  # another rotation created or moved the document first
                continue
            if result.modified_count == 1 or result.upserted_id is not None:
                return rotated
        raise RuntimeError(f"could not rotate the webhook secret of {tenant} after {self._attempts} attempts")


def _request_record(document: dict[str, Any]) -> RequestRecord:
    return RequestRecord(
        request_id=document["_id"],
        tenant=document["tenant"],
        status=RequestStatus(document["status"]),
        created_at=document["createdAt"],
        total_products=document["totalProducts"],
        total_images=document["totalImages"],
        webhook_url=document.get("webhookUrl"),
        input_key=document.get("inputKey"),
        asset_salt=document["assetSalt"],
        upload_expires_at=document.get("uploadExpiresAt"),
        completed_at=document.get("completedAt"),
        succeeded=document.get("succeeded"),
        failed=document.get("failed"),
        output_csv_key=document.get("outputCsvKey"),
        webhook=document.get("webhook"),
        error=document.get("error"),
        options=ImageOptions.from_document(document["options"]),
        savings=Savings(**document["savings"]) if document.get("savings") else None,
        deadline_at=document.get("deadlineAt"),
        paused_through=document.get("pausedThrough"),
        webhook_claim_until=document.get("webhookClaimUntil"),
    )
