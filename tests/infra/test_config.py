"""Deployment parameters: CDK context or IPS_* variables, safe defaults, and what they change in the template."""

from __future__ import annotations

import json

import pytest
from aws_cdk import Stack
from aws_cdk import aws_lambda as lambda_
from aws_cdk.assertions import Match, Template

from infra.config import DeploymentConfig
from infra.constructs.secrets import Secrets
from infra.topology import TOPOLOGY
from ips_runtime.settings import FUNCTIONS, FunctionSettings, StatusFunction, StatusPages, WebhookSigning


def context_of(values):
    return values.get


def test_defaults_need_nothing_and_keep_the_topology():
    config = DeploymentConfig.from_context(context_of({}), environ={})
    assert config == DeploymentConfig()
    assert config.apply(TOPOLOGY) == TOPOLOGY


def test_defaults_are_what_the_dataclass_had():
    config = DeploymentConfig.from_context(context_of({}), environ={})
    assert (config.stage, config.mongodb_secret, config.mongodb_database) == (None, None, "ips")
    assert (config.throttle_rate, config.throttle_burst, config.quota_per_day) == (None, None, None)
    assert (config.stage_throttle_rate, config.stage_throttle_burst, config.log_retention_days) == (100.0, 200, 30)
    assert (config.image_quota_per_day, config.images_in_flight, config.tenant_image_quotas) == (None, None, None)
    assert (config.process_concurrency, config.upload_retention_days, config.processed_retention_days) == (
        None,
        None,
        None,
    )
    assert config.alarm_email is None


def test_a_bad_environment_variable_is_named_too():
    with pytest.raises(ValueError, match="IPS_PROCESS_CONCURRENCY"):
        DeploymentConfig.from_context(context_of({}), environ={"IPS_PROCESS_CONCURRENCY": "many"})


def test_context_wins_over_the_environment_and_values_are_typed():
    config = DeploymentConfig.from_context(
        context_of({"stage": "prod", "throttleRate": "50", "quotaPerDay": 5000}),
        environ={"IPS_STAGE": "ignored", "IPS_THROTTLE_BURST": "80", "IPS_MONGODB_SECRET": "ips/atlas-uri"},
    )
    assert (config.stage, config.throttle_rate, config.throttle_burst, config.quota_per_day) == ("prod", 50.0, 80, 5000)
    assert config.mongodb_secret == "ips/atlas-uri"
    topology = config.apply(TOPOLOGY)
    assert topology.stage == "prod"
    assert (topology.usage_plan.rate_per_second, topology.usage_plan.burst) == (50.0, 80)
    assert topology.usage_plan.quota_per_day == 5000


@pytest.mark.parametrize(
    ("values", "problem"),
    [
        ({"logRetentionDays": "10"}, "logRetentionDays"),
        ({"uploadRetentionDays": "0"}, "uploadRetentionDays"),
        ({"processedRetentionDays": "0"}, "processedRetentionDays"),
        ({"tenantImageQuotas": "{not json"}, "tenantImageQuotas"),
        ({"tenantImageQuotas": '["a"]'}, "tenantImageQuotas"),
        ({"stage": "v1/prod"}, "stage"),
        ({"processConcurrency": "1"}, "processConcurrency"),
        ({"processConcurrency": "1001"}, "processConcurrency"),
        ({"throttleRate": "fast"}, "throttleRate"),
        ({"throttleBurst": "5.9"}, "throttleBurst"),  # not silently 5
        ({"quotaPerDay": "lots"}, "quotaPerDay"),
        ({"tenantImageQuotas": '{"k": {"perDay": "many"}}'}, "tenantImageQuotas"),  # what the functions refuse
    ],
)
def test_bad_values_are_refused_by_name(values, problem):
    with pytest.raises(ValueError, match=problem):
        DeploymentConfig.from_context(context_of(values), environ={})


@pytest.mark.parametrize("concurrency", [20, 100, 300])
def test_process_concurrency_is_a_deploy_parameter(concurrency):
    """docs/performance.md sizes a 1,000,000-image catalogue at these three."""
    topology = DeploymentConfig.from_context(context_of({"processConcurrency": str(concurrency)}), environ={}).apply(
        TOPOLOGY
    )
    assert topology.function(topology.queue_source.function).reserved_concurrency == concurrency


def test_parameters_reach_the_template(synth):
    synthesized = synth(
        context={
            "stage": "prod",
            "mongodbSecret": "ips/atlas-uri",
            "throttleRate": "5",
            "throttleBurst": "10",
            "quotaPerDay": "1000",
            "stageThrottleRate": "50",
            "processConcurrency": "8",
            "uploadRetentionDays": "7",
            "processedRetentionDays": "60",
            "imageQuotaPerDay": "5000",
            "imagesInFlight": "700",
            "tenantImageQuotas": '{"abc123": {"perDay": 10, "inFlight": 5}}',
            "logRetentionDays": "90",
            "alarmEmail": "ops@example.com",
        }
    )
    template = synthesized.template
    template.has_resource_properties("AWS::ApiGateway::Stage", {"StageName": "prod"})
    template.has_resource_properties(
        "AWS::ApiGateway::UsagePlan",
        {"Throttle": {"RateLimit": 5, "BurstLimit": 10}, "Quota": {"Limit": 1000, "Period": "DAY"}},
    )
    process = synthesized.resources[synthesized.function_id(TOPOLOGY.queue_source.function)]["Properties"]
    assert process["ReservedConcurrentExecutions"] == 8
    template.has_resource_properties("AWS::Lambda::EventSourceMapping", {"ScalingConfig": {"MaximumConcurrency": 8}})
    for log_group in synthesized.of_type("AWS::Logs::LogGroup").values():
        assert log_group["Properties"]["RetentionInDays"] == 90
    template.has_resource_properties("AWS::SNS::Subscription", {"Protocol": "email", "Endpoint": "ops@example.com"})
    # The Atlas URI is imported by name: no secret of its own, the name's ARN (any suffix) is what is granted.
    assert len(synthesized.of_type("AWS::SecretsManager::Secret")) == 2
    policies = json.dumps(synthesized.of_type("AWS::IAM::Policy"))
    assert ":secret:ips/atlas-uri-??????" in policies
    uploads = next(b for lid, b in synthesized.of_type("AWS::S3::Bucket").items() if lid.startswith("StorageUploads"))
    assert [rule.get("ExpirationInDays") for rule in uploads["Properties"]["LifecycleConfiguration"]["Rules"]] == [7]
    processed = next(b for lid, b in synthesized.of_type("AWS::S3::Bucket").items() if lid.startswith("StorageProc"))
    assert [rule.get("ExpirationInDays") for rule in processed["Properties"]["LifecycleConfiguration"]["Rules"]] == [60]
    for spec in TOPOLOGY.functions:
        if "IMAGES_IN_FLIGHT" not in FUNCTIONS[spec.name].variables():
            continue  # neither reserves nor releases images
        variables = synthesized.resources[synthesized.function_id(spec.name)]["Properties"]["Environment"]["Variables"]
        assert variables["IMAGE_QUOTA_PER_DAY"] == "5000" and variables["IMAGES_IN_FLIGHT"] == "700"
        assert json.loads(variables["TENANT_IMAGE_QUOTAS"]) == {"abc123": {"perDay": 10, "inFlight": 5}}


def reader(stack: Stack) -> lambda_.Function:
    """A bare function to grant secrets to."""
    return lambda_.Function(
        stack,
        "Reader",
        runtime=lambda_.Runtime.PYTHON_3_12,
        handler="handler.lambda_handler",
        code=lambda_.Code.from_inline("def lambda_handler(event, context): pass"),
    )


def test_the_atlas_secret_can_be_imported_by_arn():
    arn = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:ips/atlas-uri-AbCdEf"
    stack = Stack()
    secrets = Secrets(stack, "Secrets", mongodb_secret=arn)
    function = reader(stack)
    secrets.grant(function, StatusFunction)  # reads MongoDB, signs nothing
    template = Template.from_stack(stack)
    template.resource_count_is("AWS::SecretsManager::Secret", 2)  # the webhook's only
    assert secrets.environment()["MONGODB_URI_SECRET_ARN"] == arn  # what a function reading MongoDB is given
    template.has_resource_properties(
        "AWS::IAM::Policy",
        {
            "PolicyDocument": {
                "Statement": Match.array_with(
                    [{"Action": "secretsmanager:GetSecretValue", "Effect": "Allow", "Resource": arn}]
                )
            }
        },
    )


class SignsOnly(FunctionSettings):
    signing: WebhookSigning


class ReadsNoSecret(FunctionSettings):
    pages: StatusPages


@pytest.mark.parametrize(
    ("model", "readable"),
    [(SignsOnly, {"WebhookSigningSecret"}), (StatusFunction, {"MongoDbUri"}), (ReadsNoSecret, set())],
)
def test_a_function_is_granted_the_secrets_its_settings_model_reads_and_no_other(model, readable):
    """Derived from the model, never from a list kept beside it: a model without MongoDB gets no grant on its URI."""
    stack = Stack()
    secrets = Secrets(stack, "Secrets", mongodb_secret=None)
    function = reader(stack)
    secrets.grant(function, model)
    granted = set()
    for policy in Template.from_stack(stack).find_resources("AWS::IAM::Policy").values():
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            if statement["Action"] == "secretsmanager:GetSecretValue":
                resources = (
                    statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
                )
                granted.update(resource["Ref"] for resource in resources)
    assert {name for name in ("WebhookSigningSecret", "MongoDbUri") if any(name in lid for lid in granted)} == readable
    assert len(granted) == len(readable)
