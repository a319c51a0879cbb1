"""The reconciler's schedule: an EventBridge rate rule invoking the reconcile function, with no asynchronous
retries (its grants come from infra/permissions.py through the other concerns' constructs, like every
function's)."""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from infra.topology import Schedule


class Reconciler(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, function: lambda_.Function, schedule: Schedule) -> None:
        super().__init__(scope, construct_id)
        self.rule = events.Rule(
            self,
            "Schedule",
            schedule=events.Schedule.rate(Duration.minutes(schedule.rate_minutes)),
            description=f"Every {schedule.rate_minutes} min: the {schedule.function} function's round",
        )
        # Retried by EventBridge if the invocation cannot be made; a round that fails is not retried by Lambda (its
        # retries would start rounds between the scheduled ones): the next scheduled round goes on. Rounds run one
        # at a time whatever the concurrency (a lease in the requests table, ips.reconcile.service).
        self.rule.add_target(targets.LambdaFunction(function, retry_attempts=2))
        function.configure_async_invoke(retry_attempts=0)
