"""The uploads bucket (input and output CSVs: private, read only through presigned URLs), the processed bucket
(images only) served through CloudFront with origin access control, and the bucket both write their access logs
to. Both expire what they hold after their retention (deploy parameters).

Buckets are encrypted (SSE-S3), private, TLS-only, logged and retained when the stack is deleted."""

from __future__ import annotations

from aws_cdk import Acknowledgment, Duration, RemovalPolicy, Stack, Validations
from aws_cdk import aws_cloudfront as cloudfront
from aws_cdk import aws_cloudfront_origins as origins
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_s3 as s3
from constructs import Construct

from infra.permissions import FunctionAccess

SECURE_BUCKET = {
    "encryption": s3.BucketEncryption.S3_MANAGED,
    "block_public_access": s3.BlockPublicAccess.BLOCK_ALL,
    "enforce_ssl": True,
    "removal_policy": RemovalPolicy.RETAIN,
}


class Storage(Construct):
    def __init__(
        self, scope: Construct, construct_id: str, *, upload_retention_days: int, processed_retention_days: int
    ) -> None:
        super().__init__(scope, construct_id)
        self.access_logs = s3.Bucket(
            self,
            "AccessLogs",
            # CloudFront's standard logs are delivered with an ACL: the bucket owner must be able to take them.
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_PREFERRED,
            lifecycle_rules=[s3.LifecycleRule(expiration=Duration.days(365))],
            **SECURE_BUCKET,
        )
        self.uploads = s3.Bucket(
            self,
            "Uploads",
            lifecycle_rules=[
                s3.LifecycleRule(
                    expiration=Duration.days(upload_retention_days),
                    abort_incomplete_multipart_upload_after=Duration.days(1),
                )
            ],
            server_access_logs_bucket=self.access_logs,
            server_access_logs_prefix="s3/uploads/",
            **SECURE_BUCKET,
        )
        self.processed = s3.Bucket(
            self,
            "Processed",
            lifecycle_rules=[s3.LifecycleRule(expiration=Duration.days(processed_retention_days))],
            server_access_logs_bucket=self.access_logs,
            server_access_logs_prefix="s3/processed/",
            **SECURE_BUCKET,
        )
        self.assets = cloudfront.Distribution(
            self,
            "Assets",
            comment="Processed images (stable, cacheable URLs); output CSVs are never served here",
            default_behavior=cloudfront.BehaviorOptions(
                origin=origins.S3BucketOrigin.with_origin_access_control(self.processed),
                viewer_protocol_policy=cloudfront.ViewerProtocolPolicy.REDIRECT_TO_HTTPS,
                allowed_methods=cloudfront.AllowedMethods.ALLOW_GET_HEAD,
                cache_policy=cloudfront.CachePolicy.CACHING_OPTIMIZED,
            ),
            price_class=cloudfront.PriceClass.PRICE_CLASS_100,
            http_version=cloudfront.HttpVersion.HTTP2_AND_3,
            enable_logging=True,
            log_bucket=self.access_logs,
            log_file_prefix="cloudfront/",
        )
        Validations.of(self.assets).acknowledge(
            Acknowledgment(
                id="AwsSolutions-CFR1",
                reason="Images are public product pictures for storefronts anywhere: no geographic restriction.",
            ),
            Acknowledgment(
                id="AwsSolutions-CFR2",
                reason="A static, read-only origin (GET/HEAD of unguessable keys, OAC-signed): WAF would add cost, "
                "not protection.",
            ),
            Acknowledgment(
                id="AwsSolutions-CFR4",
                reason="The default *.cloudfront.net certificate cannot pin TLSv1.2; a custom domain with an ACM "
                "certificate would (see README).",
            ),
        )
        self.asset_base_url = f"https://{self.assets.distribution_domain_name}"
        # The upload page is served by the same distribution (infra/constructs/web.py): its origin may send the
        # presigned POST straight to the uploads bucket, and no other.
        self.web_origin = self.asset_base_url
        self.uploads.add_cors_rule(
            allowed_methods=[s3.HttpMethods.POST, s3.HttpMethods.GET],  # upload; save the output CSV
            allowed_origins=[self.web_origin],
            allowed_headers=["*"],
            max_age=600,
        )

    def grant(self, function: lambda_.Function, access: FunctionAccess) -> None:
        """Exactly GetObject/PutObject (and AbortMultipartUpload) on the key patterns the function reads or writes,
        and ListBucket on a bucket where asked."""
        self.grant_listing(function, access)
        for action, bucket, patterns in (
            ("s3:GetObject", self.uploads, access.reads_uploads),
            ("s3:PutObject", self.uploads, access.writes_uploads),
            ("s3:AbortMultipartUpload", self.uploads, access.aborts_uploads),
            ("s3:PutObject", self.processed, access.writes_processed),
            ("s3:GetObject", self.processed, access.reads_processed),
        ):
            if not patterns:
                continue
            function.add_to_role_policy(
                iam.PolicyStatement(actions=[action], resources=[bucket.arn_for_objects(key) for key in patterns])
            )
            bucket_arn = f"<{Stack.of(self).get_logical_id(bucket.node.default_child)}.Arn>"  # type: ignore[arg-type]
            Validations.of(function.role).acknowledge(  # type: ignore[arg-type]
                *(
                    Acknowledgment(
                        id=f"AwsSolutions-IAM5[Resource::{bucket_arn}/{key}]",
                        reason="Keys start with request IDs made at run time: the pattern is the key scheme itself.",
                    )
                    for key in patterns
                )
            )

    def grant_listing(self, function: lambda_.Function, access: FunctionAccess) -> None:
        for lists, bucket in ((access.lists_uploads, self.uploads), (access.lists_processed, self.processed)):
            if lists:
                function.add_to_role_policy(
                    iam.PolicyStatement(actions=["s3:ListBucket"], resources=[bucket.bucket_arn])
                )

    def environment(self) -> dict[str, str]:
        return {
            "UPLOADS_BUCKET": self.uploads.bucket_name,
            "PROCESSED_BUCKET": self.processed.bucket_name,
            "ASSET_BASE_URL": self.asset_base_url,
            "WEB_ORIGIN": self.web_origin,  # the API's CORS headers allow the upload page's origin
        }
