"""The reuse index on a real MongoDB wire server: a batch's lookup by URLs keeps the single lookup's rules (per
tenant, per options, never an expired entry)."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo import MongoClient, monitoring

from ips.processing.ports import ReuseEntry, SourceValidators
from ips.shared.model import ImageOutcome, ImageStatus
from ips_adapters.mongo_connection import connect
from ips_adapters.mongo_reuse import MongoReuseIndex

NOW = datetime(2026, 12, 1, 12, tzinfo=UTC)
OPTIONS = "jpeg-q50"


def entry(
    tenant: str, url: str, *, options_key: str = OPTIONS, expires_in: timedelta = timedelta(days=1)
) -> ReuseEntry:
    outcome = ImageOutcome(ImageStatus.SUCCEEDED, input_format="JPEG", input_bytes=100, output_bytes=40)
    return ReuseEntry(
        tenant=tenant,
        options_key=options_key,
        url=url,
        content_sha256=uuid.uuid4().hex * 2,
        validators=SourceValidators(f'"{uuid.uuid4().hex}"', None),
        output_key=f"{tenant}/{url.rsplit('/', 1)[1]}",
        outcome=outcome,
        expires_at=NOW + expires_in,
    )


def test_a_batch_lookup_finds_only_this_tenants_live_entries_for_these_options(mongo_uri: str) -> None:
    index = MongoReuseIndex(connect(mongo_uri, f"ips_{uuid.uuid4().hex[:12]}"))
    index.ensure_indexes()
    mine = [entry("tenant-a", f"http://images.invalid/{name}.jpg") for name in ("a", "b")]
    expired = entry("tenant-a", "http://images.invalid/old.jpg", expires_in=-timedelta(seconds=1))
    others = [
        entry("tenant-b", "http://images.invalid/a.jpg"),  # another tenant's, same URL
        entry("tenant-a", "http://images.invalid/b.jpg", options_key="webp-q80"),  # other options
        entry("tenant-a", "http://images.invalid/unasked.jpg"),
    ]
    index.remember_many([*mine, expired, *others])

    asked = [item.url for item in mine] + [expired.url, "http://images.invalid/never-seen.jpg"]
    found = index.find_by_urls("tenant-a", OPTIONS, asked, NOW)

    assert found == {item.url: item for item in mine}
    assert index.find_by_urls("tenant-c", OPTIONS, asked, NOW) == {}


def test_remembering_many_at_once_inserts_new_entries_and_replaces_old_ones(mongo_uri: str) -> None:
    index = MongoReuseIndex(connect(mongo_uri, f"ips_{uuid.uuid4().hex[:12]}"))
    old = entry("tenant-a", "http://images.invalid/a.jpg")
    index.remember_many([old])
    newer = replace(old, output_key="tenant-a/copy-of-a", expires_at=NOW + timedelta(days=13))
    fresh = entry("tenant-a", "http://images.invalid/b.jpg")

    index.remember_many([newer, fresh])

    assert index.find_by_urls("tenant-a", OPTIONS, [old.url, fresh.url], NOW) == {old.url: newer, fresh.url: fresh}


class _Lookups(monitoring.CommandListener):
    """The commands of one name (the lookups) a client sends, as the server received them."""

    def __init__(self, name: str = "aggregate") -> None:
        self.name = name
        self.commands: list[dict[str, Any]] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if event.command_name == self.name:
            self.commands.append(dict(event.command))

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


def test_the_content_lookup_reads_only_its_matches_however_many_entries_the_index_holds(mongo_uri: str) -> None:
    # Every compressed image asks the index for its content hash; a lookup that reads every entry makes each
    # image cost more the more images came before it (the second catalogue ran at a third of the first's rate).
    lookups = _Lookups()
    name = f"ips_{uuid.uuid4().hex[:12]}"
    database = MongoClient(mongo_uri, tz_aware=True, event_listeners=[lookups])[name]
    index = MongoReuseIndex(database)
    index.ensure_indexes()
    history = [entry("tenant-a", f"http://images.invalid/{number}.jpg") for number in range(300)]
    index.remember_many(history)
    wanted = history[123]

    found = index.find_by_contents("tenant-a", OPTIONS, [wanted.content_sha256], NOW)

    assert found == {wanted.content_sha256: wanted}
    (lookup,) = lookups.commands
    plan = database.command(
        "explain", {"aggregate": "reuse", "pipeline": lookup["pipeline"], "cursor": {}}, verbosity="executionStats"
    )
    assert "COLLSCAN" not in str(plan), plan
    assert _docs_examined(plan) <= 1, plan


def test_the_url_lookup_reads_only_its_matches_however_many_entries_the_index_holds(mongo_uri: str) -> None:
    # A batch looks its sources up by URL (`_id` $in): with the expiry in the query, SecantusDB scanned them all.
    finds = _Lookups("find")
    name = f"ips_{uuid.uuid4().hex[:12]}"
    database = MongoClient(mongo_uri, tz_aware=True, event_listeners=[finds])[name]
    index = MongoReuseIndex(database)
    index.ensure_indexes()
    history = [entry("tenant-a", f"http://images.invalid/{number}.jpg") for number in range(300)]
    index.remember_many(history)
    wanted = [history[7].url, history[123].url]

    assert index.find_by_urls("tenant-a", OPTIONS, wanted, NOW) == {
        history[7].url: history[7],
        history[123].url: history[123],
    }
    (lookup,) = finds.commands
    plan = database.command("explain", {"find": "reuse", "filter": lookup["filter"]}, verbosity="executionStats")
    assert plan["executionStats"]["totalDocsExamined"] <= 2, plan["queryPlanner"]["winningPlan"]


def _docs_examined(plan: dict[str, Any]) -> int:
    """The documents an aggregate's explain says its cursor stage examined."""
    text = str(plan)
    marker = "'totalDocsExamined': "
    start = text.index(marker) + len(marker)
    return int(text[start : text.index(",", start)])


def test_a_lookup_by_content_finds_this_tenants_live_entries_one_per_digest(mongo_uri: str) -> None:
    """Bytes used under several URLs have an entry for each: the lookup answers one entry per digest (the one kept
    longest), only this tenant's, only for these options, never an expired one."""
    index = MongoReuseIndex(connect(mongo_uri, f"ips_{uuid.uuid4().hex[:12]}"))
    index.ensure_indexes()
    placeholder = entry("tenant-a", "http://images.invalid/p1.jpg")
    again = replace(placeholder, url="http://images.invalid/p2.jpg", expires_at=NOW + timedelta(days=5))
    other = entry("tenant-a", "http://images.invalid/q.jpg")
    expired = entry("tenant-a", "http://images.invalid/old.jpg", expires_in=-timedelta(seconds=1))
    elsewhere = [
        replace(other, tenant="tenant-b"),  # another tenant's, same bytes
        replace(other, url="http://images.invalid/q-webp.jpg", options_key="webp-q80"),  # other options
    ]
    index.remember_many([placeholder, again, other, expired, *elsewhere])
    asked = {placeholder.content_sha256, other.content_sha256, expired.content_sha256, "0" * 64}
    found = index.find_by_contents("tenant-a", OPTIONS, asked, NOW)
    assert found == {placeholder.content_sha256: again, other.content_sha256: other}
    assert index.find_by_contents("tenant-c", OPTIONS, asked, NOW) == {}
