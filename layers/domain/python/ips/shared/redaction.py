"""Input URLs often carry tokens in their query strings (signed links, API keys): logs keep where a URL points
(scheme, host, port, path), never its query, fragment or userinfo."""

from __future__ import annotations

import logging
import re
import traceback
from typing import Any
from urllib.parse import urlsplit, urlunsplit

REDACTED = "[redacted]"
# A URL runs to white space or a quote; punctuation at its very end belongs to the sentence around it.
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://[^\s'\"<>]*[^\s'\"<>.,;:!?)]")
# A request target with a query, as in urllib3's `"GET /photo.jpg?token=... HTTP/1.1"` (not inside a URL).
_PATH_QUERY = re.compile(r"(?<![\w/:.\-])(/[^\s?#'\"<>]*)[?#][^\s'\"<>]*")
# What every LogRecord has; anything else on a record came from `extra=`.
_RECORD_ATTRIBUTES = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


def redact_url(url: str) -> str:
    """The URL without userinfo, query or fragment; a removed query or fragment leaves ``?[redacted]``."""
    try:
        parts = urlsplit(url)
    except ValueError:  # unparsable (e.g. a broken IPv6 literal): cut where a secret could start
        head, *rest = re.split(r"[?#]", url.rpartition("@")[2] if "@" in url else url, maxsplit=1)
        return head + (f"?{REDACTED}" if rest else "")
    host = parts.netloc.rpartition("@")[2]
    secret = "?" in url or "#" in url
    if not secret and host == parts.netloc:
        return url
    return urlunsplit((parts.scheme, host, parts.path, REDACTED if secret else "", ""))


def redact_urls(text: str) -> str:
    """Every URL (and request target) in free text, redacted as by redact_url."""
    if "://" in text:
        text = _URL.sub(lambda match: redact_url(match.group(0)), text)
    if "?" in text or "#" in text:
        text = _PATH_QUERY.sub(lambda match: f"{match.group(1)}?{REDACTED}", text)
    return text


def _redacted(value: Any) -> Any:
    if isinstance(value, str):
        return redact_urls(value)
    if isinstance(value, dict):
        return {key: _redacted(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_redacted(item) for item in value)
    return value


class RedactUrls(logging.Filter):
    """A handler filter: redacts URLs in the message and its arguments, `extra=` fields and the traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, dict | list):  # powertools logs structured messages as they are
            record.msg = _redacted(record.msg)
        else:
            message = record.getMessage()
            redacted = redact_urls(message)
            if redacted != message:
                record.msg, record.args = redacted, None
        for name, value in list(vars(record).items()):
            if name not in _RECORD_ATTRIBUTES:
                setattr(record, name, _redacted(value))
        if record.exc_info and record.exc_info[1] is not None:
            formatted = "".join(traceback.format_exception(*record.exc_info)).rstrip("\n")
            redacted = redact_urls(formatted)
            if redacted != formatted:
                # Formatters print exc_info as it is: hand them the redacted text instead (logging.Formatter
                # prints exc_text; powertools' JSON formatter shows extra attributes, hence `exception`).
                record.exc_info, record.exc_text = None, redacted
                record.exception = redacted
        return True


def install_url_redaction(*handlers: logging.Handler) -> None:
    """Put the filter on `handlers` and on every handler of the root logger (where records are written)."""
    for handler in (*logging.getLogger().handlers, *handlers):
        if not any(isinstance(existing, RedactUrls) for existing in handler.filters):
            handler.addFilter(RedactUrls())
