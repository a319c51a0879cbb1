"""The catalog on MongoDB: one document per request, one per product (with its images' terminal states)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any

from pymongo import ASCENDING, MongoClient, ReturnDocument
from pymongo.database import Database

from ips.csv_input import ProductRow
from ips.model import Counts, ImageOutcome, ImageStatus, ImageTask, RequestStatus
from ips.ports import ProductRecord, RequestRecord

_INSERT_BATCH = 1000


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
        self._requests.create_index([("tenant", ASCENDING), ("createdAt", ASCENDING)])

    def create(self, record: RequestRecord, products: Sequence[ProductRow]) -> None:
        # Products first: a request document is only visible once everything it points at exists.
        for start in range(0, len(products), _INSERT_BATCH):
            self._products.insert_many(
                [
                    {
                        "_id": product_id(record.request_id, product.row),
                        "requestId": record.request_id,
                        "row": product.row,
                        "serialNumber": product.serial_number,
                        "productName": product.product_name,
                        "inputImageUrls": list(product.image_urls),
                        "images": [{"status": ImageStatus.PENDING.value} for _ in product.image_urls],
                    }
                    for product in products[start : start + _INSERT_BATCH]
                ],
                ordered=False,
            )
        self._requests.insert_one(
            {
                "_id": record.request_id,
                "tenant": record.tenant,
                "status": record.status.value,
                "createdAt": record.created_at,
                "totalProducts": record.total_products,
                "totalImages": record.total_images,
                "webhookUrl": record.webhook_url,
            }
        )

    def get(self, request_id: str) -> RequestRecord | None:
        document = self._requests.find_one({"_id": request_id})
        return None if document is None else _request_record(document)

    def record_image(self, task: ImageTask, outcome: ImageOutcome) -> ImageOutcome:
        slot = f"images.{task.index}"
        updated = self._products.find_one_and_update(
            {"_id": product_id(task.request_id, task.row), f"{slot}.status": ImageStatus.PENDING.value},
            {"$set": {slot: outcome.to_document()}},
            projection={slot: True},
            return_document=ReturnDocument.AFTER,
        )
        if updated is not None:
            return outcome
        existing = self._products.find_one({"_id": product_id(task.request_id, task.row)}, {"images": True})
        if existing is None or task.index >= len(existing["images"]):
            raise LookupError(f"no product image for {task.output_key}")
        return ImageOutcome.from_document(existing["images"][task.index])

    def products(self, request_id: str) -> Iterator[ProductRecord]:
        for document in self._products.find({"requestId": request_id}).sort("row", ASCENDING):
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
    ) -> None:
        self._requests.update_one(
            {"_id": request_id},
            {
                "$set": {
                    "status": status.value,
                    "succeeded": counts.succeeded,
                    "failed": counts.failed,
                    "outputCsvKey": output_csv_key,
                },
                "$min": {"completedAt": at},  # a re-run keeps the first completion time
            },
        )

    def mark_failed(self, request_id: str, code: str, message: str) -> None:
        self._requests.update_one(
            {"_id": request_id},
            {"$set": {"status": RequestStatus.FAILED.value, "error": {"code": code, "message": message}}},
        )

    def record_webhook(self, request_id: str, delivery: dict[str, Any]) -> None:
        self._requests.update_one({"_id": request_id}, {"$set": {"webhook": delivery}})


def _request_record(document: dict[str, Any]) -> RequestRecord:
    return RequestRecord(
        request_id=document["_id"],
        tenant=document["tenant"],
        status=RequestStatus(document["status"]),
        created_at=document["createdAt"],
        total_products=document["totalProducts"],
        total_images=document["totalImages"],
        webhook_url=document.get("webhookUrl"),
        completed_at=document.get("completedAt"),
        succeeded=document.get("succeeded"),
        failed=document.get("failed"),
        output_csv_key=document.get("outputCsvKey"),
        webhook=document.get("webhook"),
        error=document.get("error"),
    )
