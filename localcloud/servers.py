"""Backend servers as child processes on 127.0.0.1: the AWS emulator (moto) and the MongoDB wire server."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

LOOPBACK = "127.0.0.1"
# Each server runs in a process group of its own: Ctrl-C in a terminal is SIGINT to the whole foreground group,
# and the local cloud stops its servers itself, last, in order (a database gone before the functions would fail
# their last invocations; SecantusDB installs its own SIGINT handler, so ignoring the signal is not enough). So
# that a server never outlives whoever started it (a test run killed with its group), it is started through this
# trampoline: the kernel sends it SIGTERM when its parent dies (PR_SET_PDEATHSIG, kept across exec; Linux, as
# Lambda), then it execs the server. The parent is the thread that started it: servers start from the main thread.
CHILD_OF_THIS_PROCESS = [
    sys.executable,
    "-S",
    "-c",
    "import ctypes, os, signal, sys; ctypes.CDLL(None).prctl(1, signal.SIGTERM); "  # 1: PR_SET_PDEATHSIG
    "os.getppid() == int(sys.argv[1]) or sys.exit(1); os.execvp(sys.argv[2], sys.argv[2:])",
]
PROJECT_ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((LOOPBACK, 0))
        return probe.getsockname()[1]


def wait_for_port(port: int, process: subprocess.Popen[bytes] | None, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode} before listening on {port}")
        try:
            with socket.create_connection((LOOPBACK, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"nothing listened on {LOOPBACK}:{port} within {timeout}s")


def _executable(name: str) -> str:
    beside_python = Path(sys.executable).with_name(name)
    return str(beside_python) if beside_python.exists() else shutil.which(name) or name


class ChildServer:
    """A server process bound to loopback, stopped with its owner."""

    def __init__(
        self,
        name: str,
        command: list[str],
        port: int,
        log_path: Path,
        stop_timeout_s: float = 10,
        start_timeout_s: float = 30,
    ) -> None:
        self.name, self.command, self.port, self.log_path = name, command, port, log_path
        self.stop_timeout_s, self.start_timeout_s = stop_timeout_s, start_timeout_s
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.spawn()
        self.wait()

    def spawn(self) -> None:
        """Start the process without waiting for it to listen (servers that start slowly start together)."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(  # noqa: S603 - fixed command lines built here
                [*CHILD_OF_THIS_PROCESS, str(os.getpid()), *self.command],
                cwd=PROJECT_ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                process_group=0,
            )

    def wait(self) -> None:
        try:
            wait_for_port(self.port, self.process, self.start_timeout_s)
        except Exception:
            self.stop()
            raise RuntimeError(f"{self.name} did not start; see {self.log_path}") from None

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=self.stop_timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def aws_emulator(port: int, log_dir: Path, state_dir: Path | None = None) -> ChildServer:
    """moto's server with atomic DynamoDB writes and fast SQS (localcloud.aws_emulator), its state kept in
    `state_dir` across restarts when given."""
    persist = ["--state-dir", str(state_dir)] if state_dir is not None else []
    return ChildServer(
        "aws-emulator",
        [sys.executable, "-m", "localcloud.aws_emulator", "--port", str(port), *persist],
        port,
        log_dir / "aws.log",
        stop_timeout_s=120,  # room for the last snapshot
    )


def mongo_server(port: int, storage: Path | str, log_dir: Path) -> ChildServer:
    """SecantusDB (GPL-2.0, dev/local only): MongoDB's wire protocol on WiredTiger, data kept in `storage`.

    Standalone, as a single mongod is: by default it presents itself as a one-member replica set, so pymongo
    makes every write retryable, and SecantusDB keeps each retryable write's reply for 30 minutes (up to
    10,000) and walks, then sorts, all of them on every write. The cost of a write grew with the writes before
    it (SecantusDB's CPU per small image doubled and tripled over three catalogues). Standalone it keeps no
    such records and writes no oplog (nothing here reads one: no change streams, no transactions)."""
    if storage != ":memory:":
        Path(storage).mkdir(parents=True, exist_ok=True)
    return ChildServer(
        "secantusdb",
        [
            _executable("secantusd-py"),
            "--host",
            LOOPBACK,
            "--port",
            str(port),
            "--storage-path",
            str(storage),
            "--log-level",
            "WARNING",
            "--standalone",
        ],
        port,
        log_dir / "mongo.log",
    )
