"""The CDK app synthesizes, and wires what the topology describes (the full production checks are their own issue)."""

from __future__ import annotations

import json
import os

import pytest

os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")

from aws_cdk import App
from aws_cdk.assertions import Match, Template

from infra.stack import ImageProcessingStack
from infra.topology import TOPOLOGY


@pytest.fixture(scope="module")
def template() -> Template:
    app = App()
    return Template.from_stack(ImageProcessingStack(app, "Test"))


def test_every_topology_function_is_deployed_with_its_handler(template: Template) -> None:
    functions = template.find_resources("AWS::Lambda::Function")
    assert len(functions) == len(TOPOLOGY.functions)
    for spec in TOPOLOGY.functions:
        template.has_resource_properties(
            "AWS::Lambda::Function",
            {
                "Handler": spec.handler,
                "Runtime": "python3.12",
                "MemorySize": spec.memory_mb,
                "Timeout": spec.timeout_s,
            },
        )


def test_queue_feeds_the_process_function_with_partial_batch_failures(template: Template) -> None:
    source = TOPOLOGY.queue_source
    template.has_resource_properties(
        "AWS::Lambda::EventSourceMapping",
        {
            "BatchSize": source.batch_size,
            "FunctionResponseTypes": ["ReportBatchItemFailures"],
            "EventSourceArn": Match.any_value(),
            "FilterCriteria": Match.absent(),
        },
    )
    queue = TOPOLOGY.images_queue
    template.has_resource_properties(
        "AWS::SQS::Queue",
        {
            "VisibilityTimeout": queue.visibility_timeout_s,
            "RedrivePolicy": {
                "deadLetterTargetArn": Match.any_value(),
                "maxReceiveCount": queue.max_receive_count,
            },
        },
    )
    assert queue.visibility_timeout_s >= 6 * TOPOLOGY.function("process").timeout_s


def test_stream_reaches_notify_only_through_the_completion_filter(template: Template) -> None:
    template.has_resource_properties(
        "AWS::Lambda::EventSourceMapping",
        {
            "FilterCriteria": {
                "Filters": [{"Pattern": json.dumps(TOPOLOGY.stream_source.filter_pattern, separators=(",", ":"))}]
            },
            "BisectBatchOnFunctionError": True,
            "FunctionResponseTypes": ["ReportBatchItemFailures"],
            "DestinationConfig": {"OnFailure": {"Destination": Match.any_value()}},
        },
    )
    template.has_resource_properties(
        "AWS::DynamoDB::Table", {"StreamSpecification": {"StreamViewType": "NEW_AND_OLD_IMAGES"}}
    )


def test_every_route_requires_an_api_key_and_a_usage_plan_limits_it(template: Template) -> None:
    methods = template.find_resources("AWS::ApiGateway::Method")
    assert sorted(m["Properties"]["HttpMethod"] for m in methods.values()) == sorted(r.method for r in TOPOLOGY.routes)
    assert all(m["Properties"]["ApiKeyRequired"] for m in methods.values())
    plan = TOPOLOGY.usage_plan
    template.has_resource_properties(
        "AWS::ApiGateway::UsagePlan",
        {
            "Throttle": {"RateLimit": plan.rate_per_second, "BurstLimit": plan.burst},
            "Quota": {"Limit": plan.quota_per_day, "Period": "DAY"},
        },
    )
    template.has_resource_properties(
        "AWS::ApiGateway::RestApi", {"BinaryMediaTypes": list(TOPOLOGY.binary_media_types)}
    )


def test_buckets_are_encrypted_and_private(template: Template) -> None:
    buckets = template.find_resources("AWS::S3::Bucket")
    assert len(buckets) == 2
    for bucket in buckets.values():
        properties = bucket["Properties"]
        assert properties["PublicAccessBlockConfiguration"] == {
            "BlockPublicAcls": True,
            "BlockPublicPolicy": True,
            "IgnorePublicAcls": True,
            "RestrictPublicBuckets": True,
        }
        assert properties["BucketEncryption"]["ServerSideEncryptionConfiguration"]
        assert bucket["DeletionPolicy"] == "Retain"
