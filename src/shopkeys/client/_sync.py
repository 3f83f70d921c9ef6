"""`SyncClient`: the API from code without an event loop, the twin of `Client`."""

from __future__ import annotations

from collections.abc import Iterator
from types import TracebackType
from typing import TypeVar

import httpx2

from shopkeys.client import _core
from shopkeys.client._core import DEFAULT_TIMEOUT, Call, Config, check_proxied
from shopkeys.client.models import (
    Connection,
    ConnectionPage,
    ConnectSession,
    Provider,
    Status,
    Token,
)

T = TypeVar("T")


class SyncClient:
    """The shopkeys API for synchronous code: `with SyncClient(url, key) as shopkeys: ...`.

    One connection pool serves the client and every `api()` client it hands out. `transport`
    replaces that pool (an `httpx2.MockTransport` in tests, or an `httpx2.HTTPTransport`
    with your own limits, proxy or TLS settings); the client closes it in `close()`.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout: httpx2.Timeout | float | None = DEFAULT_TIMEOUT,
        transport: httpx2.BaseTransport | None = None,
    ) -> None:
        self._config = Config.of(base_url, api_key, timeout)
        self._transport = transport or httpx2.HTTPTransport()
        self._http = httpx2.Client(
            base_url=self._config.base_url,
            headers=self._config.headers(),
            timeout=self._config.timeout,
            transport=self._transport,
        )
        self._closed = False

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={self._config.base_url!r})"

    @property
    def base_url(self) -> str:
        return self._config.base_url

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> SyncClient:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection pool; the `api()` clients stop working with it."""
        self._closed = True
        self._http.close()

    def _send(self, call: Call[T]) -> T:
        response = self._http.request(call.method, call.path, params=call.params, json=call.json)
        return _core.finish(call, response, self._config)

    # -- tokens -----------------------------------------------------------------------------------

    def token(self, connection_id: str) -> Token:
        """A valid access token for the connection, refreshed first when it is about to expire.

        Raises `NotFound`, `NeedsReauth` (the merchant must connect again), `RateLimited`.
        """
        return self._send(_core.token(connection_id))

    def current_token(self, end_user_id: str, provider: Provider | None = None) -> Token:
        """The token of the store the end user connected most recently (on `provider`, if given).

        `NeedsReauth` when that store needs the merchant again: an older store is never served
        in its place.
        """
        return self._send(_core.current_token(end_user_id, provider))

    # -- connections ------------------------------------------------------------------------------

    def connections(
        self,
        *,
        provider: Provider | None = None,
        end_user_id: str | None = None,
        status: Status | None = None,
        claimed: bool | None = None,
        limit: int = 50,
        after: str | None = None,
    ) -> ConnectionPage:
        """One page of connections in id order; pass `page.next_after` as `after` for the next.

        `claimed=False` lists connections without an end user (app market installs).
        """
        call = _core.connections(
            provider=provider,
            end_user_id=end_user_id,
            status=status,
            claimed=claimed,
            limit=limit,
            after=after,
        )
        return self._send(call)

    def iter_connections(
        self,
        *,
        provider: Provider | None = None,
        end_user_id: str | None = None,
        status: Status | None = None,
        claimed: bool | None = None,
        page_size: int = 100,
    ) -> Iterator[Connection]:
        """Every matching connection, fetched a page at a time as the loop goes on."""
        after: str | None = None
        while True:
            page = self.connections(
                provider=provider,
                end_user_id=end_user_id,
                status=status,
                claimed=claimed,
                limit=page_size,
                after=after,
            )
            yield from page.data
            if page.next_after is None:
                return
            after = page.next_after

    def connection(self, connection_id: str) -> Connection:
        """One connection (`NotFound` when there is none)."""
        return self._send(_core.connection(connection_id))

    def refresh(self, connection_id: str) -> Connection:
        """Refresh the tokens now (`NotRefreshable` when there is nothing to refresh)."""
        return self._send(_core.refresh(connection_id))

    def claim(
        self,
        connection_id: str,
        end_user_id: str | None,
        *,
        expected_end_user_id: str | None = None,
    ) -> Connection:
        """Give a connection to an end user (an app market install has none). One that belongs
        to someone else moves only when `expected_end_user_id` names them (`Conflict` if not)."""
        return self._send(_core.claim(connection_id, end_user_id, expected_end_user_id))

    def delete(self, connection_id: str) -> None:
        """Forget the connection and its tokens; the platform's authorization is left as it is."""
        self._send(_core.delete(connection_id))

    # -- connecting a store -----------------------------------------------------------------------

    def connect_session(
        self, provider: Provider, *, end_user_id: str, return_to: str | None = None
    ) -> ConnectSession:
        """A connect link for the merchant `end_user_id`: send them to `session.url`."""
        return self._send(_core.connect_session(provider, end_user_id, return_to))

    # -- the platform's API, through shopkeys -----------------------------------------------------

    def api(self, connection_id: str, *, shop: str | None = None) -> httpx2.Client:
        """An `httpx2.Client` for the platform's own API, through shopkeys' proxy, which
        signs each request with the connection's token: `shopkeys.api(cid).get("/products")`.

        `shop` picks one shop of a TikTok Shop connection. The client shares this one's
        connection pool, so making one per call is cheap; closing it (or `with`) is good
        form but frees nothing, and it stops working once this client is closed. Its answers are
        the platform's, returned as they are: nothing is raised for an error status.
        """
        return httpx2.Client(
            base_url=self._config.proxy_url(connection_id),
            headers=self._config.headers(shop),
            timeout=self._config.timeout,
            transport=_Borrowed(self, self._config.proxy_url(connection_id)),
        )


class _Borrowed(httpx2.BaseTransport):
    """The owner's transport, lent to an `api()` client: closing the borrower leaves it open."""

    def __init__(self, owner: SyncClient, proxy_url: str) -> None:
        self._owner = owner
        self._proxy_url = proxy_url

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        if self._owner.closed:
            raise RuntimeError("the shopkeys SyncClient that made this api() client is closed")
        check_proxied(request, self._proxy_url)
        return self._owner._transport.handle_request(request)

    def close(self) -> None:
        pass
