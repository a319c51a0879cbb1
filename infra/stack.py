"""One stack composing the system from the topology: storage, functions, pipeline wiring, API.

A first, minimal deployment: the full production stack (CloudFront, monitoring, cdk-nag, the dependencies
layer built offline) is its own piece of work."""

from __future__ import annotations

from pathlib import Path

from aws_cdk import Duration, Stack
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_event_sources as sources
from aws_cdk import aws_secretsmanager as secretsmanager
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from infra.constructs.storage import Storage
from infra.topology import TOPOLOGY, Topology

ROOT = Path(__file__).resolve().parent.parent


class ImageProcessingStack(Stack):
    def __init__(self, scope: Construct, construct_id: str, topology: Topology = TOPOLOGY, **kwargs: object) -> None:
        super().__init__(scope, construct_id, **kwargs)
        storage = Storage(self, "Storage")
        queue_spec = topology.images_queue
        dead_letters = self._dead_letter_queue("ImagesDlq")
        images = sqs.Queue(
            self,
            "Images",
            visibility_timeout=Duration.seconds(queue_spec.visibility_timeout_s),
            retention_period=Duration.days(queue_spec.retention_days),
            dead_letter_queue=sqs.DeadLetterQueue(queue=dead_letters, max_receive_count=queue_spec.max_receive_count),
            enforce_ssl=True,
            encryption=sqs.QueueEncryption.SQS_MANAGED,
        )
        mongodb = secretsmanager.Secret(self, "MongoDbUri", description="MongoDB Atlas connection string")
        signing = secretsmanager.Secret(
            self, "WebhookSecret", description="Standard Webhooks signing secret (whsec_...)"
        )
        domain_layer = lambda_.LayerVersion(
            self,
            "DomainLayer",
            code=lambda_.Code.from_asset(str(ROOT / "layers" / "domain")),
            compatible_runtimes=[lambda_.Runtime.PYTHON_3_12],
            description="ips domain package and handler support",
        )
        environment = {
            **topology.function_environment(),
            "UPLOADS_BUCKET": storage.uploads.bucket_name,
            "PROCESSED_BUCKET": storage.processed.bucket_name,
            "IMAGES_QUEUE_URL": images.queue_url,
            "REQUESTS_TABLE": storage.requests.table_name,
            "ASSET_BASE_URL": f"https://{storage.processed.bucket_regional_domain_name}",
            "MONGODB_URI_SECRET_ARN": mongodb.secret_arn,
            "WEBHOOK_SECRET_SECRET_ARN": signing.secret_arn,
        }
        functions = {
            spec.name: lambda_.Function(
                self,
                f"{spec.name.capitalize()}Function",
                runtime=lambda_.Runtime.PYTHON_3_12,
                code=lambda_.Code.from_asset(str(ROOT / spec.code)),
                handler=spec.handler,
                memory_size=spec.memory_mb,
                timeout=Duration.seconds(spec.timeout_s),
                reserved_concurrent_executions=spec.reserved_concurrency,
                layers=[domain_layer],
                environment={**environment, "POWERTOOLS_SERVICE_NAME": spec.name},
                tracing=lambda_.Tracing.ACTIVE,
                description=spec.description,
            )
            for spec in topology.functions
        }
        for function in functions.values():
            mongodb.grant_read(function)
        storage.uploads.grant_put(functions["upload"])
        images.grant_send_messages(functions["upload"])
        storage.requests.grant_read_write_data(functions["upload"])
        storage.requests.grant_read_data(functions["status"])
        storage.processed.grant_put(functions["process"])
        storage.requests.grant_read_write_data(functions["process"])
        storage.processed.grant_put(functions["notify"])
        storage.requests.grant_read_write_data(functions["notify"])
        signing.grant_read(functions["notify"])
        signing.grant_read(functions["upload"])

        queue_source = topology.queue_source
        functions[queue_source.function].add_event_source(
            sources.SqsEventSource(
                images,
                batch_size=queue_source.batch_size,
                max_batching_window=Duration.seconds(queue_source.max_batching_window_s),
                report_batch_item_failures=True,
            )
        )
        stream_source = topology.stream_source
        completion_failures = self._dead_letter_queue("CompletionFailures")
        functions[stream_source.function].add_event_source(
            sources.DynamoEventSource(
                storage.requests,
                starting_position=lambda_.StartingPosition.TRIM_HORIZON,
                batch_size=stream_source.batch_size,
                filters=[lambda_.FilterCriteria.filter(stream_source.filter_pattern)],
                report_batch_item_failures=True,
                bisect_batch_on_error=True,
                retry_attempts=stream_source.retry_attempts,
                on_failure=sources.SqsDlq(completion_failures),
            )
        )
        self._api(topology, functions)

    def _dead_letter_queue(self, construct_id: str) -> sqs.Queue:
        return sqs.Queue(
            self,
            construct_id,
            retention_period=Duration.days(14),  # SQS's maximum: time to inspect and redrive
            enforce_ssl=True,
            encryption=sqs.QueueEncryption.SQS_MANAGED,
        )

    def _api(self, topology: Topology, functions: dict[str, lambda_.Function]) -> None:
        plan = topology.usage_plan
        api = apigw.RestApi(
            self,
            "Api",
            binary_media_types=list(topology.binary_media_types),
            deploy_options=apigw.StageOptions(
                stage_name=topology.stage,
                throttling_rate_limit=plan.rate_per_second,
                throttling_burst_limit=plan.burst,
                tracing_enabled=True,
            ),
        )
        for route in topology.routes:
            resource = api.root.resource_for_path(route.path)
            resource.add_method(route.method, apigw.LambdaIntegration(functions[route.function]), api_key_required=True)
        for kind, response in topology.gateway_responses.items():
            api.add_gateway_response(
                f"{kind.title().replace('_', '')}Response",
                type=getattr(apigw.ResponseType, kind),
                status_code=str(response.status),
                templates={
                    "application/json": f'{{"code": "{response.code}", "message": "{response.message}", "errors": []}}'
                },
            )
        usage_plan = api.add_usage_plan(
            "DefaultPlan",
            throttle=apigw.ThrottleSettings(rate_limit=plan.rate_per_second, burst_limit=plan.burst),
            quota=apigw.QuotaSettings(limit=plan.quota_per_day, period=apigw.Period.DAY),
        )
        usage_plan.add_api_stage(stage=api.deployment_stage)
        usage_plan.add_api_key(api.add_api_key("DefaultKey"))
