"""Sending an app's call to the platform with the connection's credentials, and its answer back.

The answer streams: only its first `PEEK_LIMIT` bytes are read before the app sees anything. A
whole answer that fits is classified by the platform's provider, because the platforms that
matter here say "token expired" or "slow down" in small bodies (TikTok Shop and AliExpress with
HTTP 200): an expired token is refreshed once and the call sent once more; a dead authorization
marks the connection and answers 409; a rate limit passes through with its `Retry-After`. A
larger answer is no such error and streams through untouched.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import httpx2

from shopkeys import metrics
from shopkeys.errors import (
    AccessExpired,
    AuthorizationDead,
    ProviderError,
    RateLimited,
    ShopkeysError,
)
from shopkeys.flow_errors import NotConfigured
from shopkeys.providers.base import Provider
from shopkeys.proxy.call import ApiCall, answer_headers
from shopkeys.proxy.pacing import CallPacer, QueueTooLong
from shopkeys.refresh import FreshToken, TokenService

log = logging.getLogger("shopkeys.proxy")

#: How much of an answer is read before deciding whether it is one to act on.
PEEK_LIMIT: Final = 64 * 1024

#: Statuses whose answers have no body, and so no length to state (RFC 9110 8.6).
_BODILESS_STATUSES: Final = frozenset({204, 304})

#: Set on an answer to a call that was sent again with a refreshed token.
REFRESHED_HEADER: Final = "x-shopkeys-refreshed"


class PlatformUnreachable(ShopkeysError):
    """The platform could not be reached, or broke off its answer before the status line."""


class PlatformTimeout(PlatformUnreachable):
    """The platform did not answer within `SHOPKEYS_PLATFORM_TIMEOUT`."""


@dataclass(slots=True)
class ProxiedAnswer:
    """The platform's answer as the app gets it: `stream` when it is longer than the peek
    (`close` releases the upstream however the streaming ends); otherwise `whole`, the body the
    peek read (the upstream is released already, and it can be sent as it is)."""

    status: int
    headers: list[tuple[str, str]]
    upstream: httpx2.Response
    whole: bytes = b""
    stream: AsyncIterator[bytes] | None = None

    async def close(self) -> None:
        await self.upstream.aclose()


class ApiProxy:
    """Forwards apps' calls to the platforms, signed with their connections' tokens."""

    def __init__(
        self,
        tokens: TokenService,
        providers: Mapping[str, Provider],
        http: httpx2.AsyncClient,
        *,
        pacer: CallPacer | None = None,
    ) -> None:
        self.tokens = tokens
        self.providers = providers
        self.http = http
        self.pacer = pacer
        # A connection's shops by the token they were read with: a reconnect changes the token,
        # so an entry can never outlive what it describes.
        self._shops: dict[str, tuple[str, Sequence[Mapping[str, Any]]]] = {}

    async def send(self, connection_id: str, call: ApiCall) -> ProxiedAnswer:
        """Send `call` for the connection and return the platform's answer, streaming.

        Raises what the token service raises (no such connection, needs re-authorization, a
        refresh that failed), `RateLimited` when the call would queue too long for its turn,
        `PlatformUnreachable` when the platform does not answer, `BadApiCall` for a call its
        platform cannot take.
        """
        token = self.tokens.cached(connection_id) or await self.tokens.fresh_token(connection_id)
        provider = self._provider(token.provider)
        try:
            answer = await self._send(connection_id, token, provider, call)
        except Exception:
            metrics.proxy_call(provider.name, None)
            raise
        metrics.proxy_call(provider.name, answer.status)
        return answer

    async def _send(
        self, connection_id: str, token: FreshToken, provider: Provider, call: ApiCall
    ) -> ProxiedAnswer:
        retried = False
        while True:
            upstream = await self._send_once(provider, token, call)
            try:
                head, rest = await _peek(upstream)
                error = None if rest is not None else _classified(provider, upstream, head, token)
                again = await self._retry_token(connection_id, token, error, retried=retried)
            except BaseException:
                # Cancelled (the app went away), broken off, or refused: release the connection.
                await upstream.aclose()
                raise
            # One retry only: its answer is the app's, whatever a third try might say.
            if again is None or retried:
                if rest is None:
                    await upstream.aclose()
                return _answer(upstream, head, rest, retried, error)
            await upstream.aclose()
            log.info("%s call for %s sent again with a new token", provider.name, connection_id)
            metrics.proxy_retry(provider.name)
            token, retried = again, True

    async def _retry_token(
        self, connection_id: str, token: FreshToken, error: ProviderError | None, *, retried: bool
    ) -> FreshToken | None:
        """The token to send the call again with, or None to answer as the platform did.

        A dead authorization marks the connection (and raises) even on the retry's answer.
        """
        if isinstance(error, AccessExpired) and not retried:
            return await self.tokens.after_expired(connection_id, token.access_token)
        if isinstance(error, AuthorizationDead):
            return await self.tokens.after_refused(connection_id, token.access_token, error)
        return None

    async def _send_once(
        self, provider: Provider, token: FreshToken, call: ApiCall
    ) -> httpx2.Response:
        request = provider.api_request(
            call.method,
            call.path,
            account_id=token.account_id,
            query=call.query,
            headers=call.headers,
            content=call.body,
            shops=await self._shops_of(token),
            shop_id=call.shop_id,
        )
        request = provider.sign_request(request, token.access_token)
        limit = provider.api_calls_per_minute
        if self.pacer is not None and limit:
            try:
                waited = await self.pacer.wait_turn(token.connection_id, limit)
            except QueueTooLong as full:
                raise RateLimited(
                    f"more calls than {provider.display_name} takes ({limit} a minute) are "
                    f"queued for this connection; try again in {full.wait:.0f} s",
                    provider=provider.name,
                    endpoint="proxy",
                    retry_after=full.wait,
                ) from None
            if waited:
                metrics.proxy_queued(provider.name, waited)
        try:
            return await self.http.send(request, stream=True)
        except httpx2.TimeoutException:
            raise PlatformTimeout(f"{provider.display_name} did not answer in time") from None
        except httpx2.TransportError as exc:
            # The exception's text may hold the URL, and AliExpress's carries the token.
            raise PlatformUnreachable(
                f"{provider.display_name} could not be reached ({type(exc).__name__})"
            ) from None

    async def _shops_of(self, token: FreshToken) -> Sequence[Mapping[str, Any]]:
        known = self._shops.get(token.connection_id)
        if known is not None and known[0] == token.access_token:
            return known[1]
        connection = await self.tokens.vault.connections.get(token.connection_id)
        shops: Sequence[Mapping[str, Any]] = connection.shops if connection is not None else ()
        self._shops[token.connection_id] = (token.access_token, shops)
        return shops

    def _provider(self, name: str) -> Provider:
        provider = self.providers.get(name)
        if provider is None:
            raise NotConfigured(f"{name} is not configured here, so its calls cannot be signed")
        return provider


async def _peek(upstream: httpx2.Response) -> tuple[bytes, AsyncIterator[bytes] | None]:
    """The answer's first bytes, and the rest still to stream (None: there is no more)."""
    chunks: list[bytes] = []
    size = 0
    raw = upstream.aiter_raw()
    try:
        async for chunk in raw:
            chunks.append(chunk)
            size += len(chunk)
            if size > PEEK_LIMIT:
                return b"".join(chunks), raw
    except httpx2.TimeoutException:
        raise PlatformTimeout("the platform did not finish its answer in time") from None
    except httpx2.TransportError:
        raise PlatformUnreachable("the platform broke off its answer") from None
    return b"".join(chunks), None


def _classified(
    provider: Provider, upstream: httpx2.Response, body: bytes, token: FreshToken
) -> ProviderError | None:
    """The provider's reading of a whole answer: which error it is, if any."""
    try:
        whole = httpx2.Response(
            upstream.status_code, headers=upstream.headers, content=body, request=upstream.request
        )
        return provider.classify(whole, "proxy", secrets=(token.access_token,))
    except httpx2.DecodingError:
        # A body its own Content-Encoding cannot decode: the app gets it as it came.
        return None


def _answer(
    upstream: httpx2.Response,
    head: bytes,
    rest: AsyncIterator[bytes] | None,
    refreshed: bool,
    error: ProviderError | None,
) -> ProxiedAnswer:
    # Latin-1 both ways keeps every byte the platform sent (UTF-8 in a filename, say).
    headers = answer_headers(
        (k.decode("latin-1"), v.decode("latin-1")) for k, v in upstream.headers.raw
    )
    names = {name.lower() for name, _ in headers}
    bodiless = upstream.request.method == "HEAD" or upstream.status_code in _BODILESS_STATUSES
    if rest is None and "content-length" not in names and not bodiless:
        # The whole body is here: say its length rather than stream it in chunks.
        headers.append(("content-length", str(len(head))))
    if isinstance(error, RateLimited) and error.retry_after and "retry-after" not in names:
        # AliExpress says its wait in the message: apps get it where HTTP puts it.
        headers.append(("retry-after", str(max(1, round(error.retry_after)))))
    if refreshed:
        headers.append((REFRESHED_HEADER, "true"))
    if rest is None:
        return ProxiedAnswer(upstream.status_code, headers, upstream, whole=head)
    return ProxiedAnswer(
        upstream.status_code, headers, upstream, stream=_stream(upstream, head, rest)
    )


async def _stream(
    upstream: httpx2.Response, head: bytes, rest: AsyncIterator[bytes]
) -> AsyncIterator[bytes]:
    try:
        yield head
        async for chunk in rest:
            yield chunk
    finally:
        await upstream.aclose()
