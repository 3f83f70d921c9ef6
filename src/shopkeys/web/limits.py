"""Limits on what a request may carry, checked before anything parses it.

Tokens as the platforms issue them are a few KB, so no request of ours needs a large body; a
50 MB "token" would otherwise be read, decrypted and stored. NUL bytes fit no id or name and
PostgreSQL refuses them in text, which would surface as a 500 deep inside a query.
"""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shopkeys.web.errors import error_response

#: The largest body the JSON API accepts (an import carries two tokens and some names).
API_BODY_LIMIT = 64 * 1024
#: The largest body an app's call through the API proxy may carry (TikTok Shop takes image
#: uploads of up to 5 MB, and a multipart body adds to that).
PROXY_BODY_LIMIT = 16 * 1024 * 1024
#: The largest body anything else accepts (forms on the pages and the sandbox's controls).
OTHER_BODY_LIMIT = 256 * 1024

#: How much of an oversized body of unknown length is read and thrown away before answering.
DRAIN_LIMIT = 1024 * 1024

_API_PREFIX = "/v1/"
_PROXY_PREFIX = "/v1/proxy/"
_BODILESS = frozenset({"GET", "HEAD", "OPTIONS"})


class _TooLarge(HTTPException):
    """The body grew past the limit while it was being read.

    An HTTP exception, because FastAPI turns any other error raised while it reads a body into a
    400 "error parsing the body"; this way the app's own handler answers 413.
    """

    def __init__(self, limit: int) -> None:
        super().__init__(413, _too_large_message(limit), headers={"connection": "close"})


class RequestLimits:
    """Answers 422 for NUL bytes in the path or query and 413 for a body over the limit."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        query: bytes = scope.get("query_string", b"")
        if "\x00" in scope["path"] or b"\x00" in query or b"%00" in query:
            # 422 like every other value the API cannot take, so no route needs another status.
            refusal = error_response(422, "invalid_request", "NUL bytes are not allowed here")
            await refusal(scope, receive, send)
            return
        if scope["method"] in _BODILESS and not scope["path"].startswith(_PROXY_PREFIX):
            # The hot path is a GET: it pays for the checks above and nothing more.
            await self.app(scope, receive, send)
            return
        limit = _limit_of(scope["path"])
        declared = _content_length(scope)
        # A body of modest size is read (and thrown away) below, so the client gets to read the
        # 413; only one too large to be worth reading is refused before it arrives.
        if declared is not None and declared > max(limit, DRAIN_LIMIT):
            await _too_large(limit)(scope, receive, send)
            return
        received = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    await _drain(receive, message, received)
                    raise _TooLarge(limit)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except _TooLarge:
            if started:
                raise
            await _too_large(limit)(scope, receive, send)


async def _drain(receive: Receive, last: Message, received: int) -> None:
    """Read what the client is still sending (up to a point), so it gets to read our 413 rather
    than a reset; a client sending far more is cut off with the connection."""
    while last.get("more_body", False) and received <= DRAIN_LIMIT:
        last = await receive()
        if last["type"] != "http.request":
            return
        received += len(last.get("body", b""))


def _limit_of(path: str) -> int:
    if path.startswith(_PROXY_PREFIX):
        return PROXY_BODY_LIMIT
    return API_BODY_LIMIT if path.startswith(_API_PREFIX) else OTHER_BODY_LIMIT


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def _too_large(limit: int) -> ASGIApp:
    return error_response(413, "payload_too_large", _too_large_message(limit), connection="close")


def _too_large_message(limit: int) -> str:
    return f"the request body is larger than {limit // 1024} KiB"
