"""Named leases on DynamoDB, in the ledger's table: one item per lease (pk LEASE#<name>, sk LEASE) holding its
holder and until when. Outside the completion filter (which matches COUNTER items); expired by the table's TTL a
day after its time, so a lease never used again does not stay."""

from __future__ import annotations

import contextlib
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ips_adapters.dynamodb import TTL_ATTRIBUTE

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

_KEEP_S = 86_400


class DynamoLease:
    def __init__(self, client: DynamoDBClient, table: str) -> None:
        self._client = client
        self.table = table

    @staticmethod
    def _key(name: str) -> dict[str, Any]:
        return {"pk": {"S": f"LEASE#{name}"}, "sk": {"S": "LEASE"}}

    def acquire(self, name: str, holder: str, now: datetime, until: datetime) -> bool:
        try:
            self._client.put_item(
                TableName=self.table,
                Item={
                    **self._key(name),
                    "holder": {"S": holder},
                    "until": {"N": str(until.timestamp())},
                    TTL_ATTRIBUTE: {"N": str(int(until.timestamp()) + _KEEP_S)},
                },
                ConditionExpression="attribute_not_exists(pk) OR #until < :now",
                ExpressionAttributeNames={"#until": "until"},
                ExpressionAttributeValues={":now": {"N": str(now.timestamp())}},
            )
        except self._client.exceptions.ConditionalCheckFailedException:
            return False
        return True

    def release(self, name: str, holder: str) -> None:
        # Only its own: a holder that outlived its lease must not end the next holder's.
        with contextlib.suppress(self._client.exceptions.ConditionalCheckFailedException):
            self._client.update_item(
                TableName=self.table,
                Key=self._key(name),
                UpdateExpression="SET #until = :zero",
                ConditionExpression="holder = :holder",
                ExpressionAttributeNames={"#until": "until"},
                ExpressionAttributeValues={":zero": {"N": "0"}, ":holder": {"S": holder}},
            )
