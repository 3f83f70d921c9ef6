"""An app's API call as the proxy takes it in, and which of its headers go on to the platform."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final
from urllib.parse import unquote

from shopkeys.errors import ShopkeysError

#: Headers about one hop of a connection (RFC 9110 7.6.1), never forwarded either way.
HOP_BY_HOP: Final = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)

#: The app's own credentials and what describes its request to shopkeys, not to the platform:
#: the proxy adds the platform's credentials itself, and httpx2 sets host and length.
_NOT_FORWARDED: Final = HOP_BY_HOP | {
    "authorization",
    "cookie",
    "host",
    "content-length",
    "x-tts-access-token",
    "forwarded",
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-proto",
}

#: Headers of the platform's answer that shopkeys' own server writes for its hop, and cookies,
#: which the platform would set on shopkeys' origin, where the operators' session lives.
_NOT_RETURNED: Final = HOP_BY_HOP | {"date", "server", "set-cookie"}

#: Names the shop a call acts on, for platforms where one authorization covers several.
SHOP_HEADER: Final = "x-shopkeys-shop"

_SHOPKEYS_HEADERS: Final = "x-shopkeys-"


class BadPath(ShopkeysError):
    """The platform path of a proxied call is not one shopkeys sends on (dot segments, none)."""


@dataclass(frozen=True, slots=True)
class ApiCall:
    """An app's call for the platform: its own path and raw query, the headers to pass on."""

    method: str
    path: str
    query: str = ""
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = field(default=b"", repr=False)
    #: The shop the app named with `X-Shopkeys-Shop`, if any.
    shop_id: str | None = None

    @classmethod
    def of(
        cls,
        method: str,
        path: str,
        query: str,
        headers: Iterable[tuple[str, str]],
        body: bytes,
    ) -> ApiCall:
        """The call from an incoming request's parts; only headers meant for the platform stay."""
        pairs = list(headers)
        kept: list[tuple[str, str]] = []
        shop_id: str | None = None
        dropped = _NOT_FORWARDED | _named_in_connection(pairs)
        encoding_asked = False
        for name, value in pairs:
            lower = name.lower()
            if lower == SHOP_HEADER:
                shop_id = value.strip() or None
            elif lower in dropped or lower.startswith(_SHOPKEYS_HEADERS):
                continue
            else:
                encoding_asked = encoding_asked or lower == "accept-encoding"
                kept.append((name, value))
        if not encoding_asked:
            # httpx2 would otherwise ask for gzip on the app's behalf, and the app would get a
            # body compressed in a way it never said it reads: the answer streams back as it is.
            kept.append(("Accept-Encoding", "identity"))
        return cls(method.upper(), path, query, tuple(kept), body, shop_id)


def call_path(raw: str) -> str:
    """The platform path of a proxied call (`raw` as sent, after the connection id), checked.

    Dot segments are refused rather than resolved: `..` could climb out of the path a platform
    gives the connection (Ecwid's store), and the platform would resolve it, not shopkeys.
    """
    path = "/" + raw.lstrip("/")
    if path == "/":
        raise BadPath("name the platform's API path after the connection id")
    # Decoded as far as it goes, and split wherever a server might split (`/`, a backslash, with
    # `;parameters` cut off): whatever a platform's server does with `%2F` or `%252e`, no
    # segment may climb.
    decoded, previous = path, ""
    while decoded != previous:
        decoded, previous = unquote(decoded), decoded
    for segment in re.split(r"[/\\]", decoded):
        if segment.split(";", 1)[0] in (".", ".."):
            raise BadPath("the API path may not hold `.` or `..` segments")
    return path


def answer_headers(headers: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """The platform's answer headers an app gets: neither the platform's hop's nor a length
    that a `Transfer-Encoding` made untrustworthy (never both: RFC 9112 6.3)."""
    pairs = list(headers)
    chunked = any(name.lower() == "transfer-encoding" for name, _ in pairs)
    named_hop = _named_in_connection(pairs)
    return [
        (name, value)
        for name, value in pairs
        if (lower := name.lower()) not in _NOT_RETURNED
        and lower not in named_hop
        and not (chunked and lower == "content-length")
    ]


def _named_in_connection(headers: Iterable[tuple[str, str]]) -> set[str]:
    """Headers the `Connection` header names: hop-by-hop too (RFC 9110 7.6.1)."""
    named: set[str] = set()
    for name, value in headers:
        if name.lower() == "connection":
            named.update(part.strip().lower() for part in value.split(",") if part.strip())
    return named
