"""Alarms (to an SNS topic, optionally e-mailed) and one dashboard; what each means and what to do about it is in
docs/deployment.md ("Alarms").

Alarms an operator can live with: a level or a rate alarms only when it lasts (M of N five-minute datapoints),
the API's error rates only over a minimum number of requests, and progress is watched instead of message age (a
1,000,000-image job legitimately keeps old messages queued for hours): images or chunks waiting while none is
finished, requests past their deadline. Also: anything left in a dead-letter queue, function errors, throttles
and invocations near their timeout, notify's lag behind the table's stream, the requests table's transaction
conflicts and throttles, the reconciler's heartbeat (a round that ran, every 5 minutes), and rounds that found a
store failing (an outage: the work waits, and deadlines move by it)."""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import Duration
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as actions
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from infra.topology import Topology

PERIOD = Duration.minutes(5)
GTE = cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD


@dataclass(frozen=True)
class Sustained:
    """Alarm when `datapoints` of the last `periods` five-minute datapoints breach."""

    datapoints: int
    periods: int


AT_ONCE = Sustained(1, 1)  # each occurrence is a unit of lost work someone must look at
TEN_OF_FIFTEEN = Sustained(2, 3)  # 10 of the last 15 minutes: a blip does not page
FIFTEEN_MINUTES = Sustained(3, 3)

API_5XX_RATE = 0.01  # 1% of requests answered with a server error
API_4XX_RATE = 0.25  # a quarter of requests refused: a broken client, a revoked key, or abuse
API_MIN_REQUESTS = 20  # per 5 minutes: below it no rate is computed (one 404 in a quiet hour is not 100%)
STREAM_LAG = Duration.minutes(5)  # notify's iterator age: completions are late by this much
NEAR_TIMEOUT = 0.95  # an invocation's maximum duration at this share of its timeout
TRANSACTION_CONFLICTS = 100  # per 5 minutes on the requests table: counts retried against each other
TABLE_THROTTLES = 10  # read and write throttle events per 5 minutes (on-demand still has per-partition limits)


@dataclass(frozen=True)
class Monitored:
    topology: Topology
    functions: dict[str, lambda_.Function]
    api: apigw.RestApi
    stage: apigw.Stage
    images: sqs.Queue
    chunks: sqs.Queue
    dead_letters: dict[str, sqs.Queue]  # title -> queue
    drained_dead_letters: tuple[str, ...]  # the titles the reconciler drains every round
    requests_table: dynamodb.ITable


class Monitoring(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, monitored: Monitored, alarm_email: str | None) -> None:
        super().__init__(scope, construct_id)
        self.topic = sns.Topic(self, "Alarms", display_name="Image Processing System alarms", enforce_ssl=True)
        if alarm_email:
            self.topic.add_subscription(subscriptions.EmailSubscription(alarm_email))
        self.alarms: list[cloudwatch.Alarm] = []
        self._dead_letter_alarms(monitored)
        self._function_alarms(monitored.functions, monitored.topology)
        self._api_alarms(monitored.api, monitored.stage)
        self._progress_alarms(monitored)
        self._reconciler_alarms(monitored)
        self._table_alarms(monitored.requests_table)
        self.dashboard = self._dashboard(monitored)

    def _alarm(
        self,
        construct_id: str,
        metric: cloudwatch.IMetric,
        threshold: float,
        description: str,
        sustained: Sustained,
        *,
        comparison: cloudwatch.ComparisonOperator = GTE,
        missing: cloudwatch.TreatMissingData = cloudwatch.TreatMissingData.NOT_BREACHING,
    ) -> None:
        alarm = cloudwatch.Alarm(
            self,
            construct_id,
            metric=metric,
            threshold=threshold,
            evaluation_periods=sustained.periods,
            datapoints_to_alarm=sustained.datapoints,
            comparison_operator=comparison,
            treat_missing_data=missing,
            alarm_description=description,
        )
        alarm.add_alarm_action(actions.SnsAction(self.topic))
        alarm.add_ok_action(actions.SnsAction(self.topic))
        self.alarms.append(alarm)

    def _metric(self, topology: Topology, name: str, service: str) -> cloudwatch.Metric:
        """One of the functions' own metrics (powertools, by service)."""
        return cloudwatch.Metric(
            namespace=topology.environment["POWERTOOLS_METRICS_NAMESPACE"],
            metric_name=name,
            dimensions_map={"service": service},
            period=PERIOD,
            statistic="Sum",
        )

    def _dead_letter_alarms(self, monitored: Monitored) -> None:
        for title, queue in monitored.dead_letters.items():
            drained = title in monitored.drained_dead_letters
            self._alarm(
                f"{title}Waiting",
                queue.metric_approximate_number_of_messages_visible(period=PERIOD, statistic="Maximum"),
                1,
                f"Messages have stayed in the {title} queue for 15 minutes: the reconciler, which drains it every "
                "round, is failing (see its logs)."
                if drained
                else f"Messages in the {title} queue: inspect them, fix the cause, then redrive.",
                FIFTEEN_MINUTES if drained else AT_ONCE,
            )

    def _function_alarms(self, functions: dict[str, lambda_.Function], topology: Topology) -> None:
        for name, function in functions.items():
            title = name.capitalize()
            timeout_s = topology.function(name).timeout_s
            self._alarm(
                f"{title}Errors",
                function.metric_errors(period=PERIOD, statistic="Sum"),
                1,
                f"The {name} function failed (an unhandled error or a timeout) in 10 of the last 15 minutes.",
                TEN_OF_FIFTEEN,
            )
            self._alarm(
                f"{title}Throttles",
                function.metric_throttles(period=PERIOD, statistic="Sum"),
                1,
                f"The {name} function was throttled in 10 of the last 15 minutes: its concurrency or the account's "
                "is exhausted.",
                TEN_OF_FIFTEEN,
            )
            self._alarm(
                f"{title}NearTimeout",
                function.metric_duration(period=PERIOD, statistic="Maximum"),
                NEAR_TIMEOUT * timeout_s * 1000,
                f"An invocation of the {name} function took over {NEAR_TIMEOUT:.0%} of its {timeout_s} s timeout in "
                "10 of the last 15 minutes: it is about to time out (slow sources or MongoDB, or too much per call).",
                TEN_OF_FIFTEEN,
            )

    def _api_alarms(self, api: apigw.RestApi, stage: apigw.Stage) -> None:
        dimensions = {"ApiName": api.rest_api_name, "Stage": stage.stage_name}

        def total(metric_name: str) -> cloudwatch.Metric:
            return cloudwatch.Metric(
                namespace="AWS/ApiGateway",
                metric_name=metric_name,
                dimensions_map=dimensions,
                period=PERIOD,
                statistic="Sum",
            )

        for metric_name, threshold, what, sustained in (
            ("5XXError", API_5XX_RATE, "server errors", TEN_OF_FIFTEEN),
            ("4XXError", API_4XX_RATE, "client errors (bad CSVs, bad keys, throttling)", FIFTEEN_MINUTES),
        ):
            # The share of requests that failed, computed only over enough requests to mean something.
            rate = cloudwatch.MathExpression(
                expression=f"IF(requests >= {API_MIN_REQUESTS}, FILL(errors, 0) / requests, 0)",
                using_metrics={"errors": total(metric_name), "requests": total("Count")},
                period=PERIOD,
                label=f"{metric_name} rate",
            )
            self._alarm(
                f"Api{metric_name}Rate",
                rate,
                threshold,
                f"At least {threshold:.0%} of requests ({API_MIN_REQUESTS} or more per 5 minutes): {what}.",
                sustained,
            )

    def _progress_alarms(self, monitored: Monitored) -> None:
        """Work waiting (queued or in flight) while nothing of it is finished for 15 minutes."""
        topology = monitored.topology
        process, expand = topology.queue_source.function, topology.chunk_source.function
        for title, queue, finished, what in (
            ("Images", monitored.images, {"counted": self._metric(topology, "ImagesCounted", process)}, "image"),
            (
                "Chunks",
                monitored.chunks,
                {
                    "sent": self._metric(topology, "ImagesQueued", expand),
                    "requeued": self._metric(topology, "ChunksRequeued", expand),
                },
                "chunk",
            ),
        ):
            waiting = {
                "visible": queue.metric_approximate_number_of_messages_visible(period=PERIOD, statistic="Maximum"),
                "inflight": queue.metric_approximate_number_of_messages_not_visible(period=PERIOD, statistic="Maximum"),
            }
            done = " + ".join(f"FILL({name}, 0)" for name in finished)
            stalled = cloudwatch.MathExpression(
                expression=f"IF(FILL(visible, 0) + FILL(inflight, 0) > 0 AND {done} == 0, 1, 0)",
                using_metrics={**waiting, **finished},
                period=PERIOD,
                label=f"{title} waiting, none finished",
            )
            self._alarm(
                f"{title}Stalled",
                stalled,
                1,
                f"{what.capitalize()} work has waited for 15 minutes with no {what} finished: its function is failing, "
                "throttled or cannot reach MongoDB (its Errors alarm and logs say which).",
                FIFTEEN_MINUTES,
            )
        notify = monitored.functions[topology.stream_source.function]
        self._alarm(
            "CompletionStreamLag",
            notify.metric("IteratorAge", period=PERIOD, statistic="Maximum"),
            STREAM_LAG.to_milliseconds(),
            "Completions are read late from the table's stream (notify failing or retrying).",
            TEN_OF_FIFTEEN,
        )

    def _reconciler_alarms(self, monitored: Monitored) -> None:
        topology = monitored.topology
        reconciler = topology.reconcile_schedule.function
        self._alarm(
            "RequestsPastDeadline",
            self._metric(topology, "RequestsPastDeadline", reconciler),
            1,
            "Requests reached their deadline and were ended by the reconciler: work is being lost or is too slow.",
            AT_ONCE,
        )
        self._alarm(
            "ReconcilerHeartbeat",
            self._metric(topology, "ReconcilerRounds", reconciler),
            1,
            "No reconciler round has finished for 15 minutes (it runs every "
            f"{topology.reconcile_schedule.rate_minutes}): nothing ends stalled requests or drains the dead letters.",
            FIFTEEN_MINUTES,
            comparison=cloudwatch.ComparisonOperator.LESS_THAN_THRESHOLD,
            missing=cloudwatch.TreatMissingData.BREACHING,  # no datapoint is the very thing watched
        )
        self._alarm(
            "StoreOutageRounds",
            self._metric(topology, "StoreOutageRounds", reconciler),
            1,
            "A reconciler round found MongoDB or DynamoDB failing: the work waits (dead letters are put back, "
            "deadlines move by the outage); see docs/deployment.md for what to check and how to redrive.",
            AT_ONCE,
        )

    def _table_alarms(self, table: dynamodb.ITable) -> None:
        self._alarm(
            "RequestsTableTransactionConflicts",
            table.metric("TransactionConflict", period=PERIOD, statistic="Sum"),
            TRANSACTION_CONFLICTS,
            f"At least {TRANSACTION_CONFLICTS} transactions per 5 minutes on the requests table were cancelled by "
            "others on the same items for 15 minutes: one request's counter is too hot.",
            FIFTEEN_MINUTES,
        )
        throttles = cloudwatch.MathExpression(
            expression="FILL(reads, 0) + FILL(writes, 0)",
            using_metrics={
                "reads": table.metric("ReadThrottleEvents", period=PERIOD, statistic="Sum"),
                "writes": table.metric("WriteThrottleEvents", period=PERIOD, statistic="Sum"),
            },
            period=PERIOD,
            label="Requests table throttle events",
        )
        self._alarm(
            "RequestsTableThrottles",
            throttles,
            TABLE_THROTTLES,
            f"DynamoDB throttled at least {TABLE_THROTTLES} requests per 5 minutes on the requests table in 10 of "
            "the last 15 minutes (the SDK retries them; past its retries, images are retried by the queue).",
            TEN_OF_FIFTEEN,
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
