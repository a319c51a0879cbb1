"""A malformed setting stops a function's execution environment as it starts (Lambda's init), naming the
variable: the API functions read their own settings model when the handler is imported, and only it."""

from __future__ import annotations

import pytest

from infra.topology import TOPOLOGY
from localcloud.lambda_host import ProcessEnvironment
from tests.unit.test_function_settings import RESOURCES


@pytest.mark.parametrize(
    ("function", "variable"),
    [("upload", "CSV_MAX_BYTES"), ("status", "STATUS_PAGE_MAX_BYTES"), ("secret", "WEBHOOK_ROTATION_WINDOW_SECONDS")],
)
def test_an_api_function_with_a_malformed_setting_does_not_start(function: str, variable: str) -> None:
    environment = {**TOPOLOGY.function_environment(), **RESOURCES, variable: "4.5"}
    with pytest.raises(RuntimeError, match="failed to start") as refused:
        ProcessEnvironment(TOPOLOGY.function(function), environment, None, None)
    assert f"SettingsError: {variable}='4.5': Input should be a valid integer" in str(refused.value)


def test_a_setting_another_function_reads_does_not_stop_it() -> None:
    """The status function does not read the CSV limits: a malformed one is the upload function's problem."""
    environment = {**TOPOLOGY.function_environment(), **RESOURCES, "CSV_MAX_BYTES": "4.5"}
    started = ProcessEnvironment(TOPOLOGY.function("status"), environment, None, None)
    try:
        assert started.pid > 0
    finally:
        started.stop()
