"""Schemathesis against the API's own OpenAPI document (generated from the handlers' code), on the local cloud:
no 5xx, every status documented, every response matching its schema."""

from __future__ import annotations

import schemathesis
from hypothesis import HealthCheck, given, settings

from tests.e2e.conftest import KEYS, Cloud


def test_the_api_honours_its_own_description(cloud: Cloud) -> None:
    # (schemathesis' pytest plugin does not run under pytest 9 yet; its strategies are driven directly.)
    schema = schemathesis.openapi.from_url(f"{cloud.url}/api/v1/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {f"{op.method.upper()} {op.path}" for op in operations} == {
        "POST /api/v1/upload",
        "POST /api/v1/uploads",
        "GET /api/v1/status/{requestId}",
        "GET /api/v1/webhook-secret",
        "POST /api/v1/webhook-secret/rotate",
    }
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=40, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        def honours(case: schemathesis.Case) -> None:
            # A file field is any bytes to OpenAPI; whether they are a valid CSV is ours to say (400 with the
            # rows), so "schema-valid data must be accepted" cannot hold for uploads. Every other check runs.
            case.call_and_validate(
                headers={"x-api-key": KEYS[1]},
                timeout=30,
                excluded_checks=[schemathesis.checks.positive_data_acceptance],
            )

        honours()
