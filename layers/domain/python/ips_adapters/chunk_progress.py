"""Chunk progress on DynamoDB, in the ledger's table: one item per chunk (pk = the request, sk CHUNK#<first row>)
holding how many of its image messages were sent. Outside the completion filter (which matches COUNTER items)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ips_adapters.dynamodb import TTL_ATTRIBUTE

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient


class DynamoChunkProgress:
    def __init__(
        self, client: DynamoDBClient, table: str, *, retention_days: int = 30, clock: Callable[[], float] = time.time
    ) -> None:
        self._client = client
        self.table = table
        self._retention = retention_days * 86_400
        self._clock = clock

    @staticmethod
    def _key(request_id: str, first_row: int) -> dict[str, Any]:
        return {"pk": {"S": request_id}, "sk": {"S": f"CHUNK#{first_row}"}}

    def sent(self, request_id: str, first_row: int) -> int:
        item = self._client.get_item(
            TableName=self.table, Key=self._key(request_id, first_row), ConsistentRead=True
        ).get("Item")
        return int(item["sent"]["N"]) if item else 0

    def advance(self, request_id: str, first_row: int, sent: int) -> None:
        # Only forwards: an overlapping delivery that is behind leaves the further mark in place.
        with contextlib.suppress(self._client.exceptions.ConditionalCheckFailedException):
            self._client.update_item(
                TableName=self.table,
                Key=self._key(request_id, first_row),
                UpdateExpression="SET sent = :sent, #expires = :expires",
                ConditionExpression="attribute_not_exists(sent) OR sent < :sent",
                ExpressionAttributeNames={"#expires": TTL_ATTRIBUTE},
                ExpressionAttributeValues={
                    ":sent": {"N": str(sent)},
                    ":expires": {"N": str(int(self._clock()) + self._retention)},
                },
            )
