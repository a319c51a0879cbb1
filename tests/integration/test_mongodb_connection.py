"""How the functions connect to MongoDB (ips_adapters.mongo_connection), against a real wire server (SecantusDB
with authentication on) and the Atlas URI in Secrets Manager (moto): a rotated password followed by a failover
reconnects with the new secret; the stack's placeholder is refused at the cold start with what to do; each
environment opens no more connections than its pool; MONGODB_AUTH=iam speaks MONGODB-AWS."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import boto3
import pytest
from moto import mock_aws
from pymongo import MongoClient
from pymongo.errors import OperationFailure

from ips_runtime.adapters import Adapters
from ips_runtime.env_settings import SettingsError
from ips_runtime.settings import MONGODB_MAX_POOL_SIZE
from tests.unit.test_function_settings import RESOURCES


@dataclass
class AuthServer:
    """SecantusDB requiring SCRAM authentication: an admin, and the functions' user `app`."""

    address: str
    admin: MongoClient

    def uri(self, password: str) -> str:
        return f"mongodb://app:{password}@{self.address}/?directConnection=true&authSource=admin"

    def rotate(self, password: str) -> None:
        self.admin.admin.command("updateUser", "app", pwd=password)

    def drop_connections_once(self, command: str) -> None:
        """The next `command` finds its connection closed: what a failover does to a client's pool."""
        self.admin.admin.command(
            "configureFailPoint",
            "failCommand",
            mode={"times": 1},
            data={"failCommands": [command], "closeConnection": True},
        )

    def connections_created(self) -> int:
        return int(self.admin.admin.command("serverStatus")["connections"]["totalCreated"])


@pytest.fixture
def auth_server(tmp_path: Path) -> Iterator[AuthServer]:
    from secantus.server import SecantusDBServer

    # Users are created on an open server, which is then started again with authentication required.
    open_server = SecantusDBServer(host="127.0.0.1", port=0, storage_path=str(tmp_path))
    open_server.start()
    host, port = open_server.address
    with MongoClient(f"mongodb://{host}:{port}/?directConnection=true") as setup:
        setup.admin.command("createUser", "root", pwd="root-password", roles=[{"role": "root", "db": "admin"}])
        setup.admin.command("createUser", "app", pwd="first", roles=[{"role": "readWrite", "db": "ips"}])
    open_server.stop()
    server = SecantusDBServer(host="127.0.0.1", port=0, storage_path=str(tmp_path), require_auth=True)
    server.start()
    host, port = server.address
    admin = MongoClient(f"mongodb://root:root-password@{host}:{port}/?directConnection=true&authSource=admin")
    try:
        yield AuthServer(f"{host}:{port}", admin)
    finally:
        admin.close()
        server.stop()


@pytest.fixture
def secrets() -> Iterator[object]:
    with mock_aws():
        yield boto3.client("secretsmanager")


def adapters_reading(secret_arn: str, **variables: str) -> Adapters:
    """A function's adapters as the stack configures them: the Atlas URI only by its secret's ARN."""
    resources = {name: value for name, value in RESOURCES.items() if name != "MONGODB_URI"}
    environment = {**resources, "MONGODB_URI_SECRET_ARN": secret_arn, "MONGODB_DATABASE": "ips", **variables}
    return Adapters.from_env(env=environment)


def test_a_rotated_password_then_a_failover_reconnects_with_the_secrets_new_value(auth_server, secrets) -> None:
    arn = secrets.create_secret(Name=f"atlas-{uuid.uuid4().hex[:6]}", SecretString=auth_server.uri("first"))["ARN"]
    adapters = adapters_reading(arn)
    catalog = adapters.catalog
    assert catalog.get("no-such-request") is None  # connected: the pool holds an authenticated connection

    # The operator rotates the password in Atlas and puts the new URI in the secret...
    auth_server.rotate("second")
    secrets.put_secret_value(SecretId=arn, SecretString=auth_server.uri("second"))
    assert catalog.get("no-such-request") is None  # (the connections made with the old password still work)
    # ... then a failover closes the connections: new ones with the old password are refused.
    auth_server.drop_connections_once("find")
    assert catalog.get("no-such-request") is None  # reconnected with the secret read again
    auth_server.drop_connections_once("find")
    assert list(catalog.products("no-such-request")) == []  # a generator too, and on the same new client
    # Every adapter of the environment shares the new client.
    assert adapters.secret_generations.current("tenant").generation == 0


def test_credentials_still_refused_after_reading_the_secret_again_fail_with_the_servers_answer(
    auth_server, secrets
) -> None:
    arn = secrets.create_secret(Name=f"atlas-{uuid.uuid4().hex[:6]}", SecretString=auth_server.uri("wrong"))["ARN"]
    with pytest.raises(OperationFailure, match="authentication failed") as refused:
        adapters_reading(arn).catalog.get("no-such-request")
    assert refused.value.code == 18


def test_the_stacks_placeholder_is_refused_at_the_cold_start_with_what_to_do(secrets) -> None:
    # CloudFormation's GenerateSecretString (what the stack creates the secret with) is GetRandomPassword's.
    placeholder = secrets.get_random_password()["RandomPassword"]
    arn = secrets.create_secret(Name="atlas-placeholder", SecretString=placeholder)["ARN"]
    from ips_runtime.roots import build_status

    with pytest.raises(SettingsError, match="holds no MongoDB connection string") as refused:
        build_status(adapters_reading(arn))
    message = str(refused.value)
    assert arn in message and "put-secret-value" in message
    assert placeholder not in message  # whatever the secret holds is never quoted


def test_iam_auth_refuses_a_uri_with_a_password(secrets) -> None:
    arn = secrets.create_secret(Name="atlas-password", SecretString="mongodb+srv://app:hunter2@cluster0.invalid/")[
        "ARN"
    ]
    with pytest.raises(SettingsError, match="MONGODB_AUTH=iam") as refused:
        adapters_reading(arn, MONGODB_AUTH="iam").catalog  # noqa: B018 (building it connects)
    assert "hunter2" not in str(refused.value)


def test_iam_auth_opens_a_mongodb_aws_conversation_and_sends_no_password(auth_server, secrets) -> None:
    """The server (which knows SCRAM only) is asked for MONGODB-AWS: pymongo-auth-aws signed the environment's
    AWS credentials (a function's role) into the conversation; Atlas verifies them with STS."""
    arn = secrets.create_secret(
        Name="atlas-iam", SecretString=f"mongodb://{auth_server.address}/?directConnection=true"
    )["ARN"]
    with pytest.raises(OperationFailure, match="Unsupported SASL mechanism: 'MONGODB-AWS'"):
        adapters_reading(arn, MONGODB_AUTH="iam").catalog.get("no-such-request")


def test_an_environment_opens_no_more_connections_than_its_pool(auth_server, secrets) -> None:
    arn = secrets.create_secret(Name="atlas-pool", SecretString=auth_server.uri("first"))["ARN"]
    catalog = adapters_reading(arn).catalog
    catalog.get("warm-up")  # the client's monitoring connection and its first pooled one
    callers = 3 * MONGODB_MAX_POOL_SIZE
    # Each find is held by the server, so every caller wants a connection at the same time.
    auth_server.admin.admin.command(
        "configureFailPoint",
        "failCommand",
        mode={"times": callers},
        data={"failCommands": ["find"], "blockConnection": True, "blockTimeMS": 300},
    )
    before = auth_server.connections_created()
    threads = [threading.Thread(target=catalog.get, args=(f"request-{n}",)) for n in range(callers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # At most the pool (one already open); pymongo's default of 100 would have opened one per caller.
    assert 0 < auth_server.connections_created() - before <= MONGODB_MAX_POOL_SIZE
