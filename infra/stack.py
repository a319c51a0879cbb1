"""One stack composing the system from the topology, one construct per concern.

secrets, storage, pipeline, fan-out, webhooks, the requests table (each names its resources' variables) ->
functions (layers, roles, logs; each given only the variables its settings model reads) -> each concern grants
what infra/permissions.py says on its resources -> completion (the
table's stream to notify) -> api (routes) -> the upload page -> monitoring."""

from __future__ import annotations

from typing import Any

from aws_cdk import CfnOutput, Stack
from constructs import Construct

from infra.config import DeploymentConfig
from infra.constructs.api import Api
from infra.constructs.completion import Completion
from infra.constructs.fanout import Fanout
from infra.constructs.functions import Functions
from infra.constructs.monitoring import Monitored, Monitoring
from infra.constructs.pipeline import Pipeline
from infra.constructs.reconciler import Reconciler
from infra.constructs.requests_table import RequestsTable
from infra.constructs.secrets import Secrets
from infra.constructs.storage import Storage
from infra.constructs.web import WebPage
from infra.constructs.webhooks import Webhooks
from infra.layers import BuiltLayer
from infra.permissions import function_access
from infra.topology import TOPOLOGY, Topology
from ips_runtime.settings import FUNCTIONS


class ImageProcessingStack(Stack):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        dependencies: BuiltLayer,
        config: DeploymentConfig | None = None,
        topology: Topology = TOPOLOGY,
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        config = config or DeploymentConfig()
        topology = config.apply(topology)
        access = function_access(topology)
        log_retention = config.log_retention

        secrets = Secrets(self, "Secrets", mongodb_secret=config.mongodb_secret)
        storage = Storage(
            self,
            "Storage",
            upload_retention_days=topology.uploads_retention_days,
            processed_retention_days=topology.processed_retention_days,
        )
        pipeline = Pipeline(self, "Pipeline", queue=topology.images_queue)
        fanout = Fanout(self, "Fanout", queue=topology.chunks_queue)
        webhooks = Webhooks(self, "Webhooks", queue=topology.webhooks_queue)
        requests = RequestsTable(self, "Requests")
        completion = Completion(self, "Completion", requests=requests.table)
        dead_letter_urls = ",".join(
            queue.queue_url for queue in (pipeline.images_dead_letters, fanout.dead_letters, webhooks.dead_letters)
        )
        functions = Functions(
            self,
            "Functions",
            topology=topology,
            dependencies=dependencies,
            # Every value the stack knows; each function is given only the variables its settings model reads.
            available={
                **topology.function_environment(),
                **secrets.environment(),
                **storage.environment(),
                **pipeline.environment(),
                **fanout.environment(),
                **webhooks.environment(),
                **requests.environment(),
                **config.mongodb_environment(),
                **config.quota_environment(topology),
                "DEAD_LETTER_QUEUE_URLS": dead_letter_urls,
                "INGEST_FAILURES_QUEUE_URL": pipeline.ingest_failures.queue_url,
            },
            log_retention=log_retention,
            reserve_concurrency=config.reserve_concurrency,
        )
        for name, function in functions.items():
            for concern in (storage, pipeline, fanout, webhooks, requests):
                concern.grant(function, access[name])
            secrets.grant(function, FUNCTIONS[name])

        process = topology.queue_source.function
        pipeline.connect_process(functions[process], topology.queue_source, topology.function(process))
        expand = topology.chunk_source.function
        fanout.connect_expand(functions[expand], topology.chunk_source, topology.function(expand))
        webhook = topology.webhook_source.function
        webhooks.connect_webhook(functions[webhook], topology.webhook_source, topology.function(webhook))
        notification = topology.upload_notification
        pipeline.connect_uploads(storage.uploads, functions[notification.function], notification)
        completion.connect(functions[topology.stream_source.function], topology.stream_source)
        schedule = topology.reconcile_schedule
        Reconciler(self, "Reconciler", function=functions[schedule.function], schedule=schedule)
        api = Api(
            self,
            "Api",
            topology=topology,
            functions=functions.by_name,
            stage_rate_limit=config.stage_throttle_rate,
            stage_burst_limit=config.stage_throttle_burst,
            log_retention=log_retention,
            web_origin=storage.web_origin,
        )
        web_page = WebPage(
            self,
            "WebPage",
            distribution=storage.assets,
            access_logs=storage.access_logs,
            api_url=api.stage.url_for_path("/"),
            log_retention=log_retention,
        )
        dead_letters = {
            "ImagesDeadLetters": pipeline.images_dead_letters,
            "ChunksDeadLetters": fanout.dead_letters,
            "WebhooksDeadLetters": webhooks.dead_letters,
            "IngestFailures": pipeline.ingest_failures,
            "CompletionFailures": completion.failures,
        }
        monitoring = Monitoring(
            self,
            "Monitoring",
            monitored=Monitored(
                topology=topology,
                functions=functions.by_name,
                api=api.rest_api,
                stage=api.stage,
                images=pipeline.images,
                chunks=fanout.chunks,
                dead_letters=dead_letters,
                drained_dead_letters=("ImagesDeadLetters", "ChunksDeadLetters", "WebhooksDeadLetters"),  # every round
                requests_table=requests.table,
            ),
            alarm_email=config.alarm_email,
        )

        for output_id, value, description in (
            ("ApiUrl", api.stage.url_for_path("/"), "Base URL: append the routes (e.g. api/v1/upload)"),
            ("DefaultApiKeyId", api.default_key.key_id, "aws apigateway get-api-key --include-value --api-key <id>"),
            ("DefaultUsagePlanId", api.default_plan.usage_plan_id, "Add client keys to this plan"),
            ("AssetBaseUrl", storage.asset_base_url, "Where output images are served"),
            ("WebPageUrl", web_page.url, "The upload page (enter an API key, drop a CSV)"),
            ("MongoDbUriSecretArn", secrets.mongodb_uri.secret_arn, "Put the Atlas URI here"),
            ("WebhookSecretArn", secrets.webhook_signing.secret_arn, "Master secret: never give it out"),
            ("AlarmTopicArn", monitoring.topic.topic_arn, "Subscribe to receive alarms"),
            ("DashboardName", monitoring.dashboard.dashboard_name, "CloudWatch dashboard"),
        ):
            CfnOutput(self, output_id, value=value, description=description)
        # With mongodbAuth=iam each role is an Atlas database user (AWS IAM role type): docs/deployment.md.
        for name, function in functions.items():
            CfnOutput(
                self,
                f"{name.capitalize()}RoleArn",
                value=function.role.role_arn,  # type: ignore[union-attr]
                description=f"The {name} function's role: its Atlas database user with mongodbAuth=iam",
            )
