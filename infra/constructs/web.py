"""The upload page (web/: plain HTML, CSS and JS, no build step) as static files behind the assets distribution,
at https://<distribution>/app/index.html.

Why static files and not an API route: the page is the same bytes for everyone, so CloudFront serves it from
its cache, with no function invoked, no API key needed to load it, and nothing to throttle. It sits on the
distribution that already serves the outputs (one origin for the page, its thumbnails and its downloads), in
a bucket of its own (private, OAC), filled at deploy time by CDK's BucketDeployment with a config.json that
names the API. The page calls the API and posts files to the uploads bucket cross-origin: both allow exactly
this distribution's origin (CORS, see Storage and Api)."""

from __future__ import annotations

from pathlib import Path

from aws_cdk import Acknowledgment, Stack, Validations
from aws_cdk import aws_cloudfront as cloudfront
from aws_cdk import aws_cloudfront_origins as origins
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_s3_deployment as s3deploy
from constructs import Construct

from infra.constructs.storage import SECURE_BUCKET

WEB_DIR = Path(__file__).resolve().parents[2] / "web"
PAGE_PREFIX = "app/"  # the page's path on the distribution, as on the local gateway


class WebPage(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        distribution: cloudfront.Distribution,
        access_logs: s3.IBucket,
        api_url: str,
        log_retention: logs.RetentionDays,
    ) -> None:
        super().__init__(scope, construct_id)
        self.site = s3.Bucket(
            self,
            "Site",
            server_access_logs_bucket=access_logs,
            server_access_logs_prefix="s3/site/",
            **SECURE_BUCKET,
        )
        distribution.add_behavior(
            f"{PAGE_PREFIX}*",
            origins.S3BucketOrigin.with_origin_access_control(self.site),
            viewer_protocol_policy=cloudfront.ViewerProtocolPolicy.REDIRECT_TO_HTTPS,
            allowed_methods=cloudfront.AllowedMethods.ALLOW_GET_HEAD,
            cache_policy=cloudfront.CachePolicy.CACHING_OPTIMIZED,
            response_headers_policy=cloudfront.ResponseHeadersPolicy.SECURITY_HEADERS,
        )
        deployment = s3deploy.BucketDeployment(
            self,
            "Files",
            destination_bucket=self.site,
            destination_key_prefix=PAGE_PREFIX,
            sources=[
                s3deploy.Source.asset(str(WEB_DIR)),
                s3deploy.Source.json_data("config.json", {"apiUrl": api_url}),
            ],
            # Revalidated on every load (CloudFront honours it), so a deployment shows at once without invalidations.
            cache_control=[s3deploy.CacheControl.no_cache()],
            memory_limit=256,
            log_group=logs.LogGroup(self, "DeploymentLogs", retention=log_retention),
        )
        self.url = f"https://{distribution.distribution_domain_name}/{PAGE_PREFIX}index.html"
        _acknowledge_cdk_handler(self.site, deployment)


def _acknowledge_cdk_handler(site: s3.Bucket, deployment: s3deploy.BucketDeployment) -> None:
    """CDK's own deployment function (one per stack, run at deploy time only): its role and runtime are CDK's."""
    handler = deployment.handler_role.node.scope
    assert handler is not None
    site_arn = f"<{Stack.of(site).get_logical_id(site.node.default_child)}.Arn>"  # type: ignore[arg-type]
    why = "CDK's BucketDeployment handler copies the page from CDK's assets bucket to the site bucket at deploy time"
    wildcards = ("s3:GetBucket*", "s3:GetObject*", "s3:List*", "s3:Abort*", "s3:DeleteObject*")
    Validations.of(handler).acknowledge(  # type: ignore[arg-type]
        Acknowledgment(
            id="AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole]",
            reason=f"{why}; AWS's managed policy for its logs is the one CDK attaches.",
        ),
        *(
            Acknowledgment(
                id=f"AwsSolutions-IAM5[Action::{action}]", reason=f"{why}; CDK's grant, on two buckets only."
            )
            for action in wildcards
        ),
        Acknowledgment(
            id="AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:s3:::cdk-hnb659fds-assets-<AWS::AccountId>-<AWS::Region>/*]",
            reason=f"{why}: it reads the page's zip from CDK's bootstrap assets bucket.",
        ),
        Acknowledgment(
            id=f"AwsSolutions-IAM5[Resource::{site_arn}/*]", reason=f"{why}: it writes (and prunes) the page's files."
        ),
        Acknowledgment(id="AwsSolutions-L1", reason=f"{why}; CDK chooses and updates its runtime."),
    )
