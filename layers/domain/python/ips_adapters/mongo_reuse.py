"""The reuse index on MongoDB: one document per (tenant, options, source URL), expired by a TTL index.

The TTL monitor deletes lazily (once a minute on MongoDB, maybe never on a test server), so every lookup also
filters on `expiresAt` itself: an entry past its time is never used, whether or not it is deleted yet."""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Mapping, Sequence
from datetime import datetime
from typing import Any

from pymongo import ASCENDING, DESCENDING, ReplaceOne
from pymongo.database import Database

from ips.processing.ports import ReuseEntry, SourceValidators
from ips.shared.model import ImageOutcome

CONTENT_INDEX = [
    ("tenant", ASCENDING),
    ("optionsKey", ASCENDING),
    ("contentSha256", ASCENDING),
    ("expiresAt", ASCENDING),
]


def entry_id(tenant: str, options_key: str, url: str) -> str:
    # Hashed: URLs can be longer than an index key should be; the tenant is part of every key.
    return hashlib.sha256(f"{tenant}\0{options_key}\0{url}".encode()).hexdigest()


class MongoReuseIndex:
    def __init__(self, database: Database[dict[str, Any]]) -> None:
        self._entries = database["reuse"]

    def ensure_indexes(self) -> None:
        self._entries.create_index([("expiresAt", ASCENDING)], expireAfterSeconds=0)
        # The content lookup's fields. Without them in one index SecantusDB (the local MongoDB) answered it with a
        # scan of every entry, so every compressed image cost more the more had been processed before (257 ms of
        # its CPU per lookup at 10,000 entries, 529 ms at 20,000; 0.4 ms at either with this index).
        self._entries.create_index(CONTENT_INDEX)

    # Both lookups leave `expiresAt` out of the query and drop expired entries here: SecantusDB plans a `$in`
    # beside a range as a scan of the whole collection (tests/integration/test_reuse_index.py), and a batch's
    # lookups are `$in`s. An entry is small, and expired ones are few (the TTL monitor deletes them).

    def find_by_urls(
        self, tenant: str, options_key: str, urls: Collection[str], now: datetime
    ) -> dict[str, ReuseEntry]:
        ids = [entry_id(tenant, options_key, url) for url in urls]
        entries = map(_entry, self._entries.find({"_id": {"$in": ids}}))
        return {entry.url: entry for entry in entries if entry.tenant == tenant and entry.expires_at > now}

    def find_by_contents(
        self, tenant: str, options_key: str, digests: Collection[str], now: datetime
    ) -> dict[str, ReuseEntry]:
        # Bytes used under many URLs (a placeholder image) have an entry per URL: the one kept longest is taken,
        # grouped on the server, so the answer holds one document per digest however many there are (and when
        # the one kept longest has expired, so have the others).
        documents = self._entries.aggregate(
            [
                {"$match": {"tenant": tenant, "optionsKey": options_key, "contentSha256": {"$in": list(digests)}}},
                {"$sort": {"expiresAt": DESCENDING}},
                {"$group": {"_id": "$contentSha256", "entry": {"$first": "$$ROOT"}}},
            ]
        )
        entries = (_entry(document["entry"]) for document in documents)
        return {entry.content_sha256: entry for entry in entries if entry.expires_at > now}

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
