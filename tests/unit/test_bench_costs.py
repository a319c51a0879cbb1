"""The bench's request counting and pricing (bench/service_calls.py, bench/prices.py, bench/calls.py), the repeat
part's verdict (bench/repeat.py) and the pipeline bound's sources (bench/bound.py)."""

from __future__ import annotations

import http.client
from collections import Counter
from pathlib import Path

import pytest

from bench import bound
from bench.calls import billed
from bench.prices import cost_per_million, dynamodb_units
from bench.repeat import summarise
from bench.service_calls import between, by_service
from localcloud.source_host import SourceHost


def test_calls_between_two_readings_and_by_service() -> None:
    before = {"s3.PutObject": 3, "sqs.ReceiveMessage@ips-images": 1}
    after = {"s3.PutObject": 5, "sqs.ReceiveMessage@ips-images": 1, "dynamodb.TransactWriteItems": 2}
    after["dynamodb.TransactWriteItems#items"] = 7
    calls = between(before, after)
    assert calls == Counter(
        {"s3.PutObject": 2, "dynamodb.TransactWriteItems": 2, "dynamodb.TransactWriteItems#items": 7}
    )
    assert by_service(calls) == Counter({"s3": 2, "dynamodb": 2})  # items are units, not calls
    assert by_service(Counter({"sqs.SendMessageBatch@ips-images": 4})) == Counter({"sqs@ips-images": 4})


def test_what_aws_would_not_bill_is_left_out() -> None:
    assert billed("sqs.ReceiveMessage@ips-images")
    assert not billed("sqs.ReceiveMessage@ips-uploads-events")  # S3 invokes the function itself in AWS
    assert not billed("dynamodb-streams.GetRecords")  # Lambda's stream reads for a trigger are free


def test_dynamodb_units_count_a_transactions_items_twice() -> None:
    calls = {"dynamodb.TransactWriteItems": 1, "dynamodb.TransactWriteItems#items": 11, "dynamodb.GetItem": 3}
    assert dynamodb_units({**calls, "dynamodb.UpdateItem": 2}) == (24, 3)


def test_cost_of_a_million_images_scales_the_run_and_prices_each_service() -> None:
    lambda_time = {"process": {"invocations": 10, "wall_s": 5.0, "memory_mb": 2048}}
    costs = cost_per_million({"s3.PutObject": 100, "s3.GetObject": 100}, 100, lambda_time, 0)
    assert costs["s3 requests"] == pytest.approx(1e6 * (0.005 / 1000 + 0.0004 / 1000))
    assert costs["lambda duration"] == pytest.approx(1e4 * 5.0 * 2 * 0.0000166667)
    assert costs["lambda requests"] == pytest.approx(1e5 * 0.20 / 1e6)
    assert costs["total"] == pytest.approx(sum(value for name, value in costs.items() if name != "total"))


def _run(repeat: int, images_per_s: float, secantus_s: float, *, completed: bool = True) -> dict:
    return {
        "repeat": repeat,
        "images_per_s": images_per_s,
        "images_done": 100,
        "completed": completed,
        "cpu_s": {"secantusdb": secantus_s, "self": 1.0},
    }


def test_the_repeat_verdict_reads_the_last_repeat_against_the_first() -> None:
    flat = summarise([_run(1, 50, 1.0), _run(2, 48, 1.0), _run(3, 47, 1.0)], 500, 4, 300)
    assert flat["targets"][0]["met"] and flat["ratio_last_vs_first"] == pytest.approx(0.94)
    assert flat["cpu_per_image_last_vs_first"] == pytest.approx(1.0)
    growing = summarise([_run(1, 50, 1.0), _run(2, 30, 2.0), _run(3, 20, 3.0)], 500, 4, 300)
    assert not growing["targets"][0]["met"] and growing["cpu_per_image_last_vs_first"] == pytest.approx(2.0)
    capped = summarise([_run(1, 50, 1.0), _run(2, 50, 1.0), _run(3, 50, 1.0, completed=False)], 500, 4, 300)
    assert not capped["targets"][0]["met"]  # a repeat that did not finish is not judged flat


def test_the_bound_compresses_the_bytes_the_pipelines_image_host_serves(tmp_path: Path) -> None:
    (tmp_path / "a.jpg").write_bytes(b"\xff\xd8 not really a jpeg \xff\xd9")
    bound.load([str(tmp_path / "a.jpg")])
    with SourceHost(tmp_path) as host:
        host.distinct_queries = True
        connection = http.client.HTTPConnection(host.origin.split(":")[0], int(host.origin.split(":")[1]))
        served = []
        for query in ("v=1", "v=2"):
            connection.request("GET", f"/a.jpg?{query}")
            served.append(connection.getresponse().read())
    assert [bound.source_bytes(f"a.jpg?{query}") for query in ("v=1", "v=2")] == served
    assert served[0] != served[1]
