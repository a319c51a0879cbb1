"""Buckets (uploads, processed) and the requests table with its stream."""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_s3 as s3
from constructs import Construct

from ips.adapters.dynamodb import TTL_ATTRIBUTE


class Storage(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, upload_retention_days: int = 30) -> None:
        super().__init__(scope, construct_id)
        secure = {
            "encryption": s3.BucketEncryption.S3_MANAGED,
            "block_public_access": s3.BlockPublicAccess.BLOCK_ALL,
            "enforce_ssl": True,
            "removal_policy": RemovalPolicy.RETAIN,
        }
        self.uploads = s3.Bucket(
            self,
            "Uploads",
            lifecycle_rules=[s3.LifecycleRule(expiration=Duration.days(upload_retention_days))],
            **secure,
        )
        self.processed = s3.Bucket(self, "Processed", **secure)
        self.requests = dynamodb.Table(
            self,
            "Requests",
            partition_key=dynamodb.Attribute(name="pk", type=dynamodb.AttributeType.STRING),
            sort_key=dynamodb.Attribute(name="sk", type=dynamodb.AttributeType.STRING),
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
            stream=dynamodb.StreamViewType.NEW_AND_OLD_IMAGES,
            time_to_live_attribute=TTL_ATTRIBUTE,
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True
            ),
            removal_policy=RemovalPolicy.RETAIN,
        )
