"""The functions' settings (ips_runtime.settings): every variable typed and validated at cold start, refused with
its name, the defaults those the domain had, secrets by value or by Secrets Manager ARN."""

from __future__ import annotations

import boto3
import pytest
from moto import mock_aws

from ips.shared.context import RetryPolicy, Settings
from ips.shared.csv_input import CsvLimits
from ips.shared.imaging import ImageLimits
from ips.shared.quotas import ImageQuota
from ips_adapters.outbound import OutboundPolicy
from ips_runtime.adapters import Adapters
from ips_runtime.env_settings import SettingsError
from ips_runtime.settings import FunctionSettings

RESOURCES = {
    "ASSET_BASE_URL": "http://assets.invalid/assets",
    "UPLOADS_BUCKET": "uploads",
    "PROCESSED_BUCKET": "processed",
    "IMAGES_QUEUE_URL": "http://127.0.0.1:1/queue/images",
    "CHUNKS_QUEUE_URL": "http://127.0.0.1:1/queue/chunks",
    "WEBHOOKS_QUEUE_URL": "http://127.0.0.1:1/queue/webhooks",
    "REQUESTS_TABLE": "requests",
    "MONGODB_URI": "mongodb://127.0.0.1:1/",
}


def read(**variables: str) -> FunctionSettings:
    return FunctionSettings.from_env({**RESOURCES, **variables})


def test_defaults_are_what_the_hand_parsing_gave() -> None:
    """The values settings_from_env and outbound_policy_from_env used to fall back to, written out."""
    assert read().domain() == Settings(
        asset_base_url="http://assets.invalid/assets",
        webhook_secret=None,
        webhook_rotation_window_s=86_400,
        jpeg_quality=50,
        csv_limits=CsvLimits(max_bytes=4 * 1024 * 1024, max_rows=10_000, max_urls_per_row=50),
        presigned_csv_limits=CsvLimits(max_bytes=100 * 1024 * 1024, max_rows=200_000, max_urls_per_row=50),
        upload_expiry_s=900,
        output_url_expiry_s=900,
        chunk_images=1000,
        image_limits=ImageLimits(
            max_bytes=25 * 1024 * 1024, max_pixels=50_000_000, max_decode_seconds=10.0, max_encode_seconds=30.0
        ),
        max_receive_count=5,
        dead_letter_redrives=3,
        status_page_max_bytes=5 * 1024 * 1024 + 100,
        webhook_retry=RetryPolicy(attempts=8, first_delay=5.0, factor=4.0, max_delay=6 * 3600.0),
        webhook_timeout_s=10.0,
        output_retention_days=14,
        webhook_lease_seconds=60,
        deadline_base_s=3 * 3600,
        deadline_per_image_s=0.05,
        stall_after_s=900,
        upload_grace_s=300,
        webhook_resend_window_s=86_400,
        reconcile_interval_s=300,
        image_quota=ImageQuota(per_day=1_000_000, in_flight=500_000),
        tenant_image_quotas={},
        quota_work_unit_s=2.0,
    )
    assert read().outbound_policy() == OutboundPolicy(
        allowlist=frozenset(),
        max_redirects=5,
        connect_timeout=5.0,
        read_timeout=10.0,
        total_timeout=30.0,
        max_bytes=25 * 1024 * 1024,
        user_agent="ImageProcessingSystem/1.0 (+https://ips.invalid/fetching)",
    )
    settings = read()
    assert (settings.mongodb_database, settings.image_reuse, settings.fetch_per_host) == ("ips", True, 4)
    assert (settings.dead_letter_queue_urls, settings.ips_adapter_hook) == ((), None)


@pytest.mark.parametrize(
    ("variable", "value", "read_back", "expected"),
    [
        ("CSV_MAX_BYTES", "1000", lambda s: s.domain().csv_limits.max_bytes, 1000),
        ("CSV_MAX_ROWS", "7", lambda s: s.domain().csv_limits.max_rows, 7),
        ("CSV_MAX_URLS_PER_ROW", "3", lambda s: s.domain().presigned_csv_limits.max_urls_per_row, 3),
        ("PRESIGNED_CSV_MAX_BYTES", "200", lambda s: s.domain().presigned_csv_limits.max_bytes, 200),
        ("PRESIGNED_CSV_MAX_ROWS", "9", lambda s: s.domain().presigned_csv_limits.max_rows, 9),
        ("JPEG_QUALITY", "80", lambda s: s.domain().jpeg_quality, 80),
        ("CHUNK_IMAGES", "2", lambda s: s.domain().chunk_images, 2),
        ("DEAD_LETTER_REDRIVES", "0", lambda s: s.domain().dead_letter_redrives, 0),
        ("WEBHOOK_TIMEOUT_SECONDS", "2.5", lambda s: s.domain().webhook_timeout_s, 2.5),
        ("RECONCILE_INTERVAL_SECONDS", "3", lambda s: s.domain().reconcile_interval_s, 3),
        ("INGEST_FAILURES_QUEUE_URL", "http://q/i", lambda s: s.ingest_failures_queue_url, "http://q/i"),
        ("IMAGE_MAX_PIXELS", "100", lambda s: s.domain().image_limits.max_pixels, 100),
        ("IMAGE_MAX_DECODE_SECONDS", "2.5", lambda s: s.domain().image_limits.max_decode_seconds, 2.5),
        ("IMAGE_MAX_ENCODE_SECONDS", "12", lambda s: s.domain().image_limits.max_encode_seconds, 12),
        ("IMAGE_QUOTA_WORK_SECONDS", "0.5", lambda s: s.domain().quota_work_unit_s, 0.5),
        ("WEBHOOK_ATTEMPTS", "2", lambda s: s.domain().webhook_retry.attempts, 2),
        ("WEBHOOK_FIRST_DELAY", "0.05", lambda s: s.domain().webhook_retry.first_delay, 0.05),
        ("REQUEST_DEADLINE_PER_IMAGE_SECONDS", "0", lambda s: s.domain().deadline_per_image_s, 0),
        ("IMAGE_QUOTA_PER_DAY", "10", lambda s: s.domain().image_quota.per_day, 10),
        ("TENANT_IMAGE_QUOTAS", '{"k1": {"inFlight": 3}}', lambda s: s.domain().tenant_image_quotas["k1"],
         ImageQuota(per_day=1_000_000, in_flight=3)),
        ("IMAGE_REUSE", "off", lambda s: s.image_reuse, False),
        ("DEAD_LETTER_QUEUE_URLS", "http://q/a,,http://q/b", lambda s: s.dead_letter_queue_urls,
         ("http://q/a", "http://q/b")),
        ("FETCH_PER_HOST", "2", lambda s: s.fetch_per_host, 2),
        ("FETCH_CONTACT_URL", "https://operator.invalid/bots", lambda s: s.outbound_policy().user_agent,
         "ImageProcessingSystem/1.0 (+https://operator.invalid/bots)"),
        ("OUTBOUND_MAX_REDIRECTS", "0", lambda s: s.outbound_policy().max_redirects, 0),
        ("CSV_MAX_BYTES", "", lambda s: s.domain().csv_limits.max_bytes, CsvLimits.max_bytes),  # empty: unset
    ],
)  # fmt: skip
def test_each_variable_reaches_its_setting(variable, value, read_back, expected) -> None:
    assert read_back(read(**{variable: value})) == expected


def test_outbound_policy_from_the_environment() -> None:
    policy = read(
        OUTBOUND_ALLOWLIST="127.0.0.1:8080, localhost:9000,,[::1]:8443,Minio.Local.:443",
        OUTBOUND_TOTAL_TIMEOUT="12.5",
        IMAGE_MAX_BYTES="1000",  # also a download's byte cap
    ).outbound_policy()
    assert policy.allowlist == {("127.0.0.1", 8080), ("localhost", 9000), ("::1", 8443), ("minio.local", 443)}
    assert (policy.total_timeout, policy.max_bytes, policy.max_redirects) == (12.5, 1000, 5)


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("CSV_MAX_BYTES", "abc"),
        ("CSV_MAX_BYTES", "5.9"),  # not silently 5
        ("CSV_MAX_BYTES", "0"),
        ("CSV_MAX_ROWS", "-1"),
        ("JPEG_QUALITY", "101"),
        ("IMAGE_MAX_DECODE_SECONDS", "soon"),
        ("IMAGE_MAX_ENCODE_SECONDS", "0"),
        ("IMAGE_QUOTA_WORK_SECONDS", "-2"),
        ("WEBHOOK_FIRST_DELAY", "-1"),
        ("IMAGE_REUSE", "maybe"),
        ("TENANT_IMAGE_QUOTAS", "{not json"),
        ("TENANT_IMAGE_QUOTAS", '{"k1": {"perDay": "many"}}'),
        ("TENANT_IMAGE_QUOTAS", '{"k1": {"perday": 5}}'),  # a misspelt limit is not silently the default
        ("OUTBOUND_ALLOWLIST", "localhost"),
        ("OUTBOUND_ALLOWLIST", "localhost:http"),
        ("OUTBOUND_ALLOWLIST", ":8080"),
        ("OUTBOUND_ALLOWLIST", "localhost:0"),
        ("OUTBOUND_ALLOWLIST", "localhost:70000"),
        ("OUTBOUND_ALLOWLIST", "[::1]8080"),
        ("CHUNK_IMAGES", "0"),
        ("DEAD_LETTER_REDRIVES", "-1"),
        ("WEBHOOK_TIMEOUT_SECONDS", "0"),
        ("RECONCILE_INTERVAL_SECONDS", "0"),
        ("OUTBOUND_TOTAL_TIMEOUT", "0"),
        ("OUTBOUND_MAX_REDIRECTS", "-1"),
    ],
)
def test_a_wrong_value_is_refused_with_the_variables_name(variable, value) -> None:
    with pytest.raises(SettingsError, match=variable):
        read(**{variable: value})


def test_missing_resources_are_all_named() -> None:
    with pytest.raises(SettingsError) as refused:
        FunctionSettings.from_env({"MONGODB_URI": "mongodb://127.0.0.1:1/"})
    for variable in (
        "ASSET_BASE_URL",
        "UPLOADS_BUCKET",
        "PROCESSED_BUCKET",
        "IMAGES_QUEUE_URL",
        "CHUNKS_QUEUE_URL",
        "WEBHOOKS_QUEUE_URL",
        "REQUESTS_TABLE",
    ):
        assert f"{variable} must be set" in str(refused.value)
    without_mongodb = {name: value for name, value in RESOURCES.items() if name != "MONGODB_URI"}
    with pytest.raises(SettingsError, match="MONGODB_URI"):
        FunctionSettings.from_env(without_mongodb).mongodb_connection_uri()
    with pytest.raises(SettingsError, match="MONGODB_URI"):
        Adapters(without_mongodb).catalog  # noqa: B018 - the first function that connects


def test_a_wrong_value_fails_the_cold_start_before_any_client_is_built() -> None:
    with pytest.raises(SettingsError, match="CSV_MAX_BYTES='abc'"):
        Adapters({**RESOURCES, "CSV_MAX_BYTES": "abc"})


def test_the_process_environment_is_read_when_no_mapping_is_given(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {**RESOURCES, "CHUNK_IMAGES": "40"}.items():
        monkeypatch.setenv(name, value)
    assert FunctionSettings.from_env().domain().chunk_images == 40
    monkeypatch.setenv("CHUNK_IMAGES", "forty")
    with pytest.raises(SettingsError, match="CHUNK_IMAGES"):
        FunctionSettings.from_env()


def test_secrets_are_read_by_arn_from_secrets_manager(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, "testing")
    with mock_aws():
        secrets = boto3.client("secretsmanager")
        webhook = secrets.create_secret(Name="ips/webhook", SecretString="whsec_c2VjcmV0")["ARN"]
        mongodb = secrets.create_secret(Name="ips/atlas-uri", SecretString="mongodb://atlas.invalid/")["ARN"]
        variables = {name: value for name, value in RESOURCES.items() if name != "MONGODB_URI"}
        settings = FunctionSettings.from_env(
            {**variables, "WEBHOOK_SECRET_SECRET_ARN": webhook, "MONGODB_URI_SECRET_ARN": mongodb}
        )
        assert settings.domain().webhook_secret == "whsec_c2VjcmV0"
        assert settings.mongodb_connection_uri() == "mongodb://atlas.invalid/"
        # Given as itself (the local cloud), the value wins and Secrets Manager is not asked.
        given = FunctionSettings.from_env({**RESOURCES, "WEBHOOK_SECRET_SECRET_ARN": webhook, "WEBHOOK_SECRET": "x"})
        assert given.domain().webhook_secret == "x"
