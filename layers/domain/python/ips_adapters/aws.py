"""S3 and SQS adapters."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, TypedDict

from tenacity import RetryError

from ips.reconcile.ports import DeadLetter
from ips.shared.ports import ObjectChanged, PresignedPost, StoredObject
from ips_adapters.retries import Again, again

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import CompletedPartTypeDef
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_sqs.literals import QueueAttributeNameType
    from mypy_boto3_sqs.type_defs import SendMessageBatchRequestEntryTypeDef

# Processed images never change under their key (a key names the request, the image and the options), so
# CloudFront and browsers may keep them for as long as the bucket does (365 days by default).
IMMUTABLE = "public, max-age=31536000, immutable"


class _Headers(TypedDict, total=False):
    CacheControl: str


class S3BlobStore:
    PART_BYTES = 8 * 1024 * 1024  # S3's parts are at least 5 MiB (but the last)

    def __init__(self, client: S3Client, bucket: str, *, cache_control: str | None = None) -> None:
        self._client = client
        self.bucket = bucket
        # Stored with every object written (S3 serves it as the Cache-Control header, CloudFront passes it on).
        self._metadata: _Headers = {"CacheControl": cache_control} if cache_control else {}

    def put(self, key: str, data: bytes, content_type: str) -> None:
        self._client.put_object(Bucket=self.bucket, Key=key, Body=data, ContentType=content_type, **self._metadata)

    def get(self, key: str) -> bytes:
        data: bytes = self._client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        return data

    def copy(self, source_key: str, key: str, content_type: str) -> bool:
        try:
            self._client.copy_object(
                Bucket=self.bucket,
                Key=key,
                CopySource={"Bucket": self.bucket, "Key": source_key},
                ContentType=content_type,
                MetadataDirective="REPLACE",  # the copy's own metadata, not its source's
                **self._metadata,
            )
        except self._client.exceptions.ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise
        return True

    def put_stream(self, key: str, pieces: Iterable[bytes], content_type: str) -> None:
        """One PutObject when it all fits in a part; else a multipart upload, one part buffered at a time (and
        aborted on failure, so no half-written parts are left to pay for)."""
        part = bytearray()
        upload_id: str | None = None
        parts: list[CompletedPartTypeDef] = []
        try:
            for piece in pieces:
                part += piece
                if len(part) >= self.PART_BYTES:
                    if upload_id is None:
                        upload_id = self._client.create_multipart_upload(
                            Bucket=self.bucket, Key=key, ContentType=content_type, **self._metadata
                        )["UploadId"]
                    parts.append(self._upload_part(key, upload_id, len(parts) + 1, bytes(part)))
                    part.clear()
            if upload_id is None:
                self.put(key, bytes(part), content_type)
                return
            if part or not parts:
                parts.append(self._upload_part(key, upload_id, len(parts) + 1, bytes(part)))
            self._client.complete_multipart_upload(
                Bucket=self.bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}
            )
        except BaseException:
            if upload_id is not None:
                self._client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
            raise

    def _upload_part(self, key: str, upload_id: str, number: int, data: bytes) -> CompletedPartTypeDef:
        answer = self._client.upload_part(Bucket=self.bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=data)
        return {"PartNumber": number, "ETag": answer["ETag"]}


class S3UploadStore(S3BlobStore):
    def get_range(self, key: str, start: int, end: int) -> bytes:
        """Bytes [start, end) of an object."""
        if end <= start:
            return b""
        data: bytes = self._client.get_object(Bucket=self.bucket, Key=key, Range=f"bytes={start}-{end - 1}")[
            "Body"
        ].read()
        return data

    def stream(self, key: str) -> Iterable[bytes]:
        body = self._client.get_object(Bucket=self.bucket, Key=key)["Body"]
        try:
            yield from body.iter_chunks(chunk_size=1 << 20)
        finally:
            body.close()

    def head(self, key: str) -> StoredObject | None:
        try:
            found = self._client.head_object(Bucket=self.bucket, Key=key)
        except self._client.exceptions.ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return None
            raise
        return StoredObject(int(found["ContentLength"]), str(found["ETag"]).strip('"'))

    def copy_pinned(self, source: str, etag: str, target: str) -> None:
        try:
            self._client.copy_object(
                Bucket=self.bucket,
                Key=target,
                CopySource={"Bucket": self.bucket, "Key": source},
                CopySourceIfMatch=f'"{etag}"',
            )
        except self._client.exceptions.ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("PreconditionFailed", "412", "NoSuchKey", "404"):
                raise ObjectChanged(f"{source} is no longer {etag}") from exc
            raise

    def presigned_post(self, key: str, max_bytes: int, expires_s: int, content_type: str) -> PresignedPost:
        """A browser-style POST bound to one key, one content type and a size range, valid for `expires_s`."""
        post = self._client.generate_presigned_post(
            Bucket=self.bucket,
            Key=key,
            Fields={"Content-Type": content_type},
            Conditions=[{"Content-Type": content_type}, ["content-length-range", 1, max_bytes]],
            ExpiresIn=expires_s,
        )
        return PresignedPost(post["url"], {name: str(value) for name, value in post["fields"].items()})

    def presigned_get(self, key: str, expires_s: int) -> str:
        url: str = self._client.generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": key}, ExpiresIn=expires_s
        )
        return url


# Every message a queue holds, whatever its state.
BACKLOG_COUNTS: tuple[QueueAttributeNameType, ...] = (
    "ApproximateNumberOfMessages",
    "ApproximateNumberOfMessagesNotVisible",
    "ApproximateNumberOfMessagesDelayed",
)


class SqsTaskQueue:
    BATCH = 10  # SendMessageBatch's limit
    MAX_DELAY_S = 900  # SQS's longest DelaySeconds

    def __init__(self, client: SQSClient, queue_url: str, *, attempts: int = 5) -> None:
        self._client = client
        self.queue_url = queue_url
        self._attempts = attempts

    def delay(self, receipt_handle: str, seconds: float) -> None:
        self._client.change_message_visibility(
            QueueUrl=self.queue_url, ReceiptHandle=receipt_handle, VisibilityTimeout=max(0, math.ceil(seconds))
        )

    def send_after(self, body: str, seconds: float) -> None:
        delay = min(self.MAX_DELAY_S, max(0, math.ceil(seconds)))
        self._client.send_message(QueueUrl=self.queue_url, MessageBody=body, DelaySeconds=delay)

    def backlog(self) -> int:
        counts = self._client.get_queue_attributes(QueueUrl=self.queue_url, AttributeNames=list(BACKLOG_COUNTS))
        return sum(int(counts["Attributes"].get(name, "0")) for name in BACKLOG_COUNTS)

    def send(self, bodies: Sequence[str]) -> None:
        for start in range(0, len(bodies), self.BATCH):
            self._send_batch(bodies[start : start + self.BATCH])

    def _send_batch(self, bodies: Sequence[str]) -> None:
        pending = {str(number): body for number, body in enumerate(bodies)}
        try:
            for attempt in again(self._attempts, 0.1, jitter=False):
                with attempt:
                    pending = self._unsent(pending)
                    if pending:
                        raise Again(f"{len(pending)} entries failed on SQS's side")
        except RetryError:
            raise RuntimeError(f"SQS kept failing {len(pending)} message(s) after {self._attempts} attempts") from None

    def _unsent(self, pending: dict[str, str]) -> dict[str, str]:
        """Send the entries; those SQS failed on its side come back (to send again), those it refused raise."""
        entries: list[SendMessageBatchRequestEntryTypeDef] = [
            {"Id": entry_id, "MessageBody": body} for entry_id, body in pending.items()
        ]
        failed = self._client.send_message_batch(QueueUrl=self.queue_url, Entries=entries).get("Failed", [])
        senders_fault = [failure for failure in failed if failure.get("SenderFault")]
        if senders_fault:
            raise RuntimeError(f"SQS refused messages: {senders_fault}")
        return {failure["Id"]: pending[failure["Id"]] for failure in failed}


class SqsDeadLetterQueue:
    def __init__(self, client: SQSClient, queue_url: str) -> None:
        self._client = client
        self.queue_url = queue_url

    def receive(self, max_messages: int) -> list[DeadLetter]:
        messages = self._client.receive_message(
            QueueUrl=self.queue_url,
            MaxNumberOfMessages=min(10, max_messages),
            WaitTimeSeconds=0,
            MessageSystemAttributeNames=["ApproximateReceiveCount"],
        ).get("Messages", [])
        return [
            DeadLetter(
                message["MessageId"],
                message["Body"],
                message["ReceiptHandle"],
                int(message.get("Attributes", {}).get("ApproximateReceiveCount", 0)),
            )
            for message in messages
        ]

    def delete(self, letter: DeadLetter) -> None:
        self._client.delete_message(QueueUrl=self.queue_url, ReceiptHandle=letter.receipt)
