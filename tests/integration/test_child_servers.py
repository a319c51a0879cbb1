"""The local cloud's servers (localcloud.servers.ChildServer): out of reach of a terminal's Ctrl-C (a process
group of their own: the local cloud stops them last, in order), yet never outliving what started them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import ROOT

START_AND_REPORT = """
import sys, time
from pathlib import Path
from localcloud.servers import free_port, mongo_server
server = mongo_server(free_port(), Path(sys.argv[1]) / "mongo", Path(sys.argv[1]) / "logs")
server.start()
print(server.process.pid, flush=True)
time.sleep(600)
"""


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0]
    except (FileNotFoundError, ProcessLookupError):
        return True
    return state == "Z"


def test_a_server_has_its_own_process_group_and_ends_when_its_starter_is_killed(tmp_path: Path) -> None:
    starter = subprocess.Popen(
        [sys.executable, "-c", START_AND_REPORT, str(tmp_path)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": f"{ROOT / 'layers' / 'domain' / 'python'}{os.pathsep}{ROOT}"},
        stdout=subprocess.PIPE,
    )
    assert starter.stdout is not None
    server = int(starter.stdout.readline())
    try:
        assert os.getpgid(server) == server != os.getpgid(starter.pid)  # Ctrl-C to the starter's group misses it
        starter.kill()  # no chance to stop its servers
        starter.wait()
        deadline = time.monotonic() + 120
        while not _gone(server) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _gone(server), "the server outlived the process that started it"
    finally:
        if not _gone(server):
            os.kill(server, signal.SIGKILL)
