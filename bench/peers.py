"""The other side of the wire for the benchmarks, on 127.0.0.1.

- The image server is localcloud.source_host.SourceHost serving the benchmark corpus, run in a child process (it
  stands in for remote image hosts: in the cloud's own process it would compete for the GIL with the workers it
  serves; its CPU is still counted, separately). Each URL's `?v=` query is appended to its file's bytes
  (`distinct_queries`), so every URL is a distinct source and nothing is reused by content.
- The 404 server answers every request 404 at once (upload benchmarks: URLs whose fetch costs nothing).

`python -m bench.peers FOLDER` serves FOLDER and prints its port, then serves until stdin closes."""

from __future__ import annotations

import subprocess
import sys
from http.server import BaseHTTPRequestHandler
from pathlib import Path

from bench import ROOT
from localcloud.peers import LoopbackServer, Quiet


class ImageServerProcess:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.process: subprocess.Popen[str] | None = None
        self.port = 0

    @property
    def origin(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.origin}"

    def __enter__(self) -> ImageServerProcess:
        self.process = subprocess.Popen(  # noqa: S603 - fixed command line
            [sys.executable, "-m", "bench.peers", str(self.folder)],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line.strip().isdigit():
            self.__exit__()
            raise RuntimeError(f"the image server did not start: {line!r}")
        self.port = int(line)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.process is not None and self.process.poll() is None:
            assert self.process.stdin is not None
            self.process.stdin.close()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


class NotFoundServer(LoopbackServer):
    """Answers 404 with an empty body to every GET, in this process."""

    def __init__(self) -> None:
        class Handler(Quiet, BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                self.send_response(404)
                self.send_header("content-length", "0")
                self.end_headers()

        super().__init__(Handler)


def _serve(folder: Path) -> None:
    from localcloud.source_host import SourceHost

    with SourceHost(folder) as server:
        server.distinct_queries = True
        print(server.origin.rsplit(":", 1)[1], flush=True)
        sys.stdin.read()  # until the parent closes our stdin (or exits)


if __name__ == "__main__":
    _serve(Path(sys.argv[1]))
