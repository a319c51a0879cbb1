"""`python -m localcloud up` serves the system locally; `python -m localcloud demo` runs its main job."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys
import threading

from localcloud.cloud import LocalCloud, LocalCloudConfig


def serve() -> int:
    config = LocalCloudConfig.from_env()
    with LocalCloud(config) as cloud:
        assert cloud.gateway is not None
        environment = cloud.function_environment()
        keys = ", ".join(api_key.key for api_key in config.api_keys)
        print(f"API            {cloud.gateway.url}/api/v1  (x-api-key: {keys})")
        print(f"Swagger UI     {cloud.gateway.url}/api/v1/docs")
        print(f"AWS emulator   {os.environ['AWS_ENDPOINT_URL']}")
        print(f"DynamoDB       {os.environ.get('AWS_ENDPOINT_URL_DYNAMODB', os.environ['AWS_ENDPOINT_URL'])}")
        print(f"MongoDB        {os.environ['MONGODB_URI']}")
        print(f"Webhook master {environment['WEBHOOK_SECRET']}  (each key's own: GET /api/v1/webhook-secret)")
        print(f"State          {config.state_dir.resolve()}")
        print("Ctrl-C stops.", flush=True)
        stopped = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stopped.set())
        with contextlib.suppress(KeyboardInterrupt):
            stopped.wait()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="localcloud", description=__doc__)
    parser.add_argument("command", choices=["up", "demo"])
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if args.command == "up":
        return serve()
    from localcloud.demo import run_demo

    return run_demo()


if __name__ == "__main__":
    sys.exit(main())
