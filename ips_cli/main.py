"""The `ips` command: upload a CSV, watch it, read its status, download its output.

Exit codes a script can use: 0 completed, 3 completed with errors (some images failed), 1 the request failed,
the API refused or could not be reached, 2 wrong usage."""

from __future__ import annotations

import json
from collections.abc import Callable
from enum import IntEnum
from pathlib import Path
from typing import Annotated

import typer

from ips_cli import render
from ips_cli.client import ApiError, Client, Unreachable

DEFAULT_API_URL = "http://127.0.0.1:5000"  # the local cloud (make up)
DEFAULT_API_KEY = "local-dev-key"  # its development key


class Exit(IntEnum):
    COMPLETED = 0
    FAILED = 1
    COMPLETED_WITH_ERRORS = 3


EXIT_OF_STATUS = {
    "COMPLETED": Exit.COMPLETED,
    "COMPLETED_WITH_ERRORS": Exit.COMPLETED_WITH_ERRORS,
    "FAILED": Exit.FAILED,
}

app = typer.Typer(
    name="ips",
    help="Image Processing System client: upload product CSVs, follow them, fetch the output CSV.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def configure(
    context: typer.Context,
    api_url: Annotated[str, typer.Option(envvar="IPS_API_URL", help="The API's base URL")] = DEFAULT_API_URL,
    api_key: Annotated[str, typer.Option(envvar="IPS_API_KEY", help="Your x-api-key")] = DEFAULT_API_KEY,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for one HTTP answer", min=1)] = 60,
) -> None:
    context.obj = Client(api_url, api_key, timeout=timeout)  # every command's client


Interval = Annotated[float, typer.Option(help="Seconds between status reads", min=0.1)]
WaitTimeout = Annotated[float | None, typer.Option("--wait-timeout", help="Give up waiting after this many seconds")]


@app.command()
def upload(
    context: typer.Context,
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True, help="The products CSV")],
    webhook: Annotated[str | None, typer.Option(help="Called once when the request completes")] = None,
    output_format: Annotated[
        str | None, typer.Option("--format", help="Output image format (e.g. jpeg, webp, avif)")
    ] = None,
    quality: Annotated[int | None, typer.Option(min=1, max=100, help="Encoder quality")] = None,
    max_width: Annotated[int | None, typer.Option(min=1, help="Shrink wider images to this width")] = None,
    max_height: Annotated[int | None, typer.Option(min=1, help="Shrink taller images to this height")] = None,
    background: Annotated[str | None, typer.Option(help="Colour behind transparency, e.g. #ffffff")] = None,
    wait: Annotated[bool, typer.Option("--wait", help="Follow the request until it ends")] = False,
    out: Annotated[Path | None, typer.Option(help="Write the output CSV here (implies --wait)")] = None,
    interval: Interval = 1.0,
    wait_timeout: WaitTimeout = None,
) -> None:
    """Upload a CSV (straight to S3 when it is big) and print its request ID."""
    # Per-request options are sent only when given, so an API without them keeps working.
    options = {
        name: value
        for name, value in (
            ("format", output_format),
            ("quality", quality),
            ("maxWidth", max_width),
            ("maxHeight", max_height),
            ("background", background),
        )
        if value is not None
    }
    client: Client = context.obj
    accepted = _guard(lambda: client.upload(file, webhook, options))
    render.err.print(f"uploaded {file.name} ({file.stat().st_size:,} bytes, {accepted.route} route)")
    render.out.print(accepted.request_id)
    if wait or out is not None:
        raise typer.Exit(_finish(client, accepted.request_id, out, interval, wait_timeout))


@app.command("wait")
def wait_command(
    context: typer.Context, request_id: str, interval: Interval = 1.0, wait_timeout: WaitTimeout = None
) -> None:
    """Follow a request until it ends, then list its failures."""
    raise typer.Exit(_finish(context.obj, request_id, None, interval, wait_timeout))


@app.command()
def status(
    context: typer.Context,
    request_id: str,
    as_json: Annotated[bool, typer.Option("--json", help="Print the whole status document (every page)")] = False,
) -> None:
    """Show a request's status and its failed images."""
    client: Client = context.obj
    document = _guard(lambda: client.status(request_id))
    if as_json:
        render.out.print_json(json.dumps(document))
    else:
        render.summary(document)
        render.failures(document["products"])
    raise typer.Exit(EXIT_OF_STATUS.get(document["status"], Exit.COMPLETED))


@app.command()
def download(
    context: typer.Context,
    request_id: str,
    out: Annotated[Path | None, typer.Option(help="Where to write it (default: <requestId>.csv)")] = None,
) -> None:
    """Download a finished request's output CSV."""
    destination = out or Path(f"{request_id}.csv")
    client: Client = context.obj
    size = _guard(lambda: client.download(request_id, destination))
    render.err.print(f"output CSV: {destination} ({size:,} bytes)")


def _finish(client: Client, request_id: str, out: Path | None, interval: float, wait_timeout: float | None) -> Exit:
    try:
        _guard(
            lambda: render.watch(
                lambda: client.status_page(request_id, limit=1), interval=interval, timeout=wait_timeout
            )
        )
    except render.WaitTimedOut as timed_out:
        render.err.print(f"[red]error:[/] request {request_id} still {timed_out} after {wait_timeout:g}s")
        return Exit.FAILED
    document = _guard(lambda: client.status(request_id))
    render.summary(document)
    render.failures(document["products"])
    if out is not None and document["status"] != "FAILED":
        size = _guard(lambda: client.download(request_id, out))
        render.err.print(f"output CSV: {out} ({size:,} bytes)")
    return EXIT_OF_STATUS[document["status"]]


def _guard[T](action: Callable[[], T]) -> T:
    """Run one API step; a refusal or an unreachable API ends the command with one clear line (exit 1)."""
    try:
        return action()
    except ApiError as error:
        render.api_error(error)
    except Unreachable as error:
        render.err.print(f"[red]error:[/] {error}")
    raise typer.Exit(Exit.FAILED)


def main() -> None:
    app()
