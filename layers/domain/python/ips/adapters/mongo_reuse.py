"""The reuse index on MongoDB: one document per (tenant, options, source URL), expired by a TTL index.

The TTL monitor deletes lazily (once a minute on MongoDB, maybe never on a test server), so every lookup also
filters on `expiresAt` itself: an entry past its time is never used, whether or not it is deleted yet."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from pymongo import ASCENDING, DESCENDING, ReplaceOne
from pymongo.database import Database

from ips.model import ImageOutcome
from ips.ports import ReuseEntry, SourceValidators


def entry_id(tenant: str, options_key: str, url: str) -> str:
    # Hashed: URLs can be longer than an index key should be; the tenant is part of every key.
    return hashlib.sha256(f"{tenant}\0{options_key}\0{url}".encode()).hexdigest()


class MongoReuseIndex:
    def __init__(self, database: Database, clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._entries = database["reuse"]
        self._clock = clock

    def ensure_indexes(self) -> None:
        self._entries.create_index([("expiresAt", ASCENDING)], expireAfterSeconds=0)
        self._entries.create_index([("tenant", ASCENDING), ("optionsKey", ASCENDING), ("contentSha256", ASCENDING)])

    def find_by_urls(self, tenant: str, options_key: str, urls: Collection[str]) -> dict[str, ReuseEntry]:
        ids = [entry_id(tenant, options_key, url) for url in urls]
        documents = self._entries.find({"_id": {"$in": ids}, "tenant": tenant, "expiresAt": {"$gt": self._clock()}})
        return {entry.url: entry for entry in map(_entry, documents)}

    def find_by_contents(self, tenant: str, options_key: str, digests: Collection[str]) -> dict[str, ReuseEntry]:
        # Bytes used under many URLs (a placeholder image) have an entry per URL: the one kept longest is taken,
        # grouped on the server, so the answer holds one document per digest however many there are.
        documents = self._entries.aggregate(
            [
                {
                    "$match": {
                        "tenant": tenant,
                        "optionsKey": options_key,
                        "contentSha256": {"$in": list(digests)},
                        "expiresAt": {"$gt": self._clock()},
                    }
                },
                {"$sort": {"expiresAt": DESCENDING}},
                {"$group": {"_id": "$contentSha256", "entry": {"$first": "$$ROOT"}}},
            ]
        )
        return {document["_id"]: _entry(document["entry"]) for document in documents}

    def remember_many(self, entries: Sequence[ReuseEntry]) -> None:
        if entries:
            self._entries.bulk_write([ReplaceOne(_key(entry), _document(entry), upsert=True) for entry in entries])


def _key(entry: ReuseEntry) -> dict[str, str]:
    return {"_id": entry_id(entry.tenant, entry.options_key, entry.url)}


def _document(entry: ReuseEntry) -> dict[str, Any]:
    return {
        "tenant": entry.tenant,
        "optionsKey": entry.options_key,
        "url": entry.url,
        "contentSha256": entry.content_sha256,
        "etag": entry.validators.etag,
        "lastModified": entry.validators.last_modified,
        "outputKey": entry.output_key,
        "outcome": entry.outcome.to_document(),
        "expiresAt": entry.expires_at,
    }


def _entry(document: Mapping[str, Any]) -> ReuseEntry:
    return ReuseEntry(
        tenant=document["tenant"],
        options_key=document["optionsKey"],
        url=document["url"],
        content_sha256=document["contentSha256"],
        validators=SourceValidators(document.get("etag"), document.get("lastModified")),
        output_key=document["outputKey"],
        outcome=ImageOutcome.from_document(document["outcome"]),
        expires_at=document["expiresAt"],
    )
