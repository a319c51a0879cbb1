"""The execution environment's one MongoDB client, made again when the server refuses its credentials.

A client's credentials are fixed when it is made. After a password rotation, the connections it already holds
stay authenticated, but any new one (a failover, an idle socket closed by Atlas) is refused until the container
recycles. So every MongoDB adapter is built through `Reconnecting`: when a call meets a refusal, the connection
string is read again (bypassing the secret's cache), the client is made anew, the adapter is built on it, and
the call is made once more. An authentication failure happens while a connection is opened, before the
command is sent, so making the call again repeats nothing. With `MONGODB-AWS` (the functions' IAM roles) there
is no password to rotate; a refusal there (expired role credentials) is handled the same way."""

from __future__ import annotations

import functools
import inspect
import threading
from collections.abc import Callable, Iterator
from typing import Any

from pymongo import MongoClient
from pymongo.database import Database
from pymongo.errors import OperationFailure, PyMongoError, ServerSelectionTimeoutError

AUTHENTICATION_FAILED = 18  # MongoDB's AuthenticationFailed


def connect(uri: str, database: str, *, max_pool_size: int = 100, aws_auth: bool = False) -> Database[Any]:
    """A client on `uri` (its options win), `max_pool_size` connections at most; `aws_auth`: MONGODB-AWS, the
    AWS credentials of the environment (a Lambda function's role), with no user or password in the URI."""
    options: dict[str, Any] = {
        # tz_aware: datetimes come back as UTC-aware, the same as they went in.
        "tz_aware": True,
        "serverSelectionTimeoutMS": 5000,
        "maxPoolSize": max_pool_size,
    }
    if aws_auth:
        options |= {"authMechanism": "MONGODB-AWS", "authSource": "$external"}
    return MongoClient(uri, **options)[database]


class MongoConnection:
    """`database` is the current client's; `reconnect` replaces it with one made from a freshly read URI."""

    def __init__(self, read_uri: Callable[[bool], str], make: Callable[[str], Database[Any]]) -> None:
        self._read_uri = read_uri  # (fresh) -> the connection string; fresh: not from a cache
        self._make = make
        self._lock = threading.Lock()
        self.database = make(read_uri(False))

    def reconnect(self, failed: Database[Any]) -> Database[Any]:
        """The database of a new client, unless another thread has already replaced the one that `failed`."""
        with self._lock:
            if self.database is failed:
                self.database = self._make(self._read_uri(True))
                failed.client.close()
            return self.database

    def refused(self, error: PyMongoError, database: Database[Any]) -> bool:
        """Whether `error` is the server refusing the client's credentials: the command's answer, or server
        selection giving up on a server whose last connection attempt was refused."""
        if isinstance(error, OperationFailure):
            return error.code == AUTHENTICATION_FAILED
        if isinstance(error, ServerSelectionTimeoutError):
            servers = database.client.topology_description.server_descriptions().values()
            return any(
                isinstance(server.error, OperationFailure) and server.error.code == AUTHENTICATION_FAILED
                for server in servers
            )
        return False


class Reconnecting:
    """An adapter built by `build` on the connection's database, built again on a new client when a call meets
    refused credentials (and that call made once more). A generator that fails so before its first item is
    started again; after it, the client is still replaced and the error raised (its items are not repeated)."""

    def __init__(self, connection: MongoConnection, build: Callable[[Database[Any]], Any]) -> None:
        self._connection, self._build = connection, build
        database = connection.database
        self._current = (database, build(database))

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._current[1], name)
        if not callable(attribute):
            return attribute

        @functools.wraps(attribute)
        def call(*args: Any, **kwargs: Any) -> Any:
            database, adapter = self._current
            try:
                result = getattr(adapter, name)(*args, **kwargs)
            except PyMongoError as error:
                if not self._connection.refused(error, database):
                    raise
                return getattr(self._rebuilt(database), name)(*args, **kwargs)
            if inspect.isgenerator(result):
                return self._iterate(result, database, lambda adapter: getattr(adapter, name)(*args, **kwargs))
            return result

        return call

    def _rebuilt(self, failed: Database[Any]) -> Any:
        database = self._connection.reconnect(failed)
        if self._current[0] is not database:
            self._current = (database, self._build(database))
        return self._current[1]

    def _iterate(
        self, items: Iterator[Any], database: Database[Any], again: Callable[[Any], Iterator[Any]]
    ) -> Iterator[Any]:
        started = False
        try:
            for item in items:
                started = True
                yield item
        except PyMongoError as error:
            if not self._connection.refused(error, database):
                raise
            adapter = self._rebuilt(database)
            if started:
                raise
            yield from again(adapter)
