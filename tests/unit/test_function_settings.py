"""The functions' settings (ips_runtime.settings): small parts, one model per function made of exactly the parts
it reads; every variable typed and validated at cold start, refused with its name, the defaults those the domain
had, secrets by value or by Secrets Manager ARN."""

from __future__ import annotations

import boto3
import pytest
from moto import mock_aws

from infra.topology import TOPOLOGY
from ips.completion.policy import RetryPolicy, WebhookPolicy
from ips.intake.policy import IntakePolicy
from ips.reconcile.policy import ReconcilePolicy
from ips.shared.csv_input import CsvLimits
from ips.shared.deadlines import DeadlinePolicy
from ips.shared.imaging import ImageLimits
from ips.shared.quotas import ImageQuota
from ips_adapters.outbound import OutboundPolicy
from ips_runtime.adapters import Adapters
from ips_runtime.env_settings import SettingsError
from ips_runtime.settings import (
    FUNCTIONS,
    CsvCaps,
    DeadLetterQueues,
    EveryFunction,
    ImageCaps,
    Intake,
    MongoDb,
    Outbound,
    OutputUrls,
    Processing,
    Quotas,
    Reconciling,
    RequestDefaults,
    ResendWindow,
    StatusFunction,
    StatusPages,
    UploadFunction,
    WebhookDelivery,
    WebhookSigning,
    parts,
)

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


def read(**variables: str) -> EveryFunction:
    return EveryFunction.from_env({**RESOURCES, **variables})


def intake(settings: EveryFunction) -> IntakePolicy:
    return settings.part(Intake).policy(settings.part(CsvCaps))


def reconciling(settings: EveryFunction) -> ReconcilePolicy:
    return settings.part(Reconciling).policy(settings.part(ResendWindow))


def test_defaults_are_what_the_hand_parsing_gave() -> None:
    """The values the one model used to fall back to, written out."""
    settings = read()
    assert intake(settings) == IntakePolicy(
        csv_limits=CsvLimits(max_bytes=4 * 1024 * 1024, max_rows=10_000, max_urls_per_row=50),
        presigned_csv_limits=CsvLimits(max_bytes=100 * 1024 * 1024, max_rows=200_000, max_urls_per_row=50),
        chunk_images=1000,
        upload_expiry_s=900,
        upload_grace_s=300,
        deadlines=DeadlinePolicy(base_s=3 * 3600, per_image_s=0.05),
    )
    assert reconciling(settings) == ReconcilePolicy(
        stall_after_s=900, dead_letter_redrives=3, lease_s=300, interval_s=300, webhook_resend_window_s=86_400
    )
    # The parts' defaults are the policies' own: built from an empty environment, each is its class's default.
    assert (intake(settings), reconciling(settings)) == (IntakePolicy(), ReconcilePolicy())
    assert settings.part(WebhookDelivery).policy(settings.part(ResendWindow)) == WebhookPolicy()
    assert settings.part(ImageCaps).limits == ImageLimits(
        max_bytes=25 * 1024 * 1024, max_pixels=50_000_000, max_decode_seconds=10.0, max_encode_seconds=30.0
    )
    assert (settings.part(Quotas).default, settings.part(Quotas).by_tenant) == (ImageQuota(1_000_000, 500_000), {})
    assert settings.part(Quotas).work_unit_s == 2.0
    delivery = settings.part(WebhookDelivery)
    assert delivery.retry == RetryPolicy(attempts=8, first_delay=5.0, factor=4.0, max_delay=6 * 3600.0)
    assert delivery.policy(settings.part(ResendWindow)) == WebhookPolicy(
        retry=RetryPolicy(), timeout_s=10.0, lease_s=60, resend_window_s=86_400
    )
    signing = settings.part(WebhookSigning)
    assert (signing.master(), signing.rotation_window_s) == (None, 86_400)
    processing = settings.part(Processing)
    assert (processing.max_receive_count, processing.reuse, processing.output_retention_days) == (5, True, 14)
    assert processing.per_host == 4
    assert (settings.part(OutputUrls).expiry_s, settings.part(StatusPages).max_bytes) == (900, 5 * 1024 * 1024 + 100)
    assert settings.part(RequestDefaults).jpeg_quality == 50
    assert settings.part(Outbound).policy() == OutboundPolicy(
        allowlist=frozenset(),
        max_redirects=5,
        connect_timeout=5.0,
        read_timeout=10.0,
        total_timeout=30.0,
        max_bytes=25 * 1024 * 1024,
        user_agent="ImageProcessingSystem/1.0 (+https://ips.invalid/fetching)",
    )
    assert settings.part(MongoDb).mongodb_database == "ips"
    assert settings.part(DeadLetterQueues).dead_letter_queue_urls == ()


@pytest.mark.parametrize(
    ("variable", "value", "read_back", "expected"),
    [
        ("CSV_MAX_BYTES", "1000", lambda s: s.part(CsvCaps).direct.max_bytes, 1000),
        ("CSV_MAX_ROWS", "7", lambda s: s.part(CsvCaps).direct.max_rows, 7),
        ("CSV_MAX_URLS_PER_ROW", "3", lambda s: s.part(CsvCaps).presigned.max_urls_per_row, 3),
        ("PRESIGNED_CSV_MAX_BYTES", "200", lambda s: s.part(CsvCaps).presigned.max_bytes, 200),
        ("PRESIGNED_CSV_MAX_ROWS", "9", lambda s: s.part(CsvCaps).presigned.max_rows, 9),
        ("JPEG_QUALITY", "80", lambda s: s.part(RequestDefaults).jpeg_quality, 80),
        ("CHUNK_IMAGES", "2", lambda s: intake(s).chunk_images, 2),
        ("DEAD_LETTER_REDRIVES", "0", lambda s: reconciling(s).dead_letter_redrives, 0),
        ("WEBHOOK_TIMEOUT_SECONDS", "2.5", lambda s: s.part(WebhookDelivery).timeout_s, 2.5),
        ("RECONCILE_INTERVAL_SECONDS", "3", lambda s: reconciling(s).interval_s, 3),
        ("INGEST_FAILURES_QUEUE_URL", "http://q/i", lambda s: s.part(DeadLetterQueues).ingest_failures_queue_url, "http://q/i"),
        ("IMAGE_MAX_PIXELS", "100", lambda s: s.part(ImageCaps).limits.max_pixels, 100),
        ("IMAGE_MAX_DECODE_SECONDS", "2.5", lambda s: s.part(ImageCaps).limits.max_decode_seconds, 2.5),
        ("IMAGE_MAX_ENCODE_SECONDS", "12", lambda s: s.part(ImageCaps).limits.max_encode_seconds, 12),
        ("IMAGE_QUOTA_WORK_SECONDS", "0.5", lambda s: s.part(Quotas).work_unit_s, 0.5),
        ("WEBHOOK_ATTEMPTS", "2", lambda s: s.part(WebhookDelivery).retry.attempts, 2),
        ("WEBHOOK_FIRST_DELAY", "0.05", lambda s: s.part(WebhookDelivery).retry.first_delay, 0.05),
        ("REQUEST_DEADLINE_PER_IMAGE_SECONDS", "0", lambda s: intake(s).deadlines.per_image_s, 0),
        ("REQUEST_DEADLINE_SECONDS", "60", lambda s: intake(s).deadlines.base_s, 60),
        ("UPLOAD_GRACE_SECONDS", "1", lambda s: intake(s).upload_grace_s, 1),
        ("RECONCILE_LEASE_SECONDS", "7", lambda s: reconciling(s).lease_s, 7),
        ("WEBHOOK_RESEND_WINDOW_SECONDS", "60", lambda s: (reconciling(s).webhook_resend_window_s,
         s.part(WebhookDelivery).policy(s.part(ResendWindow)).resend_window_s), (60, 60)),
        ("IMAGE_QUOTA_PER_DAY", "10", lambda s: s.part(Quotas).default.per_day, 10),
        ("TENANT_IMAGE_QUOTAS", '{"k1": {"inFlight": 3}}', lambda s: s.part(Quotas).by_tenant["k1"],
         ImageQuota(per_day=1_000_000, in_flight=3)),
        ("IMAGE_REUSE", "off", lambda s: s.part(Processing).reuse, False),
        ("DEAD_LETTER_QUEUE_URLS", "http://q/a,,http://q/b", lambda s: s.part(DeadLetterQueues).dead_letter_queue_urls,
         ("http://q/a", "http://q/b")),
        ("FETCH_PER_HOST", "2", lambda s: s.part(Processing).per_host, 2),
        ("FETCH_CONTACT_URL", "https://operator.invalid/bots", lambda s: s.part(Outbound).policy().user_agent,
         "ImageProcessingSystem/1.0 (+https://operator.invalid/bots)"),
        ("OUTBOUND_MAX_REDIRECTS", "0", lambda s: s.part(Outbound).policy().max_redirects, 0),
        ("CSV_MAX_BYTES", "", lambda s: s.part(CsvCaps).direct.max_bytes, CsvLimits.max_bytes),  # empty: unset
    ],
)  # fmt: skip
def test_each_variable_reaches_its_setting(variable, value, read_back, expected) -> None:
    assert read_back(read(**{variable: value})) == expected


def test_outbound_policy_from_the_environment() -> None:
    settings = read(
        OUTBOUND_ALLOWLIST="127.0.0.1:8080, localhost:9000,,[::1]:8443,Minio.Local.:443",
        OUTBOUND_TOTAL_TIMEOUT="12.5",
    )
    policy = settings.part(Outbound).policy(max_bytes=1000)  # the process function's: the image byte cap
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
        EveryFunction.from_env({"MONGODB_URI": "mongodb://127.0.0.1:1/"})
    for variable in (
        "ASSET_BASE_URL",
        "UPLOADS_BUCKET",
        "PROCESSED_BUCKET",
        "IMAGES_QUEUE_URL",
        "CHUNKS_QUEUE_URL",
        "WEBHOOKS_QUEUE_URL",
        "REQUESTS_TABLE",
    ):
        assert f"{variable} must be set" in refused.value.problems
    without_mongodb = {name: value for name, value in RESOURCES.items() if name != "MONGODB_URI"}
    with pytest.raises(SettingsError, match="MONGODB_URI"):
        EveryFunction.from_env(without_mongodb).part(MongoDb).connection_uri()
    with pytest.raises(SettingsError, match="MONGODB_URI"):
        Adapters.from_env(env=without_mongodb).catalog  # noqa: B018 - the first function that connects


def test_a_wrong_value_fails_the_cold_start_before_any_client_is_built() -> None:
    with pytest.raises(SettingsError, match="CSV_MAX_BYTES='abc'"):
        Adapters.from_env(env={**RESOURCES, "CSV_MAX_BYTES": "abc"})


def test_the_process_environment_is_read_when_no_mapping_is_given(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {**RESOURCES, "CHUNK_IMAGES": "40"}.items():
        monkeypatch.setenv(name, value)
    assert intake(EveryFunction.from_env()).chunk_images == 40
    monkeypatch.setenv("CHUNK_IMAGES", "forty")
    with pytest.raises(SettingsError, match="CHUNK_IMAGES"):
        EveryFunction.from_env()


def test_secrets_are_read_by_arn_from_secrets_manager(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, "testing")
    with mock_aws():
        secrets = boto3.client("secretsmanager")
        webhook = secrets.create_secret(Name="ips/webhook", SecretString="whsec_c2VjcmV0")["ARN"]
        mongodb = secrets.create_secret(Name="ips/atlas-uri", SecretString="mongodb://atlas.invalid/")["ARN"]
        variables = {name: value for name, value in RESOURCES.items() if name != "MONGODB_URI"}
        settings = EveryFunction.from_env(
            {**variables, "WEBHOOK_SECRET_SECRET_ARN": webhook, "MONGODB_URI_SECRET_ARN": mongodb}
        )
        assert settings.part(WebhookSigning).master() == "whsec_c2VjcmV0"
        assert settings.part(MongoDb).connection_uri() == "mongodb://atlas.invalid/"
        # Given as itself (the local cloud), the value wins and Secrets Manager is not asked.
        given = EveryFunction.from_env({**RESOURCES, "WEBHOOK_SECRET_SECRET_ARN": webhook, "WEBHOOK_SECRET": "x"})
        assert given.part(WebhookSigning).master() == "x"


# -- one model per function ----------------------------------------------------------------------------------


def test_there_is_a_model_for_every_function_of_the_topology() -> None:
    assert set(FUNCTIONS) == {spec.name for spec in TOPOLOGY.functions}
    assert set(EveryFunction.parts().values()) == {
        part for model in FUNCTIONS.values() for part in model.parts().values()
    }


def test_each_variable_belongs_to_one_part() -> None:
    owners: dict[str, list[str]] = {}
    for part in parts():
        for variable in part.variables():
            owners.setdefault(variable, []).append(part.__name__)
    assert {variable: names for variable, names in owners.items() if len(names) > 1} == {}


def test_a_function_reads_only_its_own_parts() -> None:
    """The status function does not read the CSV limits: a malformed one does not stop it, and it stops the
    upload function, which reads them."""
    environment = {**RESOURCES, "CSV_MAX_BYTES": "abc", "STATUS_PAGE_MAX_BYTES": "2000"}
    assert StatusFunction.from_env(environment).part(StatusPages).max_bytes == 2000
    assert "CSV_MAX_BYTES" not in StatusFunction.variables()
    with pytest.raises(SettingsError, match="CSV_MAX_BYTES='abc'"):
        UploadFunction.from_env(environment)
    with pytest.raises(LookupError, match="StatusFunction has no CsvCaps"):
        StatusFunction.from_env(environment).part(CsvCaps)


def test_a_function_model_names_every_problem_of_every_part() -> None:
    with pytest.raises(SettingsError) as refused:
        UploadFunction.from_env({"CSV_MAX_BYTES": "abc", "JPEG_QUALITY": "0"})
    problems = refused.value.problems
    assert "UPLOADS_BUCKET must be set" in problems and "REQUESTS_TABLE must be set" in problems
    assert any(p.startswith("CSV_MAX_BYTES='abc'") for p in problems)
    assert any(p.startswith("JPEG_QUALITY=") for p in problems)
    assert "ASSET_BASE_URL must be set" not in problems  # the process function's, not the upload's
