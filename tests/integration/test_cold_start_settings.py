"""A malformed setting stops a function's execution environment as it starts (Lambda's init), naming the
variable: the API functions read their settings when the handler is imported."""

from __future__ import annotations

import pytest

from infra.topology import TOPOLOGY
from localcloud.lambda_host import ProcessEnvironment
from tests.unit.test_function_settings import RESOURCES


@pytest.mark.parametrize("function", ["upload", "status", "secret"])
def test_an_api_function_with_a_malformed_setting_does_not_start(function: str) -> None:
    environment = {**TOPOLOGY.function_environment(), **RESOURCES, "CSV_MAX_BYTES": "4.5"}
    with pytest.raises(RuntimeError, match="failed to start") as refused:
        ProcessEnvironment(TOPOLOGY.function(function), environment, None, None)
    assert "SettingsError: CSV_MAX_BYTES='4.5': Input should be a valid integer" in str(refused.value)


def test_the_same_environment_well_formed_starts() -> None:
    environment = {**TOPOLOGY.function_environment(), **RESOURCES, "CSV_MAX_BYTES": "4500000"}
    started = ProcessEnvironment(TOPOLOGY.function("status"), environment, None, None)
    try:
        assert started.pid > 0
    finally:
        started.stop()
