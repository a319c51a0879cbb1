"""The deployed stack holds every invariant of the topology and of the production checklist."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from aws_cdk.assertions import Match

from infra.constructs.api import gateway_response_body
from infra.topology import TOPOLOGY
from ips.intake.service import INCOMING_PREFIX
from ips.shared.imaging import ImageLimits
from ips_adapters.dynamodb import COMPLETION_FILTER, TTL_ATTRIBUTE
from ips_runtime.settings import FUNCTIONS

RESOURCE_NAMES = (
    "UPLOADS_BUCKET",
    "PROCESSED_BUCKET",
    "IMAGES_QUEUE_URL",
    "CHUNKS_QUEUE_URL",
    "WEBHOOKS_QUEUE_URL",
    "REQUESTS_TABLE",
    "ASSET_BASE_URL",
)


def ref(logical_id):
    return {"Ref": logical_id}


def arn_of(logical_id):
    return {"Fn::GetAtt": [logical_id, "Arn"]}


def one(resources):
    assert len(resources) == 1, list(resources)
    return next(iter(resources.items()))


def test_every_topology_function_is_deployed_as_declared(synthesized):
    functions = synthesized.of_type("AWS::Lambda::Function")
    cdk_own = ("BucketNotificationsHandler", "CustomCDKBucketDeployment")  # CDK's deploy-time helpers
    ours = {lid: f for lid, f in functions.items() if not lid.startswith(cdk_own)}
    assert len(ours) == len(TOPOLOGY.functions)
    for spec in TOPOLOGY.functions:
        properties = functions[synthesized.function_id(spec.name)]["Properties"]
        assert properties["Handler"] == spec.handler
        assert (properties["Runtime"], properties["Architectures"]) == ("python3.12", ["x86_64"])
        assert (properties["MemorySize"], properties["Timeout"]) == (spec.memory_mb, spec.timeout_s)
        assert properties.get("ReservedConcurrentExecutions") == spec.reserved_concurrency
        assert properties["TracingConfig"] == {"Mode": "Active"}
        assert len(properties["Layers"]) == 2  # dependencies + domain
        assert properties["LoggingConfig"]["LogGroup"]["Ref"] in synthesized.of_type("AWS::Logs::LogGroup")


def test_the_domain_layer_is_the_domain_adapters_and_wiring_without_the_fakes(synthesized):
    """What the domain layer deploys is layers/domain as it is, less every use case's fakes.py (test code) and the
    bytecode caches: so the layer holds the use cases, the adapters and the roots, and no fake at all."""
    layer = synthesized.stack.node.find_child("Functions").domain_layer.node.default_child
    key = synthesized.resources[synthesized.stack.get_logical_id(layer)]["Properties"]["Content"]["S3Key"]
    staged = synthesized.outdir / f"asset.{key.removesuffix('.zip')}"
    deployed = {path.relative_to(staged).as_posix() for path in staged.rglob("*.py")}
    source = Path(__file__).resolve().parents[2] / "layers" / "domain"
    fakes = {path.relative_to(source).as_posix() for path in source.rglob("fakes.py")}
    assert len(fakes) == 7  # the shared kernel's and each use case's
    assert (
        deployed
        == {path.relative_to(source).as_posix() for path in source.rglob("*.py") if "__pycache__" not in path.parts}
        - fakes
    )
    assert not {path for path in deployed if path.endswith("fakes.py")}
    assert {"python/ips/processing/service.py", "python/ips_adapters/aws.py", "python/ips_runtime/roots.py"} <= deployed


def environment_of(synthesized, function):
    return synthesized.resources[synthesized.function_id(function)]["Properties"]["Environment"]["Variables"]


def test_each_function_is_given_exactly_the_variables_its_settings_model_reads(synthesized):
    """No variable a function does not read (none of another function's resources or secrets' ARNs), every one
    it must have; besides them only powertools' own."""
    for spec in TOPOLOGY.functions:
        model = FUNCTIONS[spec.name]
        variables = environment_of(synthesized, spec.name)
        read = {name for name in variables if not name.startswith("POWERTOOLS_")}
        assert read <= set(model.variables()), spec.name
        assert {name for name, required in model.variables().items() if required} <= read, spec.name
        assert variables["POWERTOOLS_SERVICE_NAME"] == spec.name
    assert "CSV_MAX_BYTES" not in environment_of(synthesized, "status")
    assert "ASSET_BASE_URL" not in environment_of(synthesized, "upload")


# A secret's ARN variable -> the logical id prefix of the secret it names.
SECRET_ARN_VARIABLES = {
    "MONGODB_URI_SECRET_ARN": "SecretsMongoDbUri",
    "WEBHOOK_SECRET_SECRET_ARN": "SecretsWebhookSigning",
}


def secrets_readable(synthesized, function):
    """The logical ids of the secrets the function's role may GetSecretValue on."""
    role = synthesized.resources[synthesized.function_id(function)]["Properties"]["Role"]["Fn::GetAtt"][0]
    readable = set()
    for policy in synthesized.of_type("AWS::IAM::Policy").values():
        if {"Ref": role} not in policy["Properties"]["Roles"]:
            continue
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
            if "secretsmanager:GetSecretValue" in actions:
                resources = (
                    statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
                )
                readable.update(resource["Ref"] for resource in resources)
    return readable


def test_a_function_may_read_exactly_the_secrets_whose_arn_its_settings_model_reads(synthesized):
    """The grants follow from the models, as the environments do: a model that reads a secret's ARN may read that
    secret, no other function may (a secret added to a model is granted with it, one removed is revoked)."""
    for spec in TOPOLOGY.functions:
        expected = {
            prefix for variable, prefix in SECRET_ARN_VARIABLES.items() if variable in FUNCTIONS[spec.name].variables()
        }
        readable = secrets_readable(synthesized, spec.name)
        assert {prefix for prefix in SECRET_ARN_VARIABLES.values() for lid in readable if lid.startswith(prefix)} == (
            expected
        ), spec.name
        assert all(lid.startswith(tuple(SECRET_ARN_VARIABLES.values())) for lid in readable), spec.name
        assert set(environment_of(synthesized, spec.name)) & set(SECRET_ARN_VARIABLES) == {
            variable for variable in SECRET_ARN_VARIABLES if variable in FUNCTIONS[spec.name].variables()
        }


def test_functions_find_resources_by_name_and_secrets_by_arn_only(synthesized):
    distribution_id, _ = one(synthesized.of_type("AWS::CloudFront::Distribution"))
    for spec in TOPOLOGY.functions:
        variables = environment_of(synthesized, spec.name)
        model = FUNCTIONS[spec.name].variables()
        assert {name for name in RESOURCE_NAMES if name in model} <= set(variables)
        assert {k: v for k, v in variables.items() if k in TOPOLOGY.function_environment()} == {
            k: v for k, v in TOPOLOGY.function_environment().items() if k in model or k.startswith("POWERTOOLS_")
        }
        # Output URLs use the CloudFront domain.
        if "ASSET_BASE_URL" in model:
            assert variables["ASSET_BASE_URL"] == {
                "Fn::Join": ["", ["https://", {"Fn::GetAtt": [distribution_id, "DomainName"]}]]
            }
        # Only the reconciler is told where the dead letters are: every DLQ with a redrive source (images, chunks,
        # webhooks), and the ingest function's on-failure queue.
        dead_letters = variables.get("DEAD_LETTER_QUEUE_URLS")
        reconciler = spec.name == TOPOLOGY.reconcile_schedule.function
        assert (dead_letters is not None) == reconciler == ("INGEST_FAILURES_QUEUE_URL" in variables)
        if dead_letters is not None:
            named = {part["Ref"] for part in dead_letters["Fn::Join"][1] if isinstance(part, dict)}
            queues = [q["Properties"] for q in synthesized.of_type("AWS::SQS::Queue").values()]
            redriven = {
                q["RedrivePolicy"]["deadLetterTargetArn"]["Fn::GetAtt"][0] for q in queues if "RedrivePolicy" in q
            }
            assert named == redriven and len(named) == 3
            (invoke_config,) = [  # ingest's (the reconciler has one too: no asynchronous retries)
                c
                for c in synthesized.of_type("AWS::Lambda::EventInvokeConfig").values()
                if "DestinationConfig" in c["Properties"]
            ]
            on_failure = invoke_config["Properties"]["DestinationConfig"]["OnFailure"]["Destination"]
            assert variables["INGEST_FAILURES_QUEUE_URL"] == ref(on_failure["Fn::GetAtt"][0])
        # Secrets never travel as values: only the ARNs, and the webhook secret only where webhooks are signed
        # (the webhook function) or the secret is handed out (the secret route): not notify, not the reconciler.
        assert "MONGODB_URI" not in variables and "WEBHOOK_SECRET" not in variables
        assert "MONGODB_URI_SECRET_ARN" in variables
        assert ("WEBHOOK_SECRET_SECRET_ARN" in variables) == (spec.name in ("webhook", "secret"))


def test_secrets_are_generated_or_referenced_never_written_in_the_template(synthesized):
    secrets = synthesized.of_type("AWS::SecretsManager::Secret")
    assert len(secrets) == 3  # the Atlas URI (to fill in), the webhook signing key and the secret made from it
    for secret in secrets.values():
        properties = secret["Properties"]
        if "SecretString" in properties:
            rendered = json.dumps(properties["SecretString"])
            assert "{{resolve:secretsmanager:" in rendered and rendered.startswith('{"Fn::Join": ["", ["whsec_')
        else:
            assert "GenerateSecretString" in properties


@pytest.mark.parametrize(
    ("source", "queue", "logical_id"),
    [
        (TOPOLOGY.queue_source, TOPOLOGY.images_queue, "PipelineImages"),
        (TOPOLOGY.chunk_source, TOPOLOGY.chunks_queue, "FanoutChunks"),
        (TOPOLOGY.webhook_source, TOPOLOGY.webhooks_queue, "WebhooksQueue"),
    ],
    ids=["images-to-process", "chunks-to-expand", "wake-ups-to-webhook"],
)
def test_each_queue_feeds_its_function_with_partial_batch_responses(synthesized, template, source, queue, logical_id):
    function = TOPOLOGY.function(source.function)
    template.has_resource_properties(
        "AWS::Lambda::EventSourceMapping",
        {
            "FunctionName": ref(synthesized.function_id(function.name)),
            "EventSourceArn": {"Fn::GetAtt": [Match.string_like_regexp(f"^{logical_id}"), "Arn"]},
            "BatchSize": source.batch_size,
            # no window (Lambda's default, so CDK leaves it out) for the chunks: one message is a whole batch
            "MaximumBatchingWindowInSeconds": source.max_batching_window_s or Match.absent(),
            "FunctionResponseTypes": ["ReportBatchItemFailures"],
            "ScalingConfig": {"MaximumConcurrency": function.reserved_concurrency},  # never more than MongoDB allows
            "FilterCriteria": Match.absent(),
        },
    )
    queues = synthesized.of_type("AWS::SQS::Queue")
    (properties,) = [
        q["Properties"] for lid, q in queues.items() if lid.startswith(logical_id) and "DeadLetters" not in lid
    ]
    assert properties["VisibilityTimeout"] >= 6 * function.timeout_s
    assert properties["VisibilityTimeout"] == queue.visibility_timeout_s
    assert properties["RedrivePolicy"]["maxReceiveCount"] == queue.max_receive_count
    assert properties["RedrivePolicy"]["deadLetterTargetArn"]["Fn::GetAtt"][0] in queues


def test_every_queue_is_encrypted_and_keeps_messages_14_days(synthesized):
    queues = synthesized.of_type("AWS::SQS::Queue")
    assert len([q for q in queues.values() if "RedrivePolicy" in q["Properties"]]) == 3  # images, chunks, webhooks
    for properties in (q["Properties"] for q in queues.values()):
        assert properties["SqsManagedSseEnabled"] is True
        # Every queue keeps its messages for SQS's maximum: work waits out an outage instead of vanishing.
        assert properties["MessageRetentionPeriod"] == 14 * 86_400


def test_chunks_are_expanded_one_per_invocation_and_sized_to_fit_it():
    assert TOPOLOGY.chunk_source.batch_size == 1
    expand = TOPOLOGY.function(TOPOLOGY.chunk_source.function)
    # The expansion stops with this much time left (then re-queues the rest): less than the function's timeout.
    from functions.expand.handler import STOP_RESERVE_S

    assert 0 < STOP_RESERVE_S < expand.timeout_s / 4


def test_process_has_memory_for_the_largest_allowed_image():
    # decoded RGBA, a converted copy and the encoder's buffer, plus the runtime and libraries
    needed_mb = 3 * 4 * ImageLimits.max_pixels / 2**20 + 256
    assert TOPOLOGY.function(TOPOLOGY.queue_source.function).memory_mb >= needed_mb


def test_stream_reaches_notify_only_through_the_completion_filter(synthesized):
    source = TOPOLOGY.stream_source
    _, mapping = one(
        {
            lid: r
            for lid, r in synthesized.of_type("AWS::Lambda::EventSourceMapping").items()
            if "StartingPosition" in r["Properties"]
        }
    )
    properties = mapping["Properties"]
    assert properties["FunctionName"] == ref(synthesized.function_id(source.function))
    assert [json.loads(f["Pattern"]) for f in properties["FilterCriteria"]["Filters"]] == [COMPLETION_FILTER]
    assert source.filter_pattern == COMPLETION_FILTER
    assert properties["BisectBatchOnFunctionError"] is True
    assert properties["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert properties["MaximumRetryAttempts"] == source.retry_attempts
    assert properties["BatchSize"] == source.batch_size
    failures = properties["DestinationConfig"]["OnFailure"]["Destination"]["Fn::GetAtt"][0]
    assert synthesized.resources[failures]["Type"] == "AWS::SQS::Queue"
    assert properties["EventSourceArn"]["Fn::GetAtt"][1] == "StreamArn"


def test_the_reconciler_runs_on_its_rate_schedule(synthesized):
    schedule = TOPOLOGY.reconcile_schedule
    _, rule = one(synthesized.of_type("AWS::Events::Rule"))
    properties = rule["Properties"]
    assert properties["ScheduleExpression"] == f"rate({schedule.rate_minutes} minutes)"
    [target] = properties["Targets"]
    assert target["Arn"] == arn_of(synthesized.function_id(schedule.function))
    permissions = [
        p["Properties"]
        for p in synthesized.of_type("AWS::Lambda::Permission").values()
        if p["Properties"]["Principal"] == "events.amazonaws.com"
    ]
    assert [p["FunctionName"] for p in permissions] == [arn_of(synthesized.function_id(schedule.function))]


def test_a_webhook_claim_outlives_an_attempt_and_ends_before_the_wake_up_comes_back():
    """One attempt (one POST within its timeout) fits the webhook function; the claim outlives the function, so
    a live sender is never doubled, and ends before the webhook queue's visibility timeout, so the redelivery of
    a sender that died mid-POST finds it expired."""
    from ips.completion.policy import WebhookPolicy

    lease = int(TOPOLOGY.environment["WEBHOOK_LEASE_SECONDS"])
    webhook = TOPOLOGY.function(TOPOLOGY.webhook_source.function)
    assert WebhookPolicy.timeout_s < webhook.timeout_s < lease < TOPOLOGY.webhooks_queue.visibility_timeout_s
    assert TOPOLOGY.webhook_source.batch_size == 1  # a receiver that never answers holds one wake-up, no other


def test_notify_only_queues_webhooks_and_the_webhook_function_alone_sends_them(synthesized, template):
    """The new queue, its function and its grants: notify (first wake-ups), the webhook function (the next ones)
    and the reconciler (lost and dead ones) may send to it; only the webhook function reads it (its event
    source) and holds the signing secret; only the reconciler drains its DLQ."""
    queue_id = next(lid for lid in synthesized.of_type("AWS::SQS::Queue") if lid.startswith("WebhooksQueue"))
    dead_id = next(lid for lid in synthesized.of_type("AWS::SQS::Queue") if lid.startswith("WebhooksDeadLetters"))
    senders, readers, drainers = set(), set(), set()
    for policy in synthesized.of_type("AWS::IAM::Policy").values():
        role = policy["Properties"]["Roles"][0]["Ref"]
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
            resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
            if arn_of(queue_id) in resources and "sqs:SendMessage" in actions:
                senders.add(role)
            if arn_of(queue_id) in resources and "sqs:ReceiveMessage" in actions:
                readers.add(role)
            if arn_of(dead_id) in resources and "sqs:ReceiveMessage" in actions:
                drainers.add(role)

    def role(function):
        return synthesized.resources[synthesized.function_id(function)]["Properties"]["Role"]["Fn::GetAtt"][0]

    assert senders == {role("notify"), role("webhook"), role("reconcile")}
    assert readers == {role("webhook")} and drainers == {role("reconcile")}
    (alarm,) = [
        a["Properties"]
        for a in synthesized.of_type("AWS::CloudWatch::Alarm").values()
        if a["Properties"].get("MetricName") == "ApproximateNumberOfMessagesVisible"
        and a["Properties"]["Dimensions"][0]["Value"]["Fn::GetAtt"][0] == dead_id
    ]
    assert alarm["Threshold"] == 1


def test_requests_table_is_on_demand_recoverable_expiring_and_streamed(synthesized):
    _, table = one(synthesized.of_type("AWS::DynamoDB::Table"))
    properties = table["Properties"]
    assert properties["BillingMode"] == "PAY_PER_REQUEST"
    assert properties["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert properties["TimeToLiveSpecification"] == {"AttributeName": TTL_ATTRIBUTE, "Enabled": True}
    assert properties["StreamSpecification"] == {"StreamViewType": "NEW_AND_OLD_IMAGES"}
    assert properties["DeletionProtectionEnabled"] is True
    assert table["DeletionPolicy"] == "Retain"


def test_presigned_uploads_invoke_ingest_and_failures_are_kept(synthesized):
    notification = TOPOLOGY.upload_notification
    assert notification.prefix == INCOMING_PREFIX  # the notification fires where the presigned POST lands
    _, custom = one(synthesized.of_type("Custom::S3BucketNotifications"))
    configurations = custom["Properties"]["NotificationConfiguration"]["LambdaFunctionConfigurations"]
    ingest = synthesized.function_id(notification.function)
    assert configurations == [
        {
            "Events": ["s3:ObjectCreated:*"],
            "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": notification.prefix}]}},
            "LambdaFunctionArn": arn_of(ingest),
        }
    ]
    assert custom["Properties"]["BucketName"]["Ref"].startswith("StorageUploads")
    (invoke_config,) = [
        c
        for c in synthesized.of_type("AWS::Lambda::EventInvokeConfig").values()
        if c["Properties"]["FunctionName"] == ref(ingest)
    ]
    assert invoke_config["Properties"]["MaximumRetryAttempts"] == notification.retry_attempts == 2
    failures = invoke_config["Properties"]["DestinationConfig"]["OnFailure"]["Destination"]["Fn::GetAtt"][0]
    assert synthesized.resources[failures]["Type"] == "AWS::SQS::Queue"


def test_every_route_requires_an_api_key(synthesized):
    methods = {
        lid: m
        for lid, m in synthesized.of_type("AWS::ApiGateway::Method").items()
        if m["Properties"]["HttpMethod"] != "OPTIONS"
    }
    assert sorted(m["Properties"]["HttpMethod"] for m in methods.values()) == sorted(r.method for r in TOPOLOGY.routes)
    validator, _ = one(synthesized.of_type("AWS::ApiGateway::RequestValidator"))
    for method in methods.values():
        properties = method["Properties"]
        assert properties["ApiKeyRequired"] is True
        assert properties["Integration"]["Type"] == "AWS_PROXY"
        assert properties["RequestValidatorId"] == ref(validator)
    status = next(m for m in methods.values() if m["Properties"]["HttpMethod"] == "GET")
    assert status["Properties"]["RequestParameters"] == {"method.request.path.requestId": True}


def test_the_upload_pages_origin_gets_cors_preflights_and_readable_errors(synthesized):
    distribution_id, _ = one(synthesized.of_type("AWS::CloudFront::Distribution"))
    page_origin = {"Fn::Join": ["", ["https://", {"Fn::GetAtt": [distribution_id, "DomainName"]}]]}
    preflights = [
        m["Properties"]
        for m in synthesized.of_type("AWS::ApiGateway::Method").values()
        if m["Properties"]["HttpMethod"] == "OPTIONS"
    ]
    assert len(preflights) == len({route.path for route in TOPOLOGY.routes})
    for preflight in preflights:
        assert preflight["Integration"]["Type"] == "MOCK"  # answered by API Gateway: no function, no key
        assert preflight.get("ApiKeyRequired", False) is False
        (answer,) = preflight["Integration"]["IntegrationResponses"]
        headers = answer["ResponseParameters"]
        assert "x-api-key" in headers["method.response.header.Access-Control-Allow-Headers"]
        origin = headers["method.response.header.Access-Control-Allow-Origin"]
        assert origin == {"Fn::Join": ["", ["'https://", {"Fn::GetAtt": [distribution_id, "DomainName"]}, "'"]]}
    for response in synthesized.of_type("AWS::ApiGateway::GatewayResponse").values():
        allowed = response["Properties"]["ResponseParameters"]["gatewayresponse.header.Access-Control-Allow-Origin"]
        assert allowed == {"Fn::Join": ["", ["'https://", {"Fn::GetAtt": [distribution_id, "DomainName"]}, "'"]]}
    for spec in TOPOLOGY.functions:  # the API's functions add the CORS headers to their own answers
        variables = environment_of(synthesized, spec.name)
        assert variables.get("WEB_ORIGIN") == (page_origin if spec.name in ("upload", "status", "secret") else None)
    uploads = next(b for lid, b in synthesized.of_type("AWS::S3::Bucket").items() if lid.startswith("StorageUploads"))
    (rule,) = uploads["Properties"]["CorsConfiguration"]["CorsRules"]
    assert (rule["AllowedMethods"], rule["AllowedOrigins"]) == (["POST", "GET"], [page_origin])


def test_the_upload_page_is_deployed_behind_the_distribution(synthesized):
    _, distribution = one(synthesized.of_type("AWS::CloudFront::Distribution"))
    config = distribution["Properties"]["DistributionConfig"]
    (page,) = config["CacheBehaviors"]
    assert page["PathPattern"] == "app/*" and page["ViewerProtocolPolicy"] == "redirect-to-https"
    origin = next(o for o in config["Origins"] if o["Id"] == page["TargetOriginId"])
    assert origin["DomainName"]["Fn::GetAtt"][0].startswith("WebPageSite") and "OriginAccessControlId" in origin
    (deployment,) = synthesized.of_type("Custom::CDKBucketDeployment").values()
    properties = deployment["Properties"]
    assert properties["DestinationBucketKeyPrefix"] == "app/"
    assert properties["DestinationBucketName"]["Ref"].startswith("WebPageSite")
    assert properties["SystemMetadata"] == {"cache-control": "no-cache"}
    assert len(properties["SourceObjectKeys"]) == 2  # web/ and config.json
    # config.json names the API's stage URL (a deploy-time value, substituted by the deployment).
    assert "ApiRestApiDeploymentStage" in json.dumps(properties["SourceMarkers"])


def test_usage_plan_throttles_and_limits_the_default_key(synthesized, template):
    plan = TOPOLOGY.usage_plan
    plan_id, usage_plan = one(synthesized.of_type("AWS::ApiGateway::UsagePlan"))
    assert usage_plan["Properties"]["Throttle"] == {"RateLimit": plan.rate_per_second, "BurstLimit": plan.burst}
    assert usage_plan["Properties"]["Quota"] == {"Limit": plan.quota_per_day, "Period": "DAY"}
    assert len(usage_plan["Properties"]["ApiStages"]) == 1
    key_id, key = one(synthesized.of_type("AWS::ApiGateway::ApiKey"))
    assert "Value" not in key["Properties"]  # generated by API Gateway, never in the template
    template.has_resource_properties(
        "AWS::ApiGateway::UsagePlanKey", {"KeyId": ref(key_id), "UsagePlanId": ref(plan_id), "KeyType": "API_KEY"}
    )


def test_stage_is_throttled_logged_and_traced(synthesized):
    _, stage = one(synthesized.of_type("AWS::ApiGateway::Stage"))
    properties = stage["Properties"]
    assert properties["StageName"] == TOPOLOGY.stage
    assert properties["TracingEnabled"] is True
    (settings,) = properties["MethodSettings"]
    assert (settings["ThrottlingRateLimit"], settings["ThrottlingBurstLimit"]) == (100, 200)
    assert settings["LoggingLevel"] == "ERROR" and settings["DataTraceEnabled"] is False
    log_format = json.loads(properties["AccessLogSetting"]["Format"])
    assert {"requestId", "apiKeyId", "status"} <= set(log_format)
    assert "apiKey" not in log_format  # the key id, never the key


def test_api_accepts_binary_bodies_and_answers_its_own_errors_as_json(synthesized):
    _, api = one(synthesized.of_type("AWS::ApiGateway::RestApi"))
    assert api["Properties"]["BinaryMediaTypes"] == list(TOPOLOGY.binary_media_types)
    assert api["Properties"]["EndpointConfiguration"] == {"Types": ["REGIONAL"]}
    responses = {
        r["Properties"]["ResponseType"]: r["Properties"]
        for r in synthesized.of_type("AWS::ApiGateway::GatewayResponse").values()
    }
    assert set(responses) == set(TOPOLOGY.gateway_responses)
    for kind, response in TOPOLOGY.gateway_responses.items():
        assert responses[kind]["StatusCode"] == str(response.status)
        body = responses[kind]["ResponseTemplates"]["application/json"]
        assert body == gateway_response_body(response)
        assert json.loads(body)["code"] == response.code


def test_buckets_are_encrypted_private_tls_only_logged_and_retained(synthesized):
    buckets = synthesized.of_type("AWS::S3::Bucket")
    assert len(buckets) == 4  # uploads, processed, the upload page's site, access logs
    logs_bucket = next(lid for lid in buckets if lid.startswith("StorageAccessLogs"))
    for logical_id, bucket in buckets.items():
        properties = bucket["Properties"]
        assert properties["PublicAccessBlockConfiguration"] == {
            "BlockPublicAcls": True,
            "BlockPublicPolicy": True,
            "IgnorePublicAcls": True,
            "RestrictPublicBuckets": True,
        }
        (rule,) = properties["BucketEncryption"]["ServerSideEncryptionConfiguration"]
        assert rule["ServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
        assert bucket["DeletionPolicy"] == "Retain" and bucket["UpdateReplacePolicy"] == "Retain"
        if logical_id != logs_bucket:
            assert properties["LoggingConfiguration"]["DestinationBucketName"] == ref(logs_bucket)
    for policy in synthesized.of_type("AWS::S3::BucketPolicy").values():
        statements = policy["Properties"]["PolicyDocument"]["Statement"]
        assert any(
            s["Effect"] == "Deny" and s["Condition"] == {"Bool": {"aws:SecureTransport": "false"}} for s in statements
        )
    uploads = next(b for lid, b in buckets.items() if lid.startswith("StorageUploads"))
    expiry = [r for r in uploads["Properties"]["LifecycleConfiguration"]["Rules"] if "ExpirationInDays" in r]
    assert [r["ExpirationInDays"] for r in expiry] == [30]


def test_processed_images_are_served_through_cloudfront_with_origin_access_control(synthesized):
    distribution_id, distribution = one(synthesized.of_type("AWS::CloudFront::Distribution"))
    access_controls = synthesized.of_type("AWS::CloudFront::OriginAccessControl").values()
    assert len(access_controls) == 2  # the processed bucket's and the upload page's
    for access_control in access_controls:
        assert access_control["Properties"]["OriginAccessControlConfig"]["SigningBehavior"] == "always"
    config = distribution["Properties"]["DistributionConfig"]
    origin = next(o for o in config["Origins"] if o["Id"] == config["DefaultCacheBehavior"]["TargetOriginId"])
    assert origin["DomainName"]["Fn::GetAtt"][0].startswith("StorageProcessed")
    assert "OriginAccessControlId" in origin
    assert config["DefaultCacheBehavior"]["ViewerProtocolPolicy"] == "redirect-to-https"
    assert config["Logging"]["Bucket"]["Fn::GetAtt"][0].startswith("StorageAccessLogs")
    processed_policy = next(
        p
        for p in synthesized.of_type("AWS::S3::BucketPolicy").values()
        if p["Properties"]["Bucket"]["Ref"].startswith("StorageProcessed")
    )
    (read,) = [s for s in processed_policy["Properties"]["PolicyDocument"]["Statement"] if s["Effect"] == "Allow"]
    assert read["Principal"] == {"Service": "cloudfront.amazonaws.com"}
    assert read["Action"] == "s3:GetObject"
    assert distribution_id in json.dumps(read["Condition"])  # only this distribution


def test_cloudfront_cannot_reach_an_output_csv(synthesized):
    """Issue 9: one public image URL exposed the output CSV. CloudFront's origins are the processed bucket (the
    default) and the upload page's bucket (`app/*` only, static files deployed with the stack), never the uploads
    bucket; the output CSV is written to the uploads bucket; no function can write anything but an image (.jpg,
    .webp, .avif) into the processed bucket, so no derivation of an image URL can name a CSV."""
    _, distribution = one(synthesized.of_type("AWS::CloudFront::Distribution"))
    config = distribution["Properties"]["DistributionConfig"]
    origins = {origin["Id"]: origin["DomainName"]["Fn::GetAtt"][0] for origin in config["Origins"]}
    assert origins[config["DefaultCacheBehavior"]["TargetOriginId"]].startswith("StorageProcessed")
    assert [(b["PathPattern"], origins[b["TargetOriginId"]][:7]) for b in config["CacheBehaviors"]] == [
        ("app/*", "WebPage")
    ]
    assert not any(bucket.startswith("StorageUploads") for bucket in origins.values())
    processed_writes, csv_writes = set(), set()
    for policy in synthesized.of_type("AWS::IAM::Policy").values():
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
            if "s3:PutObject" not in actions:
                continue
            resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
            for resource in resources:
                parts = resource.get("Fn::Join", [None, []])[1] if isinstance(resource, dict) else []
                if len(parts) != 2 or "Fn::GetAtt" not in parts[0]:
                    # (CDK's deployment of the upload page writes its own bucket; nothing else may be this broad)
                    assert "StorageProcessed" not in json.dumps(resource) and "StorageUploads" not in json.dumps(
                        resource
                    )
                    continue
                bucket, key = parts[0]["Fn::GetAtt"][0], parts[1]
                if bucket.startswith("StorageProcessed"):
                    processed_writes.add(key)
                if key.endswith(".csv"):
                    csv_writes.add((bucket.removeprefix("Storage")[:7], key))
    assert processed_writes == {"/*.jpg", "/*.webp", "/*.avif"}
    assert ("Uploads", "/*/output.csv") in csv_writes and all(bucket == "Uploads" for bucket, _ in csv_writes)


def test_every_bucket_expires_what_it_stores(synthesized):
    buckets = synthesized.of_type("AWS::S3::Bucket")
    expiry = {
        lid.removeprefix("Storage")[:7]: [
            r["ExpirationInDays"] for r in b["Properties"]["LifecycleConfiguration"]["Rules"] if "ExpirationInDays" in r
        ]
        for lid, b in buckets.items()
        if lid.startswith("Storage")  # (the upload page's bucket holds the page itself, deployed with the stack)
    }
    assert expiry["Uploads"] == [TOPOLOGY.uploads_retention_days]
    assert expiry["Process"] == [TOPOLOGY.processed_retention_days]
    assert expiry["AccessL"] == [365]


def test_alarms_cover_dead_letters_errors_throttles_api_rates_and_progress(synthesized):
    """Issue 21: every alarm sustained or justified as immediate, the rates over a minimum request count,
    progress instead of message age, the table's conflicts and throttles, near-timeouts, the heartbeat."""
    alarms = {lid: a["Properties"] for lid, a in synthesized.of_type("AWS::CloudWatch::Alarm").items()}
    topic_id, _ = one(synthesized.of_type("AWS::SNS::Topic"))
    assert all(a["AlarmActions"] == [ref(topic_id)] == a["OKActions"] for a in alarms.values())

    def watched(namespace, metric):
        return [a for a in alarms.values() if (a.get("Namespace"), a.get("MetricName")) == (namespace, metric)]

    def sustained(alarm):
        return alarm["DatapointsToAlarm"], alarm["EvaluationPeriods"]

    def by_id(prefix):
        (alarm,) = [a for lid, a in alarms.items() if lid.startswith(f"Monitoring{prefix}")]
        return alarm

    def expression(alarm):
        (result,) = [m for m in alarm["Metrics"] if m.get("ReturnData", True) and "Expression" in m]
        inputs = {m["Id"]: m["MetricStat"] for m in alarm["Metrics"] if "MetricStat" in m}
        return result["Expression"], inputs

    queues = synthesized.of_type("AWS::SQS::Queue")
    dead_letters = {lid for lid, q in queues.items() if "RedrivePolicy" not in q["Properties"]}
    depth = watched("AWS/SQS", "ApproximateNumberOfMessagesVisible")
    assert {a["Dimensions"][0]["Value"]["Fn::GetAtt"][0] for a in depth} == dead_letters
    assert len(dead_letters) == 5  # images, chunks, webhooks, ingest failures, completion failures
    for alarm in depth:  # the reconciler drains three every round: those alarm when messages stay 15 minutes
        queue = alarm["Dimensions"][0]["Value"]["Fn::GetAtt"][0]
        drained = queue.startswith(("PipelineImagesDeadLetters", "FanoutChunksDeadLetters", "WebhooksDeadLetters"))
        assert sustained(alarm) == ((3, 3) if drained else (1, 1)), queue
    for metric in ("Errors", "Throttles", "Duration"):
        found = watched("AWS/Lambda", metric)
        assert {a["Dimensions"][0]["Value"]["Ref"] for a in found} == {
            synthesized.function_id(spec.name) for spec in TOPOLOGY.functions
        }
        assert all(sustained(a) == (2, 3) for a in found), metric
    for alarm in watched("AWS/Lambda", "Duration"):  # near the timeout: 95% of each function's own
        spec = next(
            s for s in TOPOLOGY.functions if synthesized.function_id(s.name) == alarm["Dimensions"][0]["Value"]["Ref"]
        )
        assert (alarm["Statistic"], alarm["Threshold"]) == ("Maximum", 0.95 * spec.timeout_s * 1000)
    for metric, threshold, periods in (("5XXError", 0.01, (2, 3)), ("4XXError", 0.25, (3, 3))):
        alarm = by_id(f"Api{metric}Rate")
        formula, inputs = expression(alarm)
        assert formula == "IF(requests >= 20, FILL(errors, 0) / requests, 0)"  # one 404 in a quiet hour is not 100%
        assert inputs["errors"]["Metric"]["MetricName"] == metric and inputs["requests"]["Metric"]["MetricName"] == (
            "Count"
        )
        assert {i["Stat"] for i in inputs.values()} == {"Sum"}
        assert (alarm["Threshold"], sustained(alarm)) == (threshold, periods)
    # Progress instead of message age: no alarm on the oldest message any more.
    assert watched("AWS/SQS", "ApproximateAgeOfOldestMessage") == []
    for title, finished in (
        ("Images", {"counted": "ImagesCounted"}),
        ("Chunks", {"sent": "ImagesQueued", "requeued": "ChunksRequeued"}),
    ):
        alarm = by_id(f"{title}Stalled")
        formula, inputs = expression(alarm)
        assert formula.startswith("IF(FILL(visible, 0) + FILL(inflight, 0) > 0 AND ")
        assert {name: inputs[name]["Metric"]["MetricName"] for name in finished} == finished
        assert inputs["visible"]["Metric"]["MetricName"] == "ApproximateNumberOfMessagesVisible"
        assert inputs["inflight"]["Metric"]["MetricName"] == "ApproximateNumberOfMessagesNotVisible"
        assert (alarm["Threshold"], sustained(alarm)) == (1, (3, 3))  # no image finished for 15 minutes
    for metric in ("RequestsPastDeadline", "StoreOutageRounds"):  # work too slow or lost; a store failing
        (reconciler,) = watched("ImageProcessingSystem", metric)
        assert reconciler["Dimensions"] == [{"Name": "service", "Value": TOPOLOGY.reconcile_schedule.function}]
        assert (reconciler["Threshold"], sustained(reconciler)) == (1, (1, 1))
    (heartbeat,) = watched("ImageProcessingSystem", "ReconcilerRounds")
    assert heartbeat["Dimensions"] == [{"Name": "service", "Value": TOPOLOGY.reconcile_schedule.function}]
    assert heartbeat["ComparisonOperator"] == "LessThanThreshold" and heartbeat["Threshold"] == 1
    assert heartbeat["TreatMissingData"] == "breaching" and sustained(heartbeat) == (3, 3)
    (lag,) = watched("AWS/Lambda", "IteratorAge")
    assert lag["Dimensions"][0]["Value"] == ref(synthesized.function_id(TOPOLOGY.stream_source.function))
    assert sustained(lag) == (2, 3)
    (conflicts,) = watched("AWS/DynamoDB", "TransactionConflict")
    assert conflicts["Dimensions"] == [{"Name": "TableName", "Value": ref("CompletionRequests4C1CAE78")}]
    assert (conflicts["Statistic"], conflicts["Threshold"], sustained(conflicts)) == ("Sum", 100, (3, 3))
    throttles = by_id("RequestsTableThrottles")
    formula, inputs = expression(throttles)
    assert formula == "FILL(reads, 0) + FILL(writes, 0)"
    assert {i["Metric"]["MetricName"] for i in inputs.values()} == {"ReadThrottleEvents", "WriteThrottleEvents"}
    assert (throttles["Threshold"], sustained(throttles)) == (10, (2, 3))
    assert len(synthesized.of_type("AWS::CloudWatch::Dashboard")) == 1


def test_no_data_is_destroyed_with_the_stack(synthesized):
    for resource_type in ("AWS::S3::Bucket", "AWS::DynamoDB::Table", "AWS::Logs::LogGroup"):
        for resource in synthesized.of_type(resource_type).values():
            assert resource["DeletionPolicy"] == "Retain", resource_type


def test_the_requests_table_keeps_its_logical_id_wherever_its_construct_is(synthesized):
    """A new logical id would make CloudFormation replace the table: a new empty one, the old one orphaned."""
    from infra.constructs.requests_table import REQUESTS_TABLE_LOGICAL_ID

    assert list(synthesized.of_type("AWS::DynamoDB::Table")) == [REQUESTS_TABLE_LOGICAL_ID]
    requests = synthesized.stack.node.find_child("Requests")  # and what refers to it follows the override
    assert synthesized.stack.resolve(requests.table.table_name) == {"Ref": REQUESTS_TABLE_LOGICAL_ID}
