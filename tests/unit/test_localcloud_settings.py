"""The local cloud's settings (localcloud.settings): typed, refused by name, the defaults they were, and API keys
and image quotas parsed once."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ips_runtime.env_settings import SettingsError
from localcloud.settings import ApiKey, KeyImageQuota, LocalCloudConfig, LocalCloudSettings


def test_defaults_are_what_the_hand_parsing_gave() -> None:
    config = LocalCloudConfig.from_env({})
    assert config == LocalCloudConfig()
    assert (config.gateway_port, config.aws_port, config.mongo_port) == (5000, 4566, None)
    assert config.state_dir == Path(".local/state")
    assert config.api_keys == [ApiKey("local-dev-key")] and config.image_quotas == []
    assert (config.workers, config.environments) == (2 * (os.cpu_count() or 1), 4)
    assert (config.visibility_timeout_s, config.throttle_rate, config.throttle_burst) == (None, None, None)
    assert (config.upload_retention_days, config.processed_retention_days, config.reconcile_interval_s) == (
        None,
        None,
        None,
    )
    assert (config.aws_endpoint_url, config.mongodb_uri, config.webhook_secret) == (None, None, None)
    assert (config.metrics_disabled, config.log_level) == (True, "WARNING")


def test_every_variable_reaches_the_config() -> None:
    config = LocalCloudConfig.from_env(
        {
            "GATEWAY_PORT": "5001",
            "AWS_PORT": "0",
            "MONGO_PORT": "27018",
            "LOCAL_STATE_DIR": "/tmp/ips-state",
            "API_KEYS": "first, second:1:5,,",
            "IMAGE_QUOTAS": "first:10:5,b:key:1:2",
            "LOCAL_WORKERS": "3",
            "LOCAL_ENVIRONMENTS": "2",
            "LOCAL_VISIBILITY_TIMEOUT": "6",
            "THROTTLE_RATE": "20",
            "THROTTLE_BURST": "40",
            "UPLOAD_RETENTION_DAYS": "7",
            "PROCESSED_RETENTION_DAYS": "60",
            "AWS_ENDPOINT_URL": "http://127.0.0.1:4566",
            "MONGODB_URI": "mongodb://127.0.0.1:27017/",
            "LOCAL_RECONCILE_SECONDS": "1.5",
            "WEBHOOK_SECRET": "whsec_c2VjcmV0",
            "LOCAL_PASSTHROUGH": "CHAOS_SEED, CHAOS_COUNTERS,,",
            "POWERTOOLS_METRICS_DISABLED": "false",
            "POWERTOOLS_LOG_LEVEL": "DEBUG",
        }
    )
    assert config == LocalCloudConfig(
        gateway_port=5001,
        aws_port=0,
        mongo_port=27018,
        state_dir=Path("/tmp/ips-state"),
        api_keys=[ApiKey("first"), ApiKey("second", 1.0, 5)],
        image_quotas=[KeyImageQuota("first", 10, 5), KeyImageQuota("b:key", 1, 2)],
        workers=3,
        environments=2,
        visibility_timeout_s=6,
        throttle_rate=20.0,
        throttle_burst=40,
        upload_retention_days=7,
        processed_retention_days=60,
        aws_endpoint_url="http://127.0.0.1:4566",
        mongodb_uri="mongodb://127.0.0.1:27017/",
        reconcile_interval_s=1.5,
        webhook_secret="whsec_c2VjcmV0",
        passthrough=("CHAOS_SEED", "CHAOS_COUNTERS"),
        metrics_disabled=False,
        log_level="DEBUG",
    )


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("GATEWAY_PORT", "abc"),
        ("GATEWAY_PORT", "70000"),
        ("AWS_PORT", "4566.5"),
        ("LOCAL_WORKERS", "0"),
        ("LOCAL_VISIBILITY_TIMEOUT", "soon"),
        ("THROTTLE_RATE", "fast"),
        ("THROTTLE_BURST", "1.5"),
        ("API_KEYS", "key:fast:1"),
        ("API_KEYS", "key:5"),  # neither `key` nor `key:rate:burst`
        ("IMAGE_QUOTAS", "key:10"),
        ("IMAGE_QUOTAS", "key:ten:5"),
        ("POWERTOOLS_METRICS_DISABLED", "sometimes"),
    ],
)
def test_a_wrong_value_is_refused_with_the_variables_name(variable: str, value: str) -> None:
    with pytest.raises(SettingsError, match=variable):
        LocalCloudSettings.from_env({variable: value})


def test_the_local_visibility_timeout_and_expiry_reach_every_queue_and_bucket() -> None:
    import dataclasses

    from infra.topology import TOPOLOGY, Queue, Topology
    from localcloud.cloud import configured
    from localcloud.provision import queues

    @dataclasses.dataclass(frozen=True)
    class WithAnotherQueue(Topology):
        another_queue: Queue = dataclasses.field(default=Queue("another", "another-dlq", 30, 5))

    topology = WithAnotherQueue(**{field.name: getattr(TOPOLOGY, field.name) for field in dataclasses.fields(Topology)})
    config = LocalCloudConfig(visibility_timeout_s=5, upload_retention_days=9)
    changed = configured(topology, config)
    assert {field: queue.visibility_timeout_s for field, queue in queues(changed).items()} == {
        "images_queue": 5,
        "chunks_queue": 5,
        "webhooks_queue": 5,
        "another_queue": 5,
    }
    assert (changed.uploads_retention_days, changed.processed_retention_days) == (9, 365)
    assert configured(TOPOLOGY, LocalCloudConfig()) == TOPOLOGY
