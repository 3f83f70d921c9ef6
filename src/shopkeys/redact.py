"""Keeps secrets out of log lines and stored text.

HTTP clients and servers log URLs, and some platforms put secrets in them (TikTok Shop's token
endpoint takes the app secret as a query parameter). Platforms' error messages can echo the
request they refuse, in whatever shape their server prints it, and shopkeys stores and shows those
messages: the same filter cleans them.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable
from urllib.parse import quote, quote_plus, urlsplit

# Parameters and fields whose values are secret wherever they appear, on at least one platform.
SECRET_FIELDS = (
    "access_token",
    "refresh_token",
    "public_token",
    "id_token",
    "app_secret",
    "client_secret",
    "auth_code",
    "password",
    "api_key",
)
# Names that are also ordinary words in platform messages (`"code": "invalid_client"`, `token
# expired`): their values are redacted in query strings, and elsewhere only when they look like
# credentials. The values a call actually sent are replaced anyway (`known`).
SECRET_QUERY_PARAMETERS = ("code", "state", "session", "sign", "token")
#: Everything redacted in a URL's query.
SECRET_PARAMETERS = (*SECRET_FIELDS, *SECRET_QUERY_PARAMETERS)

# A secret parameter or field and its value, in the shapes servers print requests in:
# `key=value` (queries, forms), `"key": "value"` (JSON), `'key': 'value'` (Python), `key: value`
# (YAML, logs), `"key"=>"value"` (Ruby, which Doorkeeper and so SHOPLINE run on), with quotes
# possibly escaped when the echo sits inside another JSON string. A quoted value ends at the next
# quote or backslash; an unquoted one at whitespace or punctuation. The key must not be the end of
# a longer word (`my_code`).
_KEY_START = r"(?<![A-Za-z0-9_])"
_SEPARATOR = r"(?P<separator>\\*[\"']?[ \t]*(?:=>|[:=])[ \t]*)"
_FIELD = re.compile(
    _KEY_START
    + r"(?P<key>(?:"
    + "|".join(SECRET_FIELDS)
    + r"))"
    + _SEPARATOR
    + r"(?:(?P<quote>\\*[\"'])[^\"'\\\r\n]*|[^\s&,;\"'\\()<>\[\]{}]+)",
    re.IGNORECASE,
)
# The ordinary-word names in a query string (after `?`, `&` or `;`, or leading a form body).
_QUERY = re.compile(
    r"(?:(?<=[?&;])|^)(?P<key>(?:" + "|".join(SECRET_QUERY_PARAMETERS) + r"))=[^&\s\"'#]+",
    re.IGNORECASE,
)
# The ordinary-word names anywhere else, when what follows looks like a credential: a run of 16
# or more token characters (`x-tts-access-token: ROW_...`, `"code": "TTP_..."`).
_CREDENTIAL_FIELD = re.compile(
    r"(?<![A-Za-z0-9])(?P<key>(?:"
    + "|".join(SECRET_QUERY_PARAMETERS)
    + r"))"
    + _SEPARATOR
    + r"(?P<quote>\\*[\"']?)[A-Za-z0-9._~+/=-]{16,}",
    re.IGNORECASE,
)
# An Authorization header's credentials, whatever the scheme (Basic carries the client secret).
_AUTHORIZATION = re.compile(
    r"(?<![A-Za-z0-9_])(?P<key>authorization\\*[\"']?[ \t]*[:=][ \t]*\\*[\"']?)"
    r"(?:[A-Za-z][A-Za-z0-9_-]*[ \t]+)?[^\s\"',;\\]+",
    re.IGNORECASE,
)
_BEARER = re.compile(r"(?P<scheme>Bearer\s+)[A-Za-z0-9._~+/=-]+", re.IGNORECASE)
# Ecwid's `secret_...` and `public_...` tokens, and shopkeys' own API keys (`sk_` and 32 random
# bytes, `sk_sandbox_...` for the sandbox's), wherever they stand: in a path, say.
_TOKEN_LIKE = re.compile(r"\b(?:(?:secret|public)_[A-Za-z0-9]{8,}\b|sk_[A-Za-z0-9_-]{16,})")


REDACTED = "[redacted]"

#: Known values shorter than this are not replaced: no platform issues secrets that short, and
#: replacing every occurrence of a few letters would garble the text.
SHORTEST_SECRET = 4


def redact(text: str, *, known: Iterable[str | None] = ()) -> str:
    """Replace secret parameters and fields, credentials and token-shaped words with a marker.

    `known` are literal values the caller knows to be secret (the app's client secret, the code
    or token a call sent): they are replaced wherever they appear, also percent- or JSON-encoded,
    whatever the text around them.
    """
    if not known and not _may_hold_secret(text):
        # Most log lines (paths, statuses) have nothing any pattern below could match: the
        # access log runs this for every request, the token hot path included.
        return text
    text = _FIELD.sub(_redact_field, text)
    text = _QUERY.sub(lambda m: f"{m.group('key')}={REDACTED}", text)
    text = _CREDENTIAL_FIELD.sub(_redact_field, text)
    text = _AUTHORIZATION.sub(lambda m: f"{m.group('key')}{REDACTED}", text)
    text = _BEARER.sub(lambda m: f"{m.group('scheme')}{REDACTED}", text)
    text = _TOKEN_LIKE.sub(REDACTED, text)
    # After the patterns: a known value that happens to be part of a key name (a client secret
    # "secret" in "client_secret") must not hide that key, and with it the value after it.
    for value in sorted(_spellings(known), key=len, reverse=True):
        text = text.replace(value, REDACTED)
    return text


def _may_hold_secret(text: str) -> bool:
    """Whether any pattern above could match: each needs a separator or a credential word."""
    if "=" in text or ":" in text or "sk_" in text:
        return True
    lowered = text.lower()
    return "bearer" in lowered or "secret_" in lowered or "public_" in lowered


def _redact_field(match: re.Match[str]) -> str:
    return f"{match.group('key')}{match.group('separator')}{match.group('quote') or ''}{REDACTED}"


def _spellings(values: Iterable[str | None]) -> set[str]:
    """Each value as sent and as a server may print it back: percent- and JSON-encoded."""
    spellings: set[str] = set()
    for value in values:
        if not value or len(value) < SHORTEST_SECRET:
            continue
        spellings.update((value, quote(value, safe=""), quote_plus(value)))
        spellings.add(json.dumps(value)[1:-1])
    return spellings


class SafeRecord(logging.LogRecord):
    """A record whose message its maker built from text it had already redacted.

    The request log writes one per request; the filter below lets them through without running
    its patterns again, which on the token hot path would cost more than serving the token. Only
    code that redacts what it puts in the message may make one (`extra=` cannot: it sets
    attributes, not the record's class).
    """


_TRACEBACKS = logging.Formatter()


class RedactingFilter(logging.Filter):
    """A logging filter that redacts a record's message before any handler sees it.

    It redacts the arguments one by one rather than collapsing them into the message, because
    some formatters (uvicorn's access log) read `record.args` by position. A traceback is
    rendered here and redacted too: an exception's message can hold the URL that failed.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record, SafeRecord):
            return True
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
        if record.exc_info and not record.exc_text:
            # Formatters print `exc_text` when it is set and render `exc_info` only when not.
            record.exc_text = _TRACEBACKS.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
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


def shown_url(url: str) -> str:
    """`url` as the CLI and the pages show it: without credentials (user:password@, and the
    query, which may hold one)."""
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    return f"{parts.scheme}://{host}{parts.path}" + ("?…" if parts.query else "")
