"""The API as the CLI uses it: one small HTTP client over `requests`, with the API's errors as exceptions.

It needs nothing of the server's code, so `pip install .` gives a client that works against any deployment."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

API_PREFIX = "/api/v1"
# The direct route's documented cap: files above it go straight to S3 (presigned POST). The server may hold a
# lower one (CSV_MAX_BYTES, or Lambda's payload limit): its 413 PAYLOAD_TOO_LARGE answer sends the file the
# presigned way too, so this is only where the CLI stops trying the direct route first.
DIRECT_UPLOAD_MAX_BYTES = 5 * 1024 * 1024
FINAL_STATUSES = frozenset({"COMPLETED", "COMPLETED_WITH_ERRORS", "FAILED"})
TIMEOUT_S = 60


@dataclass(frozen=True)
class Problem:
    row: int | None
    column: str | None
    code: str
    message: str


@dataclass
class ApiError(Exception):
    """A non-2xx answer of the API: its HTTP status, stable `code`, message and the CSV's problems, if any."""

    status: int
    code: str
    message: str
    problems: list[Problem] = field(default_factory=list)
    omitted: int = 0  # problems found beyond those listed

    def __str__(self) -> str:
        return f"{self.status} {self.code}: {self.message}"

    @classmethod
    def from_response(cls, response: requests.Response) -> ApiError:
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            text = response.text.strip().splitlines()[0][:200] if response.text.strip() else response.reason
            return cls(response.status_code, "HTTP_ERROR", text or "no message")
        return cls(
            response.status_code,
            str(body.get("code") or "HTTP_ERROR"),
            str(body.get("message") or response.reason),
            problems_of(body.get("errors")),
            int(body.get("errorsOmitted") or 0),
        )


class Unreachable(Exception):
    """The API (or the storage an upload or a download goes to) could not be reached."""


def problems_of(errors: Any) -> list[Problem]:
    return [
        Problem(item.get("row"), item.get("column"), str(item.get("code", "")), str(item.get("message", "")))
        for item in errors or ()
        if isinstance(item, dict)
    ]


@dataclass(frozen=True)
class Accepted:
    request_id: str
    route: str  # "direct" or "presigned"


class Client:
    def __init__(self, api_url: str, api_key: str, *, timeout: float = TIMEOUT_S) -> None:
        self.api_url = api_url.rstrip("/")
        self.timeout = timeout
        self.api = _session()
        self.api.headers.update({"x-api-key": api_key, "user-agent": "ips-cli"})
        # Storage (the presigned POST, the output CSV's URL) never sees the API key.
        self.storage = _session()

    # -- uploads -----------------------------------------------------------------------------------------

    def upload(self, path: Path, webhook_url: str | None, options: Mapping[str, str | int]) -> Accepted:
        """The direct route for a small file, the presigned S3 POST for a big one (or when the direct one is full)."""
        if path.stat().st_size <= DIRECT_UPLOAD_MAX_BYTES:
            try:
                return self.upload_direct(path, webhook_url, options)
            except ApiError as error:
                if error.status != 413:
                    raise
        return self.upload_presigned(path, webhook_url, options)

    def upload_direct(self, path: Path, webhook_url: str | None, options: Mapping[str, str | int]) -> Accepted:
        form = {key: str(value) for key, value in options.items()}
        if webhook_url:
            form["webhookUrl"] = webhook_url
        with path.open("rb") as file:
            answer = self._call(
                "POST", "/upload", files={"file": (path.name, file, "text/csv")}, data=form, expect=(202,)
            )
        return Accepted(answer["requestId"], "direct")

    def upload_presigned(self, path: Path, webhook_url: str | None, options: Mapping[str, str | int]) -> Accepted:
        slot = self._call(
            "POST",
            "/uploads",
            json={**options, **({"webhookUrl": webhook_url} if webhook_url else {}), "filename": path.name},
            expect=(201,),
        )
        upload = slot["upload"]
        with path.open("rb") as file:
            # Every policy field first, the file last, as S3's POST requires.
            sent = self._send(
                self.storage, "POST", upload["url"], data=upload["fields"], files={"file": (path.name, file)}
            )
        if sent.status_code not in (200, 201, 204):
            raise ApiError(sent.status_code, "UPLOAD_REFUSED", f"the storage refused the file: {_s3_error(sent)}")
        return Accepted(slot["requestId"], "presigned")

    # -- status ------------------------------------------------------------------------------------------

    def status_page(self, request_id: str, *, limit: int | None = None, cursor: str | None = None) -> dict[str, Any]:
        params: dict[str, str | int] = {}
        if limit is not None:
            params["limit"] = limit
        if cursor:
            params["cursor"] = cursor
        return self._call("GET", f"/status/{request_id}", params=params, expect=(200,))

    def status(self, request_id: str, *, page_size: int | None = None) -> dict[str, Any]:
        """The whole status: the first page's document with every page's products (following nextCursor)."""
        pages = iter(self.status_pages(request_id, page_size))
        document = next(pages)
        for page in pages:
            document["products"].extend(page["products"])
        document["nextCursor"] = None
        return document

    def status_pages(self, request_id: str, page_size: int | None = None) -> Iterator[dict[str, Any]]:
        """Every page in row order; the API may end a page early (a byte cap), so only nextCursor says when."""
        cursor: str | None = None
        while True:
            page = self.status_page(request_id, limit=page_size, cursor=cursor)
            yield page
            cursor = page.get("nextCursor")
            if not cursor:
                return

    def download(self, request_id: str, destination: Path) -> int:
        """The output CSV, from the URL of a fresh status read (it may be short-lived). Returns its size."""
        url = self.status_page(request_id, limit=1).get("outputCsvUrl")
        if not url:
            raise ApiError(409, "OUTPUT_NOT_READY", f"request {request_id} has no output CSV yet")
        answer = self._send(self.storage, "GET", url, stream=True)
        if answer.status_code != 200:
            raise ApiError(answer.status_code, "DOWNLOAD_FAILED", f"the output CSV answered {answer.status_code}")
        destination.parent.mkdir(parents=True, exist_ok=True)
        size = 0
        partial = destination.with_name(destination.name + ".part")
        with partial.open("wb") as out:
            for block in answer.iter_content(1 << 16):
                out.write(block)
                size += len(block)
        partial.replace(destination)  # never a half-written file at the destination
        return size

    # -- plumbing ----------------------------------------------------------------------------------------

    def _call(self, method: str, route: str, *, expect: tuple[int, ...], **kwargs: Any) -> dict[str, Any]:
        answer = self._send(self.api, method, f"{self.api_url}{API_PREFIX}{route}", **kwargs)
        if answer.status_code not in expect:
            raise ApiError.from_response(answer)
        return answer.json()

    def _send(self, session: requests.Session, method: str, url: str, **kwargs: Any) -> requests.Response:
        try:
            return session.request(method, url, timeout=self.timeout, **kwargs)
        except requests.RequestException as exc:
            raise Unreachable(f"cannot reach {url.split('?', 1)[0]}: {type(exc).__name__}") from exc


def _session() -> requests.Session:
    session = requests.Session()
    # Reads are safe to repeat: ride out throttling and a gateway's hiccup. Uploads are never repeated here.
    retry = Retry(
        total=5,
        backoff_factor=0.5,
        status_forcelist=(429, 502, 503, 504),
        allowed_methods=frozenset({"GET", "HEAD"}),
        respect_retry_after_header=True,
        raise_on_status=False,
    )
    adapter = HTTPAdapter(max_retries=retry)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


def _s3_error(response: requests.Response) -> str:
    """S3 answers errors as XML: its Code and Message are what a person needs."""
    found = {tag: re.search(f"<{tag}>(.*?)</{tag}>", response.text or "", re.S) for tag in ("Code", "Message")}
    parts = [match.group(1) for match in found.values() if match]
    return " ".join(parts) or f"HTTP {response.status_code}"
