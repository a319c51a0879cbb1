"""A local cloud for one benchmark phase: in this process, on free ports, with its own state folder."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stdout
from pathlib import Path
from typing import Any


def forget_shared_context() -> None:
    """Drop the functions' built roots (their clients point at the previous cloud's servers)."""
    from ips_runtime.roots import reset_roots

    reset_roots()


@contextmanager
def local_cloud(allowlist: str, workers: int, state: Path, **options: Any) -> Iterator[Any]:
    """Start LocalCloud with OUTBOUND_ALLOWLIST=`allowlist`; yields the running LocalCloud.

    The functions' stdout (powertools' metric lines, from every execution environment) goes to a log file in the
    state folder."""
    from localcloud.cloud import LocalCloud, LocalCloudConfig
    from localcloud.servers import free_port

    previous_allowlist = os.environ.get("OUTBOUND_ALLOWLIST")
    os.environ["OUTBOUND_ALLOWLIST"] = allowlist
    forget_shared_context()
    state.mkdir(parents=True, exist_ok=True)
    stdout = state / "functions-stdout.log"
    config = LocalCloudConfig(
        gateway_port=free_port(),
        aws_port=free_port(),
        state_dir=state,
        workers=workers,
        function_stdout=stdout,
        persist_aws=False,  # fresh state each phase: snapshots would only add to what is measured
        **options,
    )
    try:
        with (
            open(stdout, "a", encoding="utf-8") as sink,
            redirect_stdout(sink),
            LocalCloud(config) as cloud,
        ):
            assert cloud.gateway is not None
            yield cloud
    finally:
        forget_shared_context()
        if previous_allowlist is None:
            os.environ.pop("OUTBOUND_ALLOWLIST", None)
        else:
            os.environ["OUTBOUND_ALLOWLIST"] = previous_allowlist
