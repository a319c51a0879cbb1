"""What a person sees: the live progress bar, the failures table, the API's errors in one line (plus the CSV's
problems, one per line). Progress and errors go to stderr; results (request ID, summary, JSON) to stdout."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import urlsplit

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, Task, TextColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from ips_cli.client import FINAL_STATUSES, ApiError, Problem, problems_of

out = Console(highlight=False, soft_wrap=True)  # long lines stay whole in logs; tables still fit the width
err = Console(stderr=True, highlight=False, soft_wrap=True)


class RateColumn(ProgressColumn):
    """Images finished per second, over rich's recent samples."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:.1f} img/s" if speed else "-- img/s", style="progress.data.speed")


def watch(read: Callable[[], dict[str, Any]], *, interval: float, timeout: float | None) -> dict[str, Any]:
    """Poll `read` (a status page) until the request ends, showing progress; the last document read."""
    deadline = None if timeout is None else time.monotonic() + timeout
    if err.is_terminal:
        columns = (
            TextColumn("{task.description:<22}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("[green]{task.fields[succeeded]} ok[/] [red]{task.fields[failed]} failed[/]"),
            RateColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
        )
        with Progress(*columns, console=err, transient=False) as progress:
            bar = progress.add_task("PENDING", total=None, succeeded=0, failed=0)
            return _poll(read, interval, deadline, lambda s: progress.update(bar, **_bar_fields(s)))
    last: list[tuple[Any, ...]] = []

    def line(status: dict[str, Any]) -> None:
        # Not a terminal (a log, CI): one line per change instead of a bar.
        shown = (status["status"], status["succeeded"], status["failed"], status["total"])
        if shown != (last[-1] if last else None):
            last.append(shown)
            done = status["succeeded"] + status["failed"]
            err.print(
                f"{status['status']:<22} {done}/{status['total']} done "
                f"({status['succeeded']} ok, {status['failed']} failed)"
            )

    return _poll(read, interval, deadline, line)


class WaitTimedOut(Exception):
    pass


def _poll(
    read: Callable[[], dict[str, Any]],
    interval: float,
    deadline: float | None,
    show: Callable[[dict[str, Any]], None],
) -> dict[str, Any]:
    while True:
        status = read()
        show(status)
        if status["status"] in FINAL_STATUSES:
            return status
        if deadline is not None and time.monotonic() >= deadline:
            raise WaitTimedOut(status["status"])
        time.sleep(interval)


def _bar_fields(status: dict[str, Any]) -> dict[str, Any]:
    done = status["succeeded"] + status["failed"]
    label = status["status"] if status.get("detail") is None else status["detail"]
    return {
        "description": label,
        "total": status["total"] or None,
        "completed": done,
        "succeeded": status["succeeded"],
        "failed": status["failed"],
    }


def summary(status: dict[str, Any]) -> None:
    colour = {"COMPLETED": "green", "COMPLETED_WITH_ERRORS": "yellow", "FAILED": "red"}.get(status["status"], "cyan")
    out.print(
        f"[bold {colour}]{status['status']}[/]  {status['succeeded']} succeeded, {status['failed']} failed "
        f"of {status['total']} images ({status['totalProducts']} products)"
    )
    if status.get("detail"):
        out.print(f"  {status['detail']}")
    error = status.get("error")
    if error:
        out.print(f"[red]  {escape(error['code'])}: {escape(error['message'])}[/]")
        for line in problem_lines(problems_of(error.get("errors"))):
            out.print(f"    {escape(line)}")


def failures(products: Iterable[dict[str, Any]]) -> int:
    """A table of every failed image with its reason; how many there were."""
    table = Table(title="Failed images", title_justify="left", expand=True)
    table.add_column("S. No.", no_wrap=True)
    table.add_column("product", ratio=2, overflow="fold")
    table.add_column("image", ratio=2, overflow="fold")
    table.add_column("code", no_wrap=True)
    table.add_column("reason", ratio=4, overflow="fold")
    count = 0
    for product in products:
        for error in product["errors"]:
            count += 1
            table.add_row(
                escape(product["serialNumber"]),
                escape(product["productName"]),
                f"#{error['index'] + 1} {escape(_short(error['url']))}",
                escape(error["code"] or ""),
                escape(error["message"] or ""),
            )
    if count:
        out.print(table)
    return count


def _short(url: str) -> str:
    """The URL's last path segment (or its host): enough to tell the images apart; --json has the full URLs."""
    parts = urlsplit(url)
    return parts.path.rstrip("/").rsplit("/", 1)[-1] or parts.netloc or url


def problem_lines(problems: Iterable[Problem]) -> list[str]:
    lines = []
    for problem in problems:
        where = ", ".join(
            part
            for part in (
                f"row {problem.row}" if problem.row is not None else "",
                f"column {problem.column!r}" if problem.column else "",
            )
            if part
        )
        lines.append(f"{where or 'file'}: {problem.code} {problem.message}")
    return lines


def api_error(error: ApiError) -> None:
    err.print(f"[red]error:[/] {escape(str(error))}")
    for line in problem_lines(error.problems):
        err.print(f"  - {escape(line)}")
    if error.omitted:
        err.print(f"  (and {error.omitted} more problem(s) the API does not list)")
