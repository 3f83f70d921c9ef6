"""Keeps secrets out of log lines: HTTP clients and servers log URLs, and some platforms put secrets
in them (TikTok Shop's token endpoint takes the app secret as a query parameter)."""

from __future__ import annotations

import logging
import re

# Query or form parameters whose values are secret on at least one platform.
SECRET_PARAMETERS = (
    "access_token",
    "refresh_token",
    "app_secret",
    "client_secret",
    "auth_code",
    "code",
    "state",
    "session",
    "sign",
    "token",
    "password",
)

_PARAMETER = re.compile(
    r"(?P<key>(?:^|(?<=[?&;\s\"'(]))(?:"
    + "|".join(SECRET_PARAMETERS)
    + r"))=(?P<value>[^&\s\"']+)",
    re.IGNORECASE,
)
_BEARER = re.compile(r"(?P<scheme>Bearer\s+)[A-Za-z0-9._~+/=-]+", re.IGNORECASE)
_TOKEN_LIKE = re.compile(r"\b(?:secret|public)_[A-Za-z0-9]{8,}\b")

REDACTED = "[redacted]"


def redact(text: str) -> str:
    """Replace secret query parameters, Bearer credentials and token-shaped words with a marker."""
    text = _PARAMETER.sub(lambda m: f"{m.group('key')}={REDACTED}", text)
    text = _BEARER.sub(lambda m: f"{m.group('scheme')}{REDACTED}", text)
    return _TOKEN_LIKE.sub(REDACTED, text)


class RedactingFilter(logging.Filter):
    """A logging filter that redacts a record's message before any handler sees it.

    It redacts the arguments one by one rather than collapsing them into the message, because
    some formatters (uvicorn's access log) read `record.args` by position.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(_redact_argument(a) for a in record.args)
        elif isinstance(record.args, dict):
            record.args = {k: _redact_argument(v) for k, v in record.args.items()}
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            # Something still slipped through (an argument whose text only forms a secret
            # once formatted): keep the safe text and drop the arguments.
            record.msg = cleaned
            record.args = None
        return True


def _redact_argument(value: object) -> object:
    # Numbers stay numbers so `%d` placeholders still format; everything else (URLs, headers,
    # byte strings) is turned into text and redacted.
    if isinstance(value, int | float):
        return value
    return redact(value.decode("latin-1") if isinstance(value, bytes) else str(value))


# A logger's filters see only records logged on that logger itself, not on its children, so every
# logger that can see a URL or a header is listed by its full name.
_GUARDED_LOGGERS = (
    "httpx2",
    "httpcore2",
    "httpcore2.connection",
    "httpcore2.connection_pool",
    "httpcore2.http11",
    "httpcore2.http2",
    "httpcore2.proxy",
    "httpcore2.socks",
    "uvicorn.access",
    "uvicorn.error",
    "shopkeys",
    "shopkeys.web",
)
_installed: set[str] = set()


def guard_logs(*names: str) -> None:
    """Install the redacting filter on the loggers that can see request URLs (idempotent)."""
    for name in names or _GUARDED_LOGGERS:
        if name in _installed:
            continue
        logging.getLogger(name).addFilter(RedactingFilter())
        _installed.add(name)
