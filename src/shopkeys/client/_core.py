"""What the async and the sync client share: each API call described once, as plain data, and
its answer read once. The two clients only send a `Call` their own way (`await` or not)."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar
from urllib.parse import quote

import httpx2

from shopkeys.client.errors import error_from_response, unexpected
from shopkeys.client.models import Connection, ConnectionPage, ConnectSession, Token
from shopkeys.version import __version__

T = TypeVar("T")

#: Long enough for a token call that refreshes at a slow platform first; connecting is quick.
DEFAULT_TIMEOUT = httpx2.Timeout(30.0, connect=5.0)

#: The header that picks one shop of a TikTok Shop connection on the proxy.
SHOP_HEADER = "X-Shopkeys-Shop"

# What an HTTP header value may hold: an API key outside this would make httpx2 fail with an
# error that quotes the header, key and all, so it is refused here first, without quoting it.
_HEADER_SAFE = re.compile(r"[\x21-\x7e]+")


@dataclass(frozen=True, slots=True)
class Config:
    """Where the service is and how to authenticate; never shows the key in its repr."""

    base_url: str
    api_key: str = field(repr=False)
    timeout: httpx2.Timeout

    @classmethod
    def of(cls, base_url: str, api_key: str, timeout: httpx2.Timeout | float | None) -> Config:
        if not _HEADER_SAFE.fullmatch(api_key):
            raise ValueError("api_key must be the key itself (sk_...), without spaces")
        try:
            url = httpx2.URL(base_url)
        except httpx2.InvalidURL:
            raise ValueError("base_url is not a URL") from None
        if url.scheme not in ("http", "https") or not url.host:
            raise ValueError(
                "base_url must be the service's http(s) URL, e.g. http://127.0.0.1:8000"
            )
        if url.query or url.fragment:
            raise ValueError("base_url must not carry a query or a fragment")
        # Without a trailing slash, so that the paths below can start with one.
        return cls(base_url.rstrip("/"), api_key, httpx2.Timeout(timeout))

    def headers(self, shop: str | None = None) -> dict[str, str]:
        headers = {
            "Authorization": f"Bearer {self.api_key}",
            "User-Agent": f"shopkeys-client/{__version__}",
        }
        if shop is not None:
            if not _HEADER_SAFE.fullmatch(shop):
                raise ValueError("shop must be a shop id, without spaces")
            headers[SHOP_HEADER] = shop
        return headers

    def proxy_url(self, connection_id: str) -> str:
        """The base URL of a connection's proxy: the platform's own paths go after it."""
        return f"{self.base_url}/v1/proxy/{_segment(connection_id)}"


def check_proxied(request: httpx2.Request, proxy_url: str) -> None:
    """Refuse an `api()` request that would leave the connection's proxy: an absolute URL (a
    platform's image link, say) would otherwise carry the API key to another host."""
    url, proxy = request.url, httpx2.URL(proxy_url)
    inside = (url.scheme, url.host, url.port) == (proxy.scheme, proxy.host, proxy.port) and (
        url.raw_path.split(b"?")[0] + b"/"
    ).startswith(proxy.raw_path.rstrip(b"/") + b"/")
    if not inside:
        raise ValueError(
            "an api() client only calls the connection's proxy: pass the platform's path "
            f"(such as /products), not a URL elsewhere ({url.scheme}://{url.host})"
        )


@dataclass(frozen=True, slots=True)
class Call(Generic[T]):
    """One API request and how to read its answer."""

    method: str
    path: str
    read: Callable[[Any], T]
    params: dict[str, str] | None = None
    json: dict[str, Any] | None = None
    expect: int = 200


def finish(call: Call[T], response: httpx2.Response, config: Config) -> T:
    """The value of a call's answer, or the exception for its error."""
    if response.status_code != call.expect:
        raise error_from_response(response, hide=config.api_key)
    if response.status_code == 204:
        return call.read(None)
    try:
        body = response.json()
        if not isinstance(body, Mapping):
            raise TypeError("not an object")
        return call.read(body)
    except (KeyError, TypeError, ValueError):
        # Not the API's answer: a base URL that points at something else, most likely.
        raise unexpected(
            response, f"{call.method} {call.path}: not the answer the API sends"
        ) from None


def _segment(value: str) -> str:
    """An id as one path segment: nothing in it can reach another route."""
    if not value:
        raise ValueError("an id must not be empty")
    return quote(value, safe="")


def _params(**values: str | int | bool | None) -> dict[str, str]:
    """Query parameters as the API reads them; None leaves a filter out."""
    found: dict[str, str] = {}
    for name, value in values.items():
        if value is None:
            continue
        found[name] = ("true" if value else "false") if isinstance(value, bool) else str(value)
    return found


# -- the calls ------------------------------------------------------------------------------------


def token(connection_id: str) -> Call[Token]:
    return Call("GET", f"/v1/connections/{_segment(connection_id)}/token", Token.from_json)


def current_token(end_user_id: str, provider: str | None) -> Call[Token]:
    if not end_user_id:
        raise ValueError("end_user_id must not be empty")
    params = _params(end_user_id=end_user_id, provider=provider)
    return Call("GET", "/v1/token", Token.from_json, params=params)


def connections(
    *,
    provider: str | None,
    end_user_id: str | None,
    status: str | None,
    claimed: bool | None,
    limit: int,
    after: str | None,
) -> Call[ConnectionPage]:
    if not 1 <= limit <= 500:
        raise ValueError("limit must be between 1 and 500")
    params = _params(
        provider=provider,
        end_user_id=end_user_id,
        status=status,
        claimed=claimed,
        limit=limit,
        after=after,
    )
    return Call("GET", "/v1/connections", ConnectionPage.from_json, params=params)


def connection(connection_id: str) -> Call[Connection]:
    return Call("GET", f"/v1/connections/{_segment(connection_id)}", Connection.from_json)


def refresh(connection_id: str) -> Call[Connection]:
    path = f"/v1/connections/{_segment(connection_id)}/refresh"
    return Call("POST", path, Connection.from_json)


def claim(
    connection_id: str, end_user_id: str | None, expected_end_user_id: str | None
) -> Call[Connection]:
    body: dict[str, Any] = {"end_user_id": end_user_id}
    if expected_end_user_id is not None:
        body["expected_end_user_id"] = expected_end_user_id
    path = f"/v1/connections/{_segment(connection_id)}"
    return Call("PATCH", path, Connection.from_json, json=body)


def delete(connection_id: str) -> Call[None]:
    path = f"/v1/connections/{_segment(connection_id)}"
    return Call("DELETE", path, _nothing, expect=204)


def connect_session(provider: str, end_user_id: str, return_to: str | None) -> Call[ConnectSession]:
    body: dict[str, Any] = {"provider": provider, "end_user_id": end_user_id}
    if return_to is not None:
        body["return_to"] = return_to
    return Call("POST", "/v1/connect-sessions", ConnectSession.from_json, json=body, expect=201)


def _nothing(_: Any) -> None:
    return None
