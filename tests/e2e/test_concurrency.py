"""Tenants at the same time: Lambda runs one invocation per execution environment, so a handler's module state
(powertools' resolver keeps the current event at class level) belongs to one request. The local cloud must give
each concurrent invocation its own environment, or one tenant's request is answered with another's."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import requests

from tests.e2e.conftest import UNTHROTTLED_KEYS, Cloud
from tests.e2e.test_local_cloud import HEADER, wait_for_final

THREADS = 12


def _upload(cloud: Cloud, key: str, label: str) -> tuple[str, str, requests.Response]:
    # An address the fetcher refuses at once: the request ends quickly and no image server is involved.
    rows = "".join(f"{n},{label} item {n},http://127.0.0.1:1/{label}-{n}.jpg\n" for n in range(1, 4))
    answer = requests.post(
        f"{cloud.url}/api/v1/upload",
        headers={"x-api-key": key, "content-type": "text/csv"},
        data=(HEADER + rows).encode(),
        timeout=120,
    )
    return key, label, answer


def _status(cloud: Cloud, key: str, request_id: str) -> requests.Response:
    return requests.get(f"{cloud.url}/api/v1/status/{request_id}", headers={"x-api-key": key}, timeout=120)


def test_concurrent_uploads_from_two_tenants_each_get_their_own_request(cloud: Cloud) -> None:
    jobs = [(UNTHROTTLED_KEYS[n % 2], f"u{n}") for n in range(24)]
    with ThreadPoolExecutor(THREADS) as pool:
        results = list(pool.map(lambda job: _upload(cloud, *job), jobs))
    assert [answer.status_code for _, _, answer in results] == [202] * len(jobs), [a.text for *_, a in results]
    request_ids = [answer.json()["requestId"] for _, _, answer in results]
    assert len(set(request_ids)) == len(jobs)  # no tenant was handed another upload's request
    for (key, label, answer), request_id in zip(results, request_ids, strict=True):
        other = UNTHROTTLED_KEYS[1 - UNTHROTTLED_KEYS.index(key)]
        own = wait_for_final(cloud, answer.json()["statusUrl"], key)
        # What was stored under this request is this upload's CSV, not a concurrent one's.
        assert [p["productName"] for p in own["products"]] == [f"{label} item {n}" for n in range(1, 4)]
        assert _status(cloud, other, request_id).status_code == 404


def test_concurrent_status_reads_from_two_tenants_see_only_their_own_requests(cloud: Cloud) -> None:
    owned = {key: _upload(cloud, key, key.split("-")[1])[2].json()["requestId"] for key in UNTHROTTLED_KEYS}
    # Each tenant reads its own request and tries the other's, all at once.
    reads = [(key, owned[target]) for _ in range(40) for key in UNTHROTTLED_KEYS for target in UNTHROTTLED_KEYS]
    with ThreadPoolExecutor(THREADS) as pool:
        answers = list(pool.map(lambda read: (read, _status(cloud, *read)), reads))
    wrong = []
    for (key, request_id), answer in answers:
        mine = owned[key] == request_id
        expected = 200 if mine else 404
        if answer.status_code != expected or (mine and answer.json()["requestId"] != request_id):
            wrong.append((key, request_id, answer.status_code, answer.text[:120]))
    assert wrong == [], f"{len(wrong)} of {len(reads)} reads answered for the wrong tenant"
