"""`python -m localcloud up` serves the system locally; `python -m localcloud demo` runs its main job.

Bad settings (the local cloud's or any function's) are refused before anything starts: one `error:` line per
problem on stderr, exit status 2. Ctrl-C, SIGTERM or a closed terminal (SIGHUP) stop it with one line; a
second signal while it stops is ignored (the stop is bounded: the emulator's last snapshot, then the servers)."""

from __future__ import annotations

import argparse
import contextlib
import errno
import logging
import os
import signal
import sys
import threading

from ips_runtime.env_settings import SettingsError
from localcloud.cloud import LocalCloud, LocalCloudConfig

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
EXIT_REFUSED = 2  # the settings were refused: nothing was started


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # SIGTERM and SIGHUP stop it the way Ctrl-C does


def serve() -> int:
    config = LocalCloudConfig.from_env()
    for number in STOP_SIGNALS:
        signal.signal(number, _interrupt)
    cloud = LocalCloud(config)
    try:
        cloud.start()
    except KeyboardInterrupt:  # stopped while starting: start() has stopped what it had started
        print("Stopped before it was up.")
        return 130
    assert cloud.gateway is not None
    environment = cloud.function_environment()
    keys = ", ".join(api_key.key for api_key in config.api_keys)
    for change in cloud.changes:
        print(f"Provisioned    {change}")
    if not cloud.changes:
        print("Provisioned    nothing to change: the resources already match the settings")
    print(f"API            {cloud.gateway.url}/api/v1  (x-api-key: {keys})")
    print(f"Swagger UI     {cloud.gateway.url}/api/v1/docs")
    print(f"AWS emulator   {os.environ['AWS_ENDPOINT_URL']}")
    print(f"DynamoDB       {os.environ.get('AWS_ENDPOINT_URL_DYNAMODB', os.environ['AWS_ENDPOINT_URL'])}")
    print(f"MongoDB        {os.environ['MONGODB_URI']}")
    print(f"Webhook master {environment['WEBHOOK_SECRET']}  (each key's own: GET /api/v1/webhook-secret)")
    print(f"State          {config.state_dir.resolve()}")
    print("Ctrl-C stops.", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        threading.Event().wait()  # until a stop signal
    for number in STOP_SIGNALS:  # the stop runs to its end: the last snapshot holds every finished delete
        signal.signal(number, signal.SIG_IGN)
    print("Stopping...", end="", flush=True)
    cloud.stop()
    print(f" stopped; the state is kept in {config.state_dir}.", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="localcloud", description=__doc__)
    parser.add_argument("command", choices=["up", "demo"])
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        if args.command == "up":
            return serve()
        from localcloud.demo import run_demo

        return run_demo()
    except SettingsError as refused:
        for problem in refused.problems:
            print(f"error: {problem}", file=sys.stderr)
        return EXIT_REFUSED
    except OSError as failed:
        if failed.errno != errno.EADDRINUSE:
            raise
        print(f"error: a port is in use ({failed}): GATEWAY_PORT, AWS_PORT and MONGO_PORT choose others (0: any)")
        return 1


if __name__ == "__main__":
    sys.exit(main())
