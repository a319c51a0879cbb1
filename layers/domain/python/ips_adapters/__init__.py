"""The adapters: the domain's ports (ips.shared.ports, ips.<use case>.ports) on AWS (S3 and SQS: `aws`; DynamoDB:
`dynamodb`, `chunk_progress`, `lease`, with `retries`), MongoDB (`mongo`, `mongo_reuse`, `mongo_connection`) and
outbound HTTP (`outbound`, the SSRF-safe client). The only modules that import boto3, pymongo or requests; built by
ips_runtime.adapters, never imported by the domain."""
