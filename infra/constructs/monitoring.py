"""Alarms (to an SNS topic, optionally e-mailed) and one dashboard.

Alarms: anything in a dead-letter queue, function errors and throttles, the API's 5xx and 4xx rates, the age of the
oldest image task and of the oldest chunk, how far the notify function lags behind the table's stream, requests
the reconciler found past their deadline, and reconciler rounds that found a store failing (an outage: the work
waits, and deadlines move by it)."""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import Duration
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as actions
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from infra.topology import Topology

PERIOD = Duration.minutes(5)
API_5XX_RATE = 0.01  # 1% of requests answered with a server error
API_4XX_RATE = 0.25  # a quarter of requests refused: a broken client, a revoked key, or abuse
STREAM_LAG = Duration.minutes(5)  # notify's iterator age: completions are late by this much


@dataclass(frozen=True)
class Monitored:
    topology: Topology
    functions: dict[str, lambda_.Function]
    api: apigw.RestApi
    stage: apigw.Stage
    images: sqs.Queue
    chunks: sqs.Queue
    dead_letters: dict[str, sqs.Queue]  # title -> queue


class Monitoring(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, monitored: Monitored, alarm_email: str | None) -> None:
        super().__init__(scope, construct_id)
        self.topic = sns.Topic(self, "Alarms", display_name="Image Processing System alarms", enforce_ssl=True)
        if alarm_email:
            self.topic.add_subscription(subscriptions.EmailSubscription(alarm_email))
        self.alarms: list[cloudwatch.Alarm] = []
        self._dead_letter_alarms(monitored.dead_letters)
        self._function_alarms(monitored.functions)
        self._api_alarms(monitored.api, monitored.stage)
        self._queue_alarms(monitored)
        self._reconciler_alarms(monitored)
        self.dashboard = self._dashboard(monitored)

    def _alarm(self, construct_id: str, metric: cloudwatch.IMetric, threshold: float, description: str) -> None:
        alarm = cloudwatch.Alarm(
            self,
            construct_id,
            metric=metric,
            threshold=threshold,
            evaluation_periods=1,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            alarm_description=description,
        )
        alarm.add_alarm_action(actions.SnsAction(self.topic))
        alarm.add_ok_action(actions.SnsAction(self.topic))
        self.alarms.append(alarm)

    def _dead_letter_alarms(self, dead_letters: dict[str, sqs.Queue]) -> None:
        for title, queue in dead_letters.items():
            self._alarm(
                f"{title}Waiting",
                queue.metric_approximate_number_of_messages_visible(period=PERIOD, statistic="Maximum"),
                1,
                f"Messages in the {title} queue: inspect them, fix the cause, then redrive.",
            )

    def _function_alarms(self, functions: dict[str, lambda_.Function]) -> None:
        for name, function in functions.items():
            title = name.capitalize()
            self._alarm(
                f"{title}Errors",
                function.metric_errors(period=PERIOD, statistic="Sum"),
                1,
                f"The {name} function failed (an unhandled error or a timeout).",
            )
            self._alarm(
                f"{title}Throttles",
                function.metric_throttles(period=PERIOD, statistic="Sum"),
                1,
                f"The {name} function was throttled: its concurrency or the account's is exhausted.",
            )

    def _api_alarms(self, api: apigw.RestApi, stage: apigw.Stage) -> None:
        dimensions = {"ApiName": api.rest_api_name, "Stage": stage.stage_name}
        for metric_name, threshold, what in (
            ("5XXError", API_5XX_RATE, "server errors"),
            ("4XXError", API_4XX_RATE, "client errors (bad CSVs, bad keys, throttling)"),
        ):
            # The metric is 1 or 0 per request, so its average is the rate.
            metric = cloudwatch.Metric(
                namespace="AWS/ApiGateway",
                metric_name=metric_name,
                dimensions_map=dimensions,
                period=PERIOD,
                statistic="Average",
            )
            self._alarm(f"Api{metric_name}Rate", metric, threshold, f"At least {threshold:.0%} of requests: {what}.")

    def _queue_alarms(self, monitored: Monitored) -> None:
        for title, spec, queue, what in (
            ("Images", monitored.topology.images_queue, monitored.images, "An image task"),
            ("Chunks", monitored.topology.chunks_queue, monitored.chunks, "A chunk of rows"),
        ):
            # A message may legitimately wait through all its retries: older than that, the queue is not keeping up.
            oldest = spec.visibility_timeout_s * spec.max_receive_count
            self._alarm(
                f"{title}OldestMessage",
                queue.metric_approximate_age_of_oldest_message(period=PERIOD, statistic="Maximum"),
                oldest,
                f"{what} has waited over {oldest} s: its function is not keeping up (or MongoDB is down).",
            )
        notify = monitored.functions[monitored.topology.stream_source.function]
        self._alarm(
            "CompletionStreamLag",
            notify.metric("IteratorAge", period=PERIOD, statistic="Maximum"),
            STREAM_LAG.to_milliseconds(),
            "Completions are read late from the table's stream (notify failing or retrying).",
        )

    def _reconciler_alarms(self, monitored: Monitored) -> None:
        topology = monitored.topology
        for metric_name, description in (
            (
                "RequestsPastDeadline",
                "Requests reached their deadline and were ended by the reconciler: work is being lost or is too slow.",
            ),
            (
                "StoreOutageRounds",
                "A reconciler round found MongoDB or DynamoDB failing: the work waits (dead letters are put back, "
                "deadlines move by the outage); see docs/deployment.md for what to check and how to redrive.",
            ),
        ):
            self._alarm(
                metric_name,
                cloudwatch.Metric(
                    namespace=topology.environment["POWERTOOLS_METRICS_NAMESPACE"],
                    metric_name=metric_name,
                    dimensions_map={"service": topology.reconcile_schedule.function},
                    period=PERIOD,
                    statistic="Sum",
                ),
                1,
                description,
            )

    def _dashboard(self, monitored: Monitored) -> cloudwatch.Dashboard:
        dashboard = cloudwatch.Dashboard(self, "Dashboard", default_interval=Duration.hours(3))
        functions = monitored.functions
        api_metrics = {
            name: cloudwatch.Metric(
                namespace="AWS/ApiGateway",
                metric_name=name,
                dimensions_map={"ApiName": monitored.api.rest_api_name, "Stage": monitored.stage.stage_name},
                period=Duration.minutes(1),
                statistic="Sum",
            )
            for name in ("Count", "4XXError", "5XXError")
        }
        queues = {"Images": monitored.images, "Chunks": monitored.chunks, **monitored.dead_letters}
        dashboard.add_widgets(
            cloudwatch.AlarmStatusWidget(title="Alarms", alarms=self.alarms, width=24),
        )
        dashboard.add_widgets(
            cloudwatch.GraphWidget(title="API requests and errors", left=list(api_metrics.values()), width=8),
            cloudwatch.GraphWidget(
                title="API latency (p50, p99)",
                left=[
                    cloudwatch.Metric(
                        namespace="AWS/ApiGateway",
                        metric_name="Latency",
                        dimensions_map={"ApiName": monitored.api.rest_api_name, "Stage": monitored.stage.stage_name},
                        statistic=statistic,
                        period=Duration.minutes(1),
                    )
                    for statistic in ("p50", "p99")
                ],
                width=8,
            ),
            cloudwatch.GraphWidget(
                title="Images counted, requests accepted and completed",
                left=[
                    cloudwatch.Metric(
                        namespace=monitored.topology.environment["POWERTOOLS_METRICS_NAMESPACE"],
                        metric_name=metric,
                        dimensions_map={"service": service},
                        statistic="Sum",
                        period=Duration.minutes(1),
                    )
                    for metric, service in (
                        ("ImagesCounted", monitored.topology.queue_source.function),
                        ("RequestsAccepted", "upload"),
                        ("RequestsCompleted", monitored.topology.stream_source.function),
                    )
                ],
                width=8,
            ),
        )
        dashboard.add_widgets(
            cloudwatch.GraphWidget(
                title="Invocations", left=[f.metric_invocations(period=Duration.minutes(1)) for f in functions.values()]
            ),
            cloudwatch.GraphWidget(
                title="Errors and throttles",
                left=[f.metric_errors(period=Duration.minutes(1)) for f in functions.values()],
                right=[f.metric_throttles(period=Duration.minutes(1)) for f in functions.values()],
            ),
            cloudwatch.GraphWidget(
                title="Duration (p90)",
                left=[f.metric_duration(period=Duration.minutes(1), statistic="p90") for f in functions.values()],
            ),
            cloudwatch.GraphWidget(
                title="Concurrency",
                left=[
                    f.metric("ConcurrentExecutions", period=Duration.minutes(1), statistic="Maximum")
                    for f in functions.values()
                ],
            ),
        )
        dashboard.add_widgets(
            cloudwatch.GraphWidget(
                title="Queue depth",
                left=[
                    queue.metric_approximate_number_of_messages_visible(period=Duration.minutes(1), label=title)
                    for title, queue in queues.items()
                ],
                width=12,
            ),
            cloudwatch.GraphWidget(
                title="Oldest image task (s)",
                left=[monitored.images.metric_approximate_age_of_oldest_message(period=Duration.minutes(1))],
                width=12,
            ),
        )
        return dashboard
