from __future__ import annotations

from ips_adapters.dynamodb import COMPLETION_FILTER
from localcloud.runners import matches


def record(event_name: str, sk: str, old: str | None, new: str | None) -> dict:
    dynamodb: dict = {"Keys": {"pk": {"S": "r1"}, "sk": {"S": sk}}}
    if old is not None:
        dynamodb["OldImage"] = {"status": {"S": old}}
    if new is not None:
        dynamodb["NewImage"] = {"status": {"S": new}}
    return {"eventName": event_name, "dynamodb": dynamodb}


def test_completion_filter_matches_only_the_flip_to_complete() -> None:
    assert matches(COMPLETION_FILTER, record("MODIFY", "COUNTER", "OPEN", "COMPLETE"))
    assert not matches(COMPLETION_FILTER, record("MODIFY", "COUNTER", "OPEN", "OPEN"))
    assert not matches(COMPLETION_FILTER, record("MODIFY", "COUNTER", "COMPLETE", "COMPLETE"))
    assert not matches(COMPLETION_FILTER, record("INSERT", "COUNTER", None, "OPEN"))
    assert not matches(COMPLETION_FILTER, record("INSERT", "IMAGE#2#0", None, None))
    assert not matches(COMPLETION_FILTER, record("REMOVE", "COUNTER", "COMPLETE", None))


def test_pattern_operators() -> None:
    event = {"a": {"b": "hello", "n": 5, "tags": ["x", "y"]}}
    assert matches({"a": {"b": [{"prefix": "he"}]}}, event)
    assert not matches({"a": {"b": [{"prefix": "lo"}]}}, event)
    assert matches({"a": {"tags": ["y"]}}, event)
    assert matches({"a": {"missing": [{"exists": False}]}}, event)
    assert not matches({"a": {"b": [{"exists": False}]}}, event)
    assert matches({"a": {"b": [{"anything-but": ["bye"]}]}}, event)
    assert matches({"a": {"n": [{"numeric": [">", 1, "<=", 5]}]}}, event)
    assert not matches({"a": {"n": [{"numeric": [">", 5]}]}}, event)
