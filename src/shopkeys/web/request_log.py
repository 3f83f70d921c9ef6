"""The request log of `shopkeys serve`, and the format all of its log lines are written in.

One line per request: method, path (query included) with secrets redacted, status, duration,
client address, and the connection id when the path names one. It replaces uvicorn's access log,
which formats each line through its own formatter, after which the redacting filter ran its
patterns over the client address, the path and the whole line again: on the token hot path that
cost about a third of the throughput. This log redacts only what can hold a secret (a query
string, an unusual path) and hands over a `SafeRecord`, which the filter lets through as it is.

`SHOPKEYS_LOG_FORMAT=json` writes every line, uvicorn's and tracebacks included, as one JSON
object; the default is one line of text per record.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import sys
import time
from json.encoder import encode_basestring_ascii as _json_string
from typing import Literal, TextIO
from urllib.parse import unquote_plus

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shopkeys.redact import REDACTED, RedactingFilter, SafeRecord, redact

LogFormat = Literal["text", "json"]

#: The logger the request lines are written to.
ACCESS_LOGGER = "shopkeys.access"

# Connection ids are `con_` and 16 characters (the store's `new_id`).
_CONNECTION_PATH = re.compile(r"/v1/connections/(con_[^/?]+)")
#: Ids shopkeys issues are `prefix_` and 16 characters; a path segment longer than any of them
#: names nothing here, and is taken for a credential sent in the wrong place.
_LONG_SEGMENT = re.compile(r"[^/]{21,}")
# The common case, checked without building an address object.
_IPV4 = re.compile(r"\d{1,3}(?:\.\d{1,3}){3}")


class RequestRecord(SafeRecord):
    """One request: its message and fields hold only text the request log has redacted."""

    method: str
    path: str
    status: int
    duration_ms: float
    client: str | None
    connection_id: str | None

    def json_fields(self) -> str:
        """The request's fields as the tail of a JSON object (`,"method":"GET",...`)."""
        client = _json_string(self.client) if self.client else "null"
        connection = _json_string(self.connection_id) if self.connection_id else "null"
        return (
            f',"method":{_json_string(self.method)},"path":{_json_string(self.path)}'
            f',"status":{int(self.status)},"duration_ms":{self.duration_ms:.2f}'
            f',"client":{client},"connection_id":{connection}'
        )


class RequestLog:
    """A pure ASGI middleware that logs each HTTP request once, when the app has answered it."""

    def __init__(self, app: ASGIApp, logger: logging.Logger | None = None) -> None:
        self.app = app
        self.logger = logger or logging.getLogger(ACCESS_LOGGER)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.logger.isEnabledFor(logging.WARNING):
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        # What uvicorn answers when the app fails before it starts a response.
        status = 500

        async def send_noting_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_noting_status)
        finally:
            self._log(scope, status, (time.perf_counter() - started) * 1000)

    def _log(self, scope: Scope, status: int, duration_ms: float) -> None:
        # A server error is worth a look; anything else is the ordinary course of things.
        level = logging.INFO if status < 500 else logging.WARNING
        if level == logging.INFO and not self.logger.isEnabledFor(level):
            return
        method: str = scope["method"]
        path = loggable_path(scope["path"], scope.get("query_string", b""))
        record = RequestRecord(
            self.logger.name,
            level,
            __file__,
            0,
            f"{method} {path} {status} {duration_ms:.2f}ms",
            None,
            None,
        )
        record.method = method
        record.path = path
        record.status = status
        record.duration_ms = duration_ms
        record.client = loggable_client(scope.get("client"))
        record.connection_id = connection_of(path)
        self.logger.handle(record)


def loggable_path(path: str, query: bytes) -> str:
    """The path and query with anything secret replaced, as one line of printable text."""
    path = _LONG_SEGMENT.sub(REDACTED, path)
    # `redact` returns at once for text no pattern could match, such as the hot path's.
    path = redact(path)
    if query:
        # Decoded first, so a name spelled with escapes (`access%5Ftoken`) is still recognised.
        path = f"{path}?{redact(unquote_plus(query.decode('latin-1')))}"
    if not path.isprintable():
        # A decoded line break would start a forged log line.
        path = path.encode("unicode_escape").decode("ascii")
    return path


def loggable_client(client: tuple[str, int] | None) -> str | None:
    """`host:port`, the host only when it is an IP address.

    Behind a proxy on the same host uvicorn takes the client from `X-Forwarded-For`, which is
    whatever the request said: a token sent there must not become the logged address.
    """
    if not client:
        return None
    host, port = client
    if _IPV4.fullmatch(host) is None:
        try:
            ipaddress.ip_address(host)
        except ValueError:
            host = REDACTED
    return f"{host}:{port}"


def connection_of(path: str) -> str | None:
    """The connection id in a `/v1/connections/{id}...` path, if there is one."""
    match = _CONNECTION_PATH.match(path)
    return match.group(1) if match else None


# -- the formats ----------------------------------------------------------------------------------


class _Timestamps:
    """ISO 8601 UTC with milliseconds; the part up to the second is formatted once per second."""

    def __init__(self) -> None:
        self._second = -1
        self._prefix = ""

    def __call__(self, created: float) -> str:
        second = int(created)
        if second != self._second:
            self._prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            self._second = second
        return f"{self._prefix}.{int((created - second) * 1000):03d}Z"


class TextFormatter(logging.Formatter):
    """`2026-01-31T12:00:00.000Z INFO shopkeys.access GET /path 200 0.41ms client=...`."""

    def __init__(self) -> None:
        super().__init__()
        self._timestamp = _Timestamps()

    def format(self, record: logging.LogRecord) -> str:
        line = f"{self._timestamp(record.created)} {record.levelname} {record.name} "
        line += record.getMessage()
        if isinstance(record, RequestRecord):
            if record.client:
                line += f" client={record.client}"
            if record.connection_id:
                line += f" connection_id={record.connection_id}"
        extra = _traceback(self, record)
        return f"{line}\n{extra}" if extra else line


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ts, level, logger, msg, a request's fields, exc.

    Written out by hand: every value is a string escaped by json's own C function, or a number
    the request log produced. `json.dumps` of the same object costs four times as much, on every
    request.
    """

    def __init__(self) -> None:
        super().__init__()
        self._timestamp = _Timestamps()

    def format(self, record: logging.LogRecord) -> str:
        line = (
            f'{{"ts":"{self._timestamp(record.created)}"'
            f',"level":{_json_string(record.levelname.lower())}'
            f',"logger":{_json_string(record.name)},"msg":{_json_string(record.getMessage())}'
        )
        if isinstance(record, RequestRecord):
            line += record.json_fields()
        extra = _traceback(self, record)
        if extra:
            line += f',"exc":{_json_string(extra)}'
        return line + "}"


def _traceback(formatter: logging.Formatter, record: logging.LogRecord) -> str:
    if record.exc_info and not record.exc_text:
        record.exc_text = formatter.formatException(record.exc_info)
    parts = [p for p in (record.exc_text, record.stack_info) if p]
    return "\n".join(parts)


def formatter_for(log_format: LogFormat) -> logging.Formatter:
    return JsonFormatter() if log_format == "json" else TextFormatter()


def configure_logging(log_format: LogFormat, stream: TextIO | None = None) -> logging.Handler:
    """Write every record of the process to `stream` (stderr) in `log_format`, redacted.

    The handler sits on the root logger, so uvicorn's records (run with `log_config=None`) and
    any library's reach it; its filter redacts whatever reaches it, from whichever logger, so no
    logger needs to be listed. Returns the handler, for whoever wants to take it off again.
    """
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(formatter_for(log_format))
    handler.addFilter(RedactingFilter())
    root = logging.getLogger()
    root.addHandler(handler)
    # Libraries' chatter (an INFO line per outbound HTTP call) stays out, as it did before.
    root.setLevel(logging.WARNING)
    for name in ("shopkeys", "uvicorn"):
        logging.getLogger(name).setLevel(logging.INFO)
    for name in ("uvicorn", "uvicorn.error"):
        # uvicorn's own logging config, if anything in the process applied it, gives these
        # loggers handlers of their own and stops them propagating: their records would bypass
        # this handler, its format and its redaction.
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
    return handler
