"""Connecting a store: connect sessions, CSRF state, and completing the platform's callback.

A connect session is a link an app hands its merchant. Opening it creates a fresh state (256
random bits, stored hashed, single use, 10 minutes) and redirects to the platform; the callback
consumes the state, exchanges the code, identifies the account and upserts the connection.
Nothing is written for a callback that fails.

Platforms with an app market (Ecwid) also send merchants who installed the app there to the
callback, with a code and no state: shopkeys started no flow for them, so such an install
connects the store with no end user, for the app to claim (`vault.connections.set_end_user`).
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlencode, urlsplit

import httpx2

from shopkeys.clock import Clock, utc_now
from shopkeys.crypto import fingerprint
from shopkeys.errors import AuthorizationDead, BadCallback, ProviderError
from shopkeys.flow_errors import (
    AlreadyCompleted,
    FlowError,
    IncompleteConfiguration,
    InvalidRequest,
    LinkClosed,
    NotConfigured,
    PlatformRefused,
    StateRejected,
    UnknownLink,
    WrongBrowser,
)
from shopkeys.grant import Account, Grant
from shopkeys.providers.base import Provider
from shopkeys.store.auth_sessions import StateProblem
from shopkeys.store.records import AuthSession, Connection
from shopkeys.store.vault import Vault

STATE_LIFETIME = timedelta(minutes=10)
SESSION_LIFETIME = timedelta(minutes=30)
_RESERVED_CALLBACK_PARAMETERS = frozenset({"code", "state", "self", "http", "redirect_uri"})


@dataclass(frozen=True, slots=True)
class NeedsConfirmation:
    """A callback that came back in another browser than the one that opened the link.

    The grant waits, encrypted, for the browser that opened the link: only there can the
    merchant confirm it (a page in the arriving browser could be an attacker's own).
    """

    session: AuthSession
    provider: Provider


@dataclass(frozen=True, slots=True)
class AwaitingConfirmation:
    """A connect link reopened in its own browser while a grant waits for confirmation."""

    session: AuthSession
    provider: Provider
    account: Account


@dataclass(frozen=True, slots=True)
class OpenLink:
    """A connect link that can be followed: its session and the platform it connects."""

    session: AuthSession
    provider: Provider


@dataclass(frozen=True, slots=True)
class ConnectLink:
    """Where to send the merchant, and until when the link works."""

    session_id: str
    url: str
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class Completed:
    """A callback that stored a connection; `session` is None for an app market install."""

    connection: Connection
    created: bool
    session: AuthSession | None

    @property
    def installed(self) -> bool:
        """Whether the merchant came from the platform's app market, not from a connect link."""
        return self.session is None


class ConnectFlow:
    """The connect use case, independent of any web framework."""

    def __init__(
        self,
        vault: Vault,
        providers: Mapping[str, Provider],
        http: httpx2.AsyncClient,
        *,
        public_url: str,
        redirect_uri: Callable[[str], str],
        allowed_return_origins: list[str],
        clock: Clock = utc_now,
    ) -> None:
        self.vault = vault
        self.providers = providers
        self.http = http
        self.public_url = public_url.rstrip("/")
        self.redirect_uri = redirect_uri
        self.allowed_return_origins = {_origin(o) for o in allowed_return_origins}
        self.clock = clock

    def provider(self, name: str) -> Provider:
        provider = self.providers.get(name)
        if provider is None:
            raise NotConfigured(
                f"{name} is not configured: set its app credentials (see `shopkeys doctor`)"
            )
        return provider

    async def _open_session(self, token: str) -> AuthSession:
        session = await self.vault.sessions.by_token(fingerprint(token))
        if session is None:
            raise UnknownLink("This connect link is not valid.")
        return session

    def _ready(self, provider: Provider) -> Provider:
        problem = provider.authorization_problem()
        if problem is not None:
            raise IncompleteConfiguration(f"Cannot connect: {problem}.")
        return provider

    async def start(
        self, provider: str, *, end_user_id: str | None, return_to: str | None = None
    ) -> ConnectLink:
        """A new connect session for `end_user_id`; its URL starts the platform's authorization."""
        self._ready(self.provider(provider))
        if return_to is not None and not self._allowed(return_to):
            raise InvalidRequest(
                "return_to must be on an allowed origin (SHOPKEYS_RETURN_TO_ORIGINS)",
                code="return_to_not_allowed",
            )
        token = secrets.token_urlsafe(32)
        expires_at = self.clock() + SESSION_LIFETIME
        session = await self.vault.sessions.create(
            provider=provider,
            end_user_id=end_user_id,
            return_to=return_to,
            token_hash=fingerprint(token),
            expires_at=expires_at,
        )
        # The secret goes in a query parameter that log redaction knows, never in the path.
        link = f"{self.public_url}/connect?{urlencode({'session': token})}"
        return ConnectLink(session.id, link, expires_at)

    async def open_link(
        self, token: str, *, browser: str | None = None
    ) -> OpenLink | AwaitingConfirmation:
        """What a connect link leads to, starting nothing: the page the merchant sees first.

        `FlowError` for a link that is unknown, used, expired or whose platform cannot connect;
        `AwaitingConfirmation` when it is reopened in its own browser while a grant from
        another browser waits (`WrongBrowser` in any other browser).
        """
        session = await self._open_session(token)
        if session.waiting:
            if not _same_browser(session, browser):
                raise WrongBrowser(
                    "This connection is waiting for the browser where the link was first "
                    "opened: open the link again there to finish."
                )
            held = await self.vault.sessions.held_grant(session.id)
            if held is not None:
                provider = self.provider(session.provider)
                return AwaitingConfirmation(session=session, provider=provider, account=held[1])
        if session.consumed_at is not None:
            raise LinkClosed("This connect link has already been used.")
        if self.clock() >= session.expires_at:
            raise LinkClosed("This connect link has expired.", code="expired_session")
        return OpenLink(session, self._ready(self.provider(session.provider)))

    async def authorization_redirect(
        self, token: str, *, browser: str | None = None
    ) -> str | AwaitingConfirmation:
        """The platform's authorization URL for a connect link, with a fresh single-use state.

        `browser` is the secret of the cookie the link's page set: the first browser to open the
        link holds it, and the callback completes silently only there (RFC 6749 section 10.12).
        Reopened there while a grant from another browser waits, the link asks to confirm it.
        """
        opened = await self.open_link(token, browser=browser)
        if isinstance(opened, AwaitingConfirmation):
            return opened
        state = secrets.token_urlsafe(32)
        await self.vault.sessions.issue_state(
            opened.session.id,
            fingerprint(state),
            self.clock() + STATE_LIFETIME,
            browser_hash=fingerprint(browser) if browser else None,
        )
        return opened.provider.authorization_url(state, self.redirect_uri(opened.provider.name))

    async def complete(
        self, provider_name: str, params: Mapping[str, str], *, browser: str | None = None
    ) -> Completed | NeedsConfirmation:
        """Finish an authorization from the callback's query parameters.

        In the browser that opened the connect link (`browser`, its cookie's secret) the store
        is connected at once; anywhere else the merchant is asked to confirm first.
        """
        provider = self.provider(provider_name)
        if "error" in params:
            # The merchant declined (or the platform refused); the state dies with it, but only
            # on its own platform's callback.
            if params.get("state"):
                await self.vault.sessions.consume_state(
                    fingerprint(params["state"]), provider=provider.name
                )
            raise InvalidRequest(
                f"The authorization was declined on {provider.display_name}.", code="declined"
            )
        state = params.get("state")
        if not state:
            if provider.installs_without_state:
                return await self._install(provider, params)
            raise InvalidRequest("The callback has no state parameter.", code="missing_state")
        check = await self.vault.sessions.consume_state(fingerprint(state), provider=provider.name)
        if check.problem is not None or check.session is None:
            raise _state_error(check.problem)
        session = check.session
        try:
            grant, account = await self._exchange(provider, params)
            if not _same_browser(session, browser):
                await self.vault.sessions.hold_for_confirmation(session.id, grant, account)
                return NeedsConfirmation(session=session, provider=provider)
            return await self._store(session, grant, account)
        except Exception:
            # Whatever failed, the link is not used up: the merchant may open it again.
            await self.vault.sessions.reopen(session.id)
            raise

    async def confirm(self, token: str, *, browser: str | None, approved: bool) -> Completed | None:
        """The answer on the confirmation page, from the browser that opened the link `token`.

        None when the merchant cancelled; the link may then be used again.
        """
        session = await self._open_session(token)
        waiting = session.waiting and _same_browser(session, browser)
        held = await self.vault.sessions.take_held_grant(session.id) if waiting else None
        if held is None:
            raise LinkClosed(
                "There is nothing to confirm here: open the connect link again.",
                code="nothing_to_confirm",
            )
        if not approved:
            await self.vault.sessions.reopen(session.id)
            return None
        grant, account = held
        return await self._store(session, grant, account)

    async def _store(self, session: AuthSession, grant: Grant, account: Account) -> Completed:
        connection, created = await self.vault.connections.upsert(
            grant, account, end_user_id=session.end_user_id
        )
        await self.vault.sessions.complete(session.id, connection.id)
        return Completed(connection=connection, created=created, session=session)

    async def _install(self, provider: Provider, params: Mapping[str, str]) -> Completed:
        """An app market install: no state to check, no end user; a reinstall keeps its owner.

        Each code is exchanged at most once (a reload of the page must not spend it again, which
        would disable the token the first exchange stored), unless that exchange failed.
        """
        code = params.get("code")
        if not code:
            raise InvalidRequest("The callback has no authorization code.", code="missing_code")
        marker = await self.vault.sessions.record_install(
            provider=provider.name,
            code_hash=fingerprint(f"install:{provider.name}:{code}"),
            expires_at=self.clock() + STATE_LIFETIME,
        )
        if marker is None:
            raise AlreadyCompleted(
                "This installation was already completed: go back to the app to continue."
            )
        try:
            grant, account = await self._exchange(provider, params)
        except FlowError:
            # Nothing was stored, so nothing a second exchange could disable: let it be retried.
            await self.vault.sessions.forget_install(marker.id)
            raise
        connection, created = await self.vault.connections.upsert(
            grant, account, end_user_id=None, source="app_market"
        )
        await self.vault.sessions.complete(marker.id, connection.id)
        return Completed(connection=connection, created=created, session=None)

    async def _exchange(
        self, provider: Provider, params: Mapping[str, str]
    ) -> tuple[Grant, Account]:
        code = params.get("code")
        if not code:
            raise InvalidRequest("The callback has no authorization code.", code="missing_code")
        # Only parameters that cannot collide with `exchange_code`'s own arguments: a callback
        # carrying `redirect_uri=` or `http=` would otherwise be a TypeError, a 500.
        extra = {k: v for k, v in params.items() if k not in _RESERVED_CALLBACK_PARAMETERS}
        try:
            grant = await provider.exchange_code(
                self.http, code, self.redirect_uri(provider.name), **extra
            )
            account = await provider.identify(self.http, grant)
        except BadCallback as exc:
            raise InvalidRequest(f"{exc}.", code="bad_callback") from exc
        except AuthorizationDead as exc:
            raise PlatformRefused(
                f"{provider.display_name} refused the authorization code: {exc.detail}",
                code="platform_refused",
            ) from exc
        except ProviderError as exc:
            raise PlatformRefused(
                f"{provider.display_name} failed while connecting: {exc.detail}"
            ) from exc
        return grant, account

    def _allowed(self, url: str) -> bool:
        origin = _origin(url)
        return bool(origin) and origin in self.allowed_return_origins

    def safe_return_to(self, return_to: str | None) -> str | None:
        """`return_to` if its origin is allowed (checked again: settings may have changed)."""
        if return_to and self._allowed(return_to):
            return return_to
        return None


def _same_browser(session: AuthSession, browser: str | None) -> bool:
    if session.browser_hash is None or not browser:
        return False
    return hmac.compare_digest(session.browser_hash, fingerprint(browser))


def _state_error(problem: StateProblem | None) -> FlowError:
    if problem is StateProblem.WRONG_PROVIDER:
        return InvalidRequest(
            "The callback does not belong to this platform.", code="wrong_provider"
        )
    if problem is StateProblem.EXPIRED:
        return StateRejected("This authorization took too long; start again.", code="expired_state")
    if problem is StateProblem.USED:
        return StateRejected("This authorization was already completed.", code="reused_state")
    return StateRejected("The callback's state is not one we issued.")


def _origin(url: str) -> str:
    try:
        parts = urlsplit(url)
    except ValueError:
        # Not a URL at all ("http://[::1"): an origin nothing is allowed to match.
        return ""
    return f"{parts.scheme}://{parts.netloc}".lower()
