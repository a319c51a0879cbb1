"""The catalog on MongoDB: one document per request, one per product (with its images' terminal states)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo import ASCENDING, MongoClient
from pymongo.database import Database
from pymongo.errors import BulkWriteError, DuplicateKeyError

from ips.csv_input import ProductRow
from ips.errors import Problem, failure_record
from ips.model import Counts, ImageOutcome, ImageStatus, ImageTask, RequestStatus, Savings
from ips.options import ImageOptions
from ips.ports import ProductRecord, RequestRecord, SecretGeneration

_INSERT_BATCH = 1000
_DUPLICATE_KEY = 11000
_OPEN = {"$nin": [status.value for status in RequestStatus if status.is_final]}


def connect(uri: str, database: str) -> Database:
    # tz_aware: datetimes come back as UTC-aware, the same as they went in.
    return MongoClient(uri, tz_aware=True, serverSelectionTimeoutMS=5000)[database]


def product_id(request_id: str, row: int) -> str:
    return f"{request_id}:{row:09d}"


class MongoCatalog:
    def __init__(self, database: Database) -> None:
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

    def record_image(self, task: ImageTask, outcome: ImageOutcome) -> ImageOutcome:
        slot = f"images.{task.index}"
        result = self._products.update_one(
            {"_id": product_id(task.request_id, task.row), f"{slot}.status": ImageStatus.PENDING.value},
            {"$set": {slot: outcome.to_document()}},
        )
        if result.modified_count == 1:
            return outcome
        existing = self._products.find_one({"_id": product_id(task.request_id, task.row)}, {"images": True})
        if existing is None or task.index >= len(existing["images"]):
            raise LookupError(f"no product image for {task.output_key}")
        return ImageOutcome.from_document(existing["images"][task.index])

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
        cursor = self._products.find({"requestId": request_id, "row": {"$gt": after_row}}).sort("row", ASCENDING)
        if limit is not None:
            cursor = cursor.limit(limit)
        for document in cursor:
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
        self, request_id: str, code: str, message: str, problems: Sequence[Problem] = (), *, omitted: int = 0
    ) -> bool:
        error = failure_record(code, message, problems, omitted=omitted)
        result = self._requests.update_one(
            {"_id": request_id, "status": _OPEN},
            {
                "$set": {
                    "status": RequestStatus.FAILED.value,
                    "error": error,
                    "uploadExpiresAt": None,
                    "completedAt": datetime.now(UTC),
                }
            },
        )
        return result.modified_count == 1

    def claim_webhook(self, request_id: str, lease_seconds: int, now: datetime) -> bool:
        result = self._requests.update_one(
            {
                "_id": request_id,
                "webhook.delivered": {"$ne": True},
                "$or": [{"webhookClaimUntil": None}, {"webhookClaimUntil": {"$lt": now}}],
            },
            {"$set": {"webhookClaimUntil": now + timedelta(seconds=lease_seconds)}},
        )
        return result.modified_count == 1

    def record_webhook(self, request_id: str, delivery: dict[str, Any]) -> None:
        self._requests.update_one({"_id": request_id}, {"$set": {"webhook": delivery, "webhookClaimUntil": None}})

    def open_requests(self) -> Iterator[RequestRecord]:
        for document in self._requests.find({"status": _OPEN}):
            yield _request_record(document)

    def undelivered_webhooks(self, ended_after: datetime, ended_before: datetime, now: datetime) -> Iterator[str]:
        query = {
            "status": {"$in": [status.value for status in RequestStatus if status.is_final]},
            "completedAt": {"$gte": ended_after, "$lt": ended_before},
            "webhookUrl": {"$ne": None},
            "webhook.delivered": {"$ne": True},
            "$or": [{"webhookClaimUntil": None}, {"webhookClaimUntil": {"$lt": now}}],
        }
        for document in self._requests.find(query, {"_id": True}):
            yield document["_id"]


class MongoSecretGenerations:
    """One document per tenant that has rotated its webhook secret (`tenants` collection); the secrets themselves
    are derived, never stored."""

    def __init__(self, database: Database, *, attempts: int = 5) -> None:
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
        asset_salt=document.get("assetSalt", ""),
        upload_expires_at=document.get("uploadExpiresAt"),
        completed_at=document.get("completedAt"),
        succeeded=document.get("succeeded"),
        failed=document.get("failed"),
        output_csv_key=document.get("outputCsvKey"),
        webhook=document.get("webhook"),
        error=document.get("error"),
        options=ImageOptions.from_document(document.get("options")),
        savings=Savings(**document["savings"]) if document.get("savings") else None,
        deadline_at=document.get("deadlineAt"),
    )
