"""The requests table: each request's exact counters (ips_adapters.dynamodb.DynamoLedger) and each tenant's image
quotas (DynamoQuotas), with the stream Completion feeds the notify function from. Its own construct: every
function that counts, reserves or reads a request's progress is granted on it here, not through completion."""

from __future__ import annotations

from aws_cdk import CfnResource, RemovalPolicy
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from infra.permissions import FunctionAccess
from ips_adapters.dynamodb import TTL_ATTRIBUTE

# The table was first declared inside the Completion construct; its logical id stays what that path made, so
# moving it here never replaces it (a replacement would start an empty table and orphan the retained one).
REQUESTS_TABLE_LOGICAL_ID = "CompletionRequests4C1CAE78"


class RequestsTable(Construct):
    def __init__(self, scope: Construct, construct_id: str) -> None:
        super().__init__(scope, construct_id)
        self.table = dynamodb.Table(
            self,
            "Table",
            partition_key=dynamodb.Attribute(name="pk", type=dynamodb.AttributeType.STRING),
            sort_key=dynamodb.Attribute(name="sk", type=dynamodb.AttributeType.STRING),
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
            stream=dynamodb.StreamViewType.NEW_AND_OLD_IMAGES,
            time_to_live_attribute=TTL_ATTRIBUTE,
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True
            ),
            deletion_protection=True,
            removal_policy=RemovalPolicy.RETAIN,
        )
        table = self.table.node.default_child
        assert isinstance(table, CfnResource)
        table.override_logical_id(REQUESTS_TABLE_LOGICAL_ID)

    def grant(self, function: lambda_.Function, access: FunctionAccess) -> None:
        if access.table_actions:
            self.table.grant(function, *access.table_actions)

    def environment(self) -> dict[str, str]:
        return {"REQUESTS_TABLE": self.table.table_name}
