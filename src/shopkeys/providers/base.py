"""The interface every platform module implements, and the plumbing they share.

A provider is pure protocol: it builds URLs, sends requests through the `httpx2.AsyncClient` its
caller hands it, parses answers into a `Grant`, and classifies errors. It holds no state beyond its
configuration and never touches storage.
"""

from __future__ import annotations

import json
import math
from abc import ABC, abstractmethod
from collections.abc import Generator, Iterable, Mapping
from typing import Any, ClassVar, NoReturn, TypeVar
from urllib.parse import urlsplit

import httpx2

from shopkeys.clock import Clock, utc_now
from shopkeys.credentials import AppCredentials
from shopkeys.errors import (
    ConfigurationError,
    NotSupported,
    ProtocolError,
    ProviderError,
    RateLimited,
    TemporaryFailure,
)
from shopkeys.grant import Account, Grant
from shopkeys.redact import guard_logs

guard_logs()

E = TypeVar("E", bound=ProviderError)

# Response fields that carry credentials: never copied into `Grant.raw` or logged.
TOKEN_FIELDS = frozenset({"access_token", "refresh_token", "public_token", "id_token"})


class Provider(ABC):
    """One platform's OAuth protocol: authorize, exchange, refresh, identify, sign, verify."""

    name: ClassVar[str]
    display_name: ClassVar[str]
    #: The real platform's hosts, by role; a configured base URL replaces all of them.
    default_hosts: ClassVar[Mapping[str, str]]
    #: Hosts that differ by the seller's region, by region name and then by role.
    regional_hosts: ClassVar[Mapping[str, Mapping[str, str]]] = {}
    default_scopes: ClassVar[tuple[str, ...]] = ()
    #: False where access tokens never expire (Ecwid), so there is nothing to refresh.
    refreshable: ClassVar[bool] = True
    #: True where the platform signs the webhooks it sends.
    signs_webhooks: ClassVar[bool] = False
    #: True where the platform sends merchants to the redirect URI with a code but no state when
    #: they install the app from its app market (Ecwid): a flow that shopkeys did not start.
    installs_without_state: ClassVar[bool] = False
    #: What the account id is, where the platform cannot tell whose an access token is (so an
    #: import must say it); None where `identify` finds out from the token.
    account_id_hint: ClassVar[str | None] = None

    def __init__(
        self,
        credentials: AppCredentials,
        *,
        base_url: str | None = None,
        hosts: Mapping[str, str] | None = None,
        region: str | None = None,
        scopes: Iterable[str] | None = None,
        redirect_uri: str | None = None,
        clock: Clock = utc_now,
    ) -> None:
        """`base_url` replaces every host (a sandbox); `hosts` replaces single roles' hosts;
        `region` picks the platform's regional hosts; `redirect_uri` is the registered one."""
        self.credentials = credentials
        self.base_url = base_url.rstrip("/") if base_url else None
        self.hosts = self._resolve_hosts(region, hosts or {})
        self.scopes = tuple(scopes) if scopes is not None else self.default_scopes
        self.redirect_uri = redirect_uri
        self.clock = clock

    @classmethod
    def _resolve_hosts(cls, region: str | None, overrides: Mapping[str, str]) -> dict[str, str]:
        hosts = dict(cls.default_hosts)
        if region:
            if region.lower() not in cls.regional_hosts:
                known = ", ".join(sorted(cls.regional_hosts)) or "none"
                raise ConfigurationError(
                    f"{cls.display_name} has no region {region!r} (known regions: {known})"
                )
            hosts.update(cls.regional_hosts[region.lower()])
        unknown = set(overrides) - set(hosts)
        if unknown:
            raise ConfigurationError(
                f"{cls.display_name} has no host role {', '.join(sorted(unknown))} "
                f"(roles: {', '.join(hosts)})"
            )
        hosts.update({role: url.rstrip("/") for role, url in overrides.items()})
        return hosts

    def __repr__(self) -> str:
        where = self.base_url or "platform"
        return f"<{type(self).__name__} client_id={self.credentials.client_id!r} at {where}>"

    # -- addresses ------------------------------------------------------------------------------

    def url(self, role: str, path: str) -> str:
        """The full URL of `path` on the host that plays `role` (or under the base URL)."""
        root = self.base_url or self.hosts[role]
        return root + path

    def account_id_problem(self, account_id: str) -> str | None:
        """Why `account_id` cannot be one of this platform's account ids, or None if it can."""
        return None

    def authorization_problem(self) -> str | None:
        """What keeps this app from sending merchants to authorize, or None when nothing does."""
        return None

    def platform_path(self, url_path: str) -> str:
        """The platform's own path for a request path, without a base URL's prefix (for signing)."""
        if self.base_url:
            prefix = urlsplit(self.base_url).path.rstrip("/")
            if prefix and url_path.startswith(prefix + "/"):
                return url_path[len(prefix) :]
        return url_path

    # -- the protocol -----------------------------------------------------------------------------

    @abstractmethod
    def authorization_url(
        self, state: str, redirect_uri: str, scopes: Iterable[str] | None = None
    ) -> str:
        """Where to send the merchant's browser to approve the app."""

    @abstractmethod
    async def exchange_code(
        self, http: httpx2.AsyncClient, code: str, redirect_uri: str, **callback_params: str
    ) -> Grant:
        """Trade an authorization code (and any other callback parameters) for a grant."""

    async def refresh(self, http: httpx2.AsyncClient, refresh_token: str) -> Grant:
        """Trade a refresh token for a new grant; keep the new refresh token it carries."""
        raise NotSupported(f"{self.display_name} tokens do not expire, so they cannot be refreshed")

    @abstractmethod
    async def identify(self, http: httpx2.AsyncClient, grant: Grant) -> Account:
        """Who authorized the grant, and which shops or stores it covers."""

    def sign_request(self, request: httpx2.Request, access_token: str) -> httpx2.Request:
        """Add what the platform's API needs to accept `request` (credentials, signature)."""
        request.headers["Authorization"] = f"Bearer {access_token}"
        return request

    def auth(self, access_token: str) -> httpx2.Auth:
        """An httpx2 auth that signs every request sent with it for this platform's API."""
        return _SigningAuth(self, access_token)

    def verify_webhook(self, headers: Mapping[str, str], body: bytes) -> bool:
        """Whether a webhook really comes from the platform (constant-time comparison)."""
        raise NotSupported(f"{self.display_name} does not sign its webhooks")

    # -- plumbing for the platform modules ------------------------------------------------------

    async def _send(
        self,
        http: httpx2.AsyncClient,
        method: str,
        url: str,
        *,
        endpoint: str,
        **kwargs: Any,
    ) -> httpx2.Response:
        """Send a request, turning transport failures into `TemporaryFailure` without the URL."""
        try:
            return await http.request(method, url, **kwargs)
        except httpx2.TimeoutException:
            raise self._error(
                TemporaryFailure, endpoint, "the platform did not answer in time"
            ) from None
        except httpx2.TransportError as exc:
            # The exception's text can hold the URL, and some platforms put secrets in queries.
            raise self._error(
                TemporaryFailure, endpoint, f"connection failed ({type(exc).__name__})"
            ) from None

    def _error(
        self,
        kind: type[E],
        endpoint: str,
        message: str,
        *,
        code: str | None = None,
        status: int | None = None,
    ) -> E:
        return kind(message, provider=self.name, endpoint=endpoint, code=code, status=status)

    def _rate_limited(
        self,
        endpoint: str,
        message: str,
        *,
        code: str | None = None,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> RateLimited:
        return RateLimited(
            message,
            provider=self.name,
            endpoint=endpoint,
            code=code,
            status=status,
            retry_after=retry_after,
        )

    def _check_http_status(self, response: httpx2.Response, endpoint: str) -> None:
        """Classify what the HTTP status alone decides: 429 and 5xx."""
        status = response.status_code
        if status == 429:
            raise self._rate_limited(
                endpoint,
                "too many requests",
                status=status,
                retry_after=retry_after_seconds(response),
            )
        if status >= 500:
            raise self._error(
                TemporaryFailure, endpoint, f"the platform failed with HTTP {status}", status=status
            )

    def _json_object(self, response: httpx2.Response, endpoint: str) -> Fields:
        """The response body as a JSON object, or a `ProtocolError` saying what it was instead."""
        try:
            data = response.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            kind = response.headers.get("content-type", "no content type")
            raise self._protocol(
                endpoint, f"expected a JSON body, got HTTP {response.status_code} with {kind}"
            ) from None
        if not isinstance(data, dict):
            raise self._protocol(endpoint, f"expected a JSON object, got {type(data).__name__}")
        return Fields(data, provider=self.name, endpoint=endpoint)

    def _protocol(self, endpoint: str, what: str) -> ProtocolError:
        return ProtocolError(what, provider=self.name, endpoint=endpoint)


class _SigningAuth(httpx2.Auth):
    """Signs each request through its provider.

    It does no I/O of its own, so sync and async clients can share it.
    """

    # Signatures cover the body on some platforms, so httpx2 must read it before the flow runs.
    requires_request_body = True

    def __init__(self, provider: Provider, access_token: str) -> None:
        self._provider = provider
        self._access_token = access_token

    def __repr__(self) -> str:
        return f"<signing auth for {self._provider.name}>"

    def auth_flow(
        self, request: httpx2.Request
    ) -> Generator[httpx2.Request, httpx2.Response, None]:
        yield self._provider.sign_request(request, self._access_token)


class Fields:
    """Typed access to a platform's JSON object: a wrong or missing field is a `ProtocolError`."""

    def __init__(self, data: dict[str, Any], *, provider: str, endpoint: str) -> None:
        self.data = data
        self.provider = provider
        self.endpoint = endpoint

    def __contains__(self, key: str) -> bool:
        return key in self.data

    def _fail(self, what: str) -> NoReturn:
        raise ProtocolError(what, provider=self.provider, endpoint=self.endpoint)

    def get(self, key: str) -> Any:
        return self.data.get(key)

    def text(self, key: str) -> str:
        value = self.data.get(key)
        if not isinstance(value, str) or value == "":
            self._fail(f"field {key!r} should be a non-empty string, got {_kind(value)}")
        return value

    def opt_text(self, key: str) -> str | None:
        value = self.data.get(key)
        if value is None or value == "":
            return None
        if isinstance(value, bool) or not isinstance(value, str | int):
            self._fail(f"field {key!r} should be a string, got {_kind(value)}")
        return str(value)

    def id(self, key: str) -> str:
        """An identifier sent as a string or a number, returned as a string."""
        value = self.data.get(key)
        if isinstance(value, bool) or not isinstance(value, str | int) or value == "":
            self._fail(f"field {key!r} should be an id (string or integer), got {_kind(value)}")
        return str(value)

    def number(self, key: str) -> float:
        value = self.data.get(key)
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                self._fail(f"field {key!r} should be a number, got a non-numeric string")
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            self._fail(f"field {key!r} should be a number, got {_kind(value)}")
        return float(value)

    def opt_number(self, key: str) -> float | None:
        if self.data.get(key) is None:
            return None
        return self.number(key)

    def object(self, key: str) -> Fields:
        value = self.data.get(key)
        if not isinstance(value, dict):
            self._fail(f"field {key!r} should be an object, got {_kind(value)}")
        return Fields(value, provider=self.provider, endpoint=self.endpoint)

    def objects(self, key: str) -> list[Fields]:
        value = self.data.get(key)
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            self._fail(f"field {key!r} should be a list of objects, got {_kind(value)}")
        return [Fields(v, provider=self.provider, endpoint=self.endpoint) for v in value]

    def texts(self, key: str) -> list[str]:
        value = self.data.get(key)
        if value is None:
            return []
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            self._fail(f"field {key!r} should be a list of strings, got {_kind(value)}")
        return list(value)

    def without_tokens(self) -> dict[str, Any]:
        """The object minus every credential field, fit to store in `Grant.raw`."""
        return {k: v for k, v in self.data.items() if k not in TOKEN_FIELDS}


def _kind(value: object) -> str:
    if value is None:
        return "nothing"
    return type(value).__name__


def retry_after_seconds(response: httpx2.Response) -> float | None:
    """The Retry-After header in seconds (HTTP dates are not used by these platforms)."""
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


def split_scopes(value: str | None) -> list[str]:
    """Scopes sent as one space- or comma-separated string, as a list."""
    if not value:
        return []
    return [s for s in value.replace(",", " ").split() if s]
