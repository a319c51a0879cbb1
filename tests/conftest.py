"""Fixtures shared by every tier: real servers on 127.0.0.1, started by the tests that need them."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SAMPLE_IMAGES = ROOT / "samples" / "images"  # shipped in the repository, see its MANIFEST.tsv

# No test may reach a real AWS account: fake credentials before anything imports boto3.
os.environ.update(
    {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCOUNT_ID_ENDPOINT_MODE": "disabled",
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_METRICS_DISABLED": "true",
        "POWERTOOLS_LOG_LEVEL": "WARNING",
    }
)


@pytest.fixture(scope="session")
def corpus() -> Path:
    """The real sample photos the tests and the demo use (samples/images)."""
    assert (SAMPLE_IMAGES / "MANIFEST.tsv").is_file(), f"the sample images are missing at {SAMPLE_IMAGES}"
    return SAMPLE_IMAGES


@pytest.fixture(scope="session")
def image_server(corpus: Path) -> Iterator[object]:
    from localcloud.peers import ImageServer

    with ImageServer(corpus) as server:
        yield server


@pytest.fixture(scope="session")
def mongo_uri(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real MongoDB wire server (SecantusDB, in-process) for the whole session; tests use their own database."""
    from secantus.server import SecantusDBServer

    server = SecantusDBServer(host="127.0.0.1", port=0, storage_path=str(tmp_path_factory.mktemp("mongo")))
    server.start()
    host, port = server.address
    yield f"mongodb://{host}:{port}/?directConnection=true"
    server.stop()


@pytest.fixture(scope="session")
def aws_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The local cloud's AWS emulator (moto's server for S3 and SQS) as a child process."""
    from localcloud.servers import aws_emulator, free_port

    server = aws_emulator(free_port(), tmp_path_factory.mktemp("aws-logs"))
    server.start()
    yield f"http://127.0.0.1:{server.port}"
    server.stop()


@pytest.fixture(scope="session")
def dynamodb_local_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The local cloud's DynamoDB Local (localcloud.dynamodb_local, in memory) as a child process; `make install`
    installs it."""
    from localcloud.dynamodb_local import dynamodb_local
    from localcloud.servers import free_port

    server = dynamodb_local(free_port(), None, tmp_path_factory.mktemp("dynamodb-local-logs"))
    server.start()
    yield f"http://127.0.0.1:{server.port}"
    server.stop()
