"""The MongoDB Atlas URI and the webhook signing secret, in Secrets Manager: never in the template or a variable.

Functions get the secrets' ARNs (`MONGODB_URI_SECRET_ARN`, `WEBHOOK_SECRET_SECRET_ARN`) and read the values once
per container through powertools parameters (ips_runtime.settings.resolve_secret, cached). Which function may read
which secret follows from the same settings models as its environment: a model that reads a secret's ARN variable
gets GetSecretValue on that secret, and no other function does."""

from __future__ import annotations

from aws_cdk import Acknowledgment, ArnFormat, SecretValue, Stack, Validations
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from ips_runtime.settings import FunctionSettings


class Secrets(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, mongodb_secret: str | None) -> None:
        super().__init__(scope, construct_id)
        self.mongodb_uri, self._mongodb_uri_arn = self._mongodb(mongodb_secret)
        # Standard Webhooks secrets are `whsec_` + base64, and Secrets Manager cannot generate a prefix: a
        # generated key (64 alphanumerics, all base64 characters: 48 bytes) is referenced dynamically, so the value
        # is put together by CloudFormation at deploy time and never appears in the template.
        signing_key = secretsmanager.Secret(
            self,
            "WebhookSigningKey",
            description="Random key the webhook signing secret was made from at creation; read by no function",
            generate_secret_string=secretsmanager.SecretStringGenerator(password_length=64, exclude_punctuation=True),
        )
        self.webhook_signing = secretsmanager.Secret(
            self,
            "WebhookSigningSecret",
            description="Master webhook secret (whsec_...): each tenant's signing secret is derived from it; never "
            "give it out (tenants read their own with GET /api/v1/webhook-secret)",
            secret_string_value=SecretValue.unsafe_plain_text(f"whsec_{signing_key.secret_value.unsafe_unwrap()}"),
        )
        for secret, reason in (
            (
                self.webhook_signing,
                "Rotating the master changes every tenant's secret at once: tenants rotate their own through the API "
                "(both secrets sign during the rotation window); the master is rotated only if it leaks.",
            ),
            (signing_key, "Used once, to make the signing secret; rotating it would change nothing."),
        ):
            Validations.of(secret).acknowledge(Acknowledgment(id="AwsSolutions-SMG4", reason=reason))

    def _mongodb(self, reference: str | None) -> tuple[secretsmanager.ISecret, str]:
        """The secret and the ARN to grant: imported by ARN or name, or created to be filled in after deploy."""
        if reference is None:
            secret = secretsmanager.Secret(
                self,
                "MongoDbUri",
                description="MongoDB Atlas connection string (mongodb+srv://...): put it here after the first deploy",
            )
            Validations.of(secret).acknowledge(
                Acknowledgment(
                    id="AwsSolutions-SMG4",
                    reason="Atlas credentials are rotated in Atlas, then the new URI is put here (README).",
                )
            )
            return secret, secret.secret_arn
        if reference.startswith("arn:"):
            secret = secretsmanager.Secret.from_secret_complete_arn(self, "MongoDbUri", reference)
            return secret, secret.secret_arn
        # By name: Secrets Manager appends six random characters to the name in the secret's ARN.
        secret = secretsmanager.Secret.from_secret_name_v2(self, "MongoDbUri", reference)
        return secret, Stack.of(self).format_arn(
            service="secretsmanager",
            resource="secret",
            resource_name=f"{reference}-??????",
            arn_format=ArnFormat.COLON_RESOURCE_NAME,
        )

    def environment(self) -> dict[str, str]:
        """The secrets' ARNs: a function is given those its settings model reads (infra/constructs/functions.py)."""
        return {
            "MONGODB_URI_SECRET_ARN": self.mongodb_uri.secret_arn,
            "WEBHOOK_SECRET_SECRET_ARN": self.webhook_signing.secret_arn,
        }

    def grant(self, function: lambda_.Function, model: type[FunctionSettings]) -> None:
        """GetSecretValue (what powertools calls) on each secret whose ARN variable `model` reads, and no other."""
        grantable = {
            "MONGODB_URI_SECRET_ARN": self._mongodb_uri_arn,
            "WEBHOOK_SECRET_SECRET_ARN": self.webhook_signing.secret_arn,
        }
        arns = [arn for variable, arn in grantable.items() if variable in model.variables()]
        if arns:
            function.add_to_role_policy(iam.PolicyStatement(actions=["secretsmanager:GetSecretValue"], resources=arns))
