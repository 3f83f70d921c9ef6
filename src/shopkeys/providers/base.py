"""The interface every platform module implements, and the plumbing they share.

A provider is pure protocol: it builds URLs, sends requests through the `httpx2.AsyncClient` its
caller hands it, parses answers into a `Grant`, and classifies errors. It holds no state beyond its
configuration and never touches storage.
"""

from __future__ import annotations

import logging
import math
import re
from abc import ABC, abstractmethod
from collections.abc import Generator, Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, ClassVar, NoReturn, TypeVar
from urllib.parse import urlsplit

import httpx2

from shopkeys.clock import (
    MAX_LIFETIME_YEARS,
    Clock,
    from_epoch_millis,
    from_epoch_seconds,
    lifetime,
    utc_now,
    within_lifetime,
)
from shopkeys.credentials import AppCredentials, CredentialNames
from shopkeys.errors import (
    AccessExpired,
    AuthorizationDead,
    ConfigurationError,
    NotSupported,
    ProtocolError,
    ProviderError,
    RateLimited,
    RequestRejected,
    TemporaryFailure,
)
from shopkeys.grant import Account, Grant
from shopkeys.platform import Platform
from shopkeys.providers.inbound import NO_QUERY, InboundWebhook
from shopkeys.redact import guard_logs, redact

guard_logs()

log = logging.getLogger("shopkeys.providers")

E = TypeVar("E", bound=ProviderError)

# Response fields that carry credentials: never copied into `Grant.raw` or logged.
TOKEN_FIELDS = frozenset({"access_token", "refresh_token", "public_token", "id_token"})

#: The most of a platform's own words an error keeps: enough to diagnose, not a whole page echoed
#: into every stored error and event.
MAX_MESSAGE = 1000

#: Credentials go back to the platform in headers and queries, so they must be what RFC 6749
#: allows a token to be (visible ASCII; a space would split a header) and of a size that platforms
#: issue (the same limit as the API's import).
MAX_CREDENTIAL = 4096
#: The characters of a credential, as a regular expression (the API's import checks the same).
CREDENTIAL_CHARACTERS = r"[\x21-\x7e]+"
_CREDENTIAL = re.compile(CREDENTIAL_CHARACTERS)
#: Ids are stored in a 128-character column and shown; control characters have no place in one.
MAX_ID = 128
_CONTROL = re.compile(r"[\x00-\x1f\x7f\ud800-\udfff]")
#: What no database column or JSON document can hold: NUL, and lone surrogates (which JSON's
#: `\udXXX` escapes produce).
_UNSTORABLE = re.compile(r"[\x00\ud800-\udfff]")
#: How deep `Grant.raw` keeps a platform's nested objects; deeper ones are dropped.
RAW_DEPTH = 16


class Provider(ABC):
    """One platform's OAuth protocol: authorize, exchange, refresh, identify, sign, verify."""

    name: ClassVar[Platform]
    display_name: ClassVar[str]
    #: What the platform calls the app's credentials; the settings carry these names.
    credential_names: ClassVar[CredentialNames] = CredentialNames()
    #: The real platform's hosts, by role; a configured base URL replaces all of them.
    default_hosts: ClassVar[Mapping[str, str]]
    #: Hosts that differ by the seller's region, by region name and then by role.
    regional_hosts: ClassVar[Mapping[str, Mapping[str, str]]] = {}
    default_scopes: ClassVar[tuple[str, ...]] = ()
    #: What each scope lets the app do, in the merchant's words (the connect page says it).
    scope_words: ClassVar[Mapping[str, str]] = {}
    #: What the app may do where the authorization names no scopes, because the platform grants
    #: what the app's listing on its console allows (AliExpress, TikTok Shop).
    unscoped_permissions: ClassVar[str] = "What this app was approved for on the platform"
    #: False where access tokens never expire (Ecwid), so there is nothing to refresh.
    refreshable: ClassVar[bool] = True
    #: The platform's documented access-token lifetime, assumed when a token response from the
    #: code exchange or a refresh leaves the expiry out; None where access tokens never expire
    #: (Ecwid). On a platform whose tokens expire, a missing expiry never means "never": a
    #: connection thought immortal is never refreshed and dies unnoticed. Every platform states
    #: it (no default here), since a wrong guess either way costs connections.
    default_access_lifetime: ClassVar[timedelta | None]
    #: Whether a refresh issues a refresh token with a later deadline, so refreshing pushes a
    #: nearing refresh-token deadline back (SHOPLINE). Where it does not (a refresh keeps the
    #: refresh token's original expiry, or no source says it is extended), the refresh engine must
    #: warn the app in time that the merchant has to authorize again.
    renews_refresh_token: ClassVar[bool]
    #: True where the platform signs the webhooks it sends.
    signs_webhooks: ClassVar[bool] = False
    #: True where the platform sends merchants to the redirect URI with a code but no state when
    #: they install the app from its app market (Ecwid): a flow that shopkeys did not start.
    installs_without_state: ClassVar[bool] = False
    #: What the account id is, where the platform cannot tell whose an access token is (so an
    #: import must say it); None where `identify` finds out from the token.
    account_id_hint: ClassVar[str | None] = None
    #: The most API calls a minute the platform accepts from one access token, where it says
    #: (Ecwid: 600): the proxy queues calls under it rather than have the platform refuse them.
    api_calls_per_minute: ClassVar[int | None] = None

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

    def permissions_in_words(self) -> list[str]:
        """What the app will be able to do once connected, a line each, for the merchant."""
        if not self.scopes:
            return [self.unscoped_permissions]
        return [self.scope_words.get(scope, f"Use “{scope}”") for scope in self.scopes]

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

    def api_request(
        self,
        method: str,
        path: str,
        *,
        account_id: str,
        query: str = "",
        headers: Iterable[tuple[str, str]] = (),
        content: bytes = b"",
        shops: Sequence[Mapping[str, Any]] = (),
        shop_id: str | None = None,
    ) -> httpx2.Request:
        """An app's API call, addressed to the platform and ready for `sign_request`.

        `path` is the platform's own path (from `/`) and `query` the raw query string: both pass
        on as they came. `account_id` and `shops` are the connection's, `shop_id` the shop the
        app named, for platforms where a call acts on one shop of several.
        """
        url = self.api_call_url(path, account_id)
        # As bytes: a header may carry any octet HTTP allows, which httpx2 would not encode.
        raw = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers]
        request = httpx2.Request(
            method, f"{url}?{query}" if query else url, headers=raw, content=content
        )
        return self.for_shop(request, shops, shop_id)

    def for_shop(
        self, request: httpx2.Request, shops: Sequence[Mapping[str, Any]], shop_id: str | None
    ) -> httpx2.Request:
        """`request` made to act on the shop the app named (`shop_id` among the connection's
        `shops`), where one authorization covers several; as it is here."""
        return request

    def api_call_url(self, path: str, account_id: str) -> str:
        """Where an app's API call to `path` goes: the API host, here."""
        return self.url("api", path)

    def auth(self, access_token: str) -> httpx2.Auth:
        """An httpx2 auth that signs every request sent with it for this platform's API."""
        return _SigningAuth(self, access_token)

    def classify(
        self, response: httpx2.Response, endpoint: str = "api", *, secrets: Iterable[str] = ()
    ) -> ProviderError | None:
        """The classified error for the platform's answer to an API call, or None on success.

        `response` answers a request that `sign_request` (or `auth`) prepared; `endpoint` names
        the call in the error. `secrets` are values the request carried (its access token): the
        error never repeats them, nor the app's client secret, should the platform echo the
        request back. An answer that is not the platform's protocol (a gateway's page where an
        error body or a JSON answer is due) is a `ProtocolError` or what its status says.

        This default reads the HTTP status alone, as RFC 6750 has it for Bearer APIs: 2xx is
        success, 429 wait, 408 and 5xx retry, 401 the access token (refresh first, or
        re-authorize where nothing can be refreshed), anything else our request. Platforms that
        answer errors with HTTP 200 or with error codes of their own override it.
        """
        if response.is_success:
            return None
        return self._status_error(response, endpoint) or self._refusal(response, endpoint)

    def verify_webhook(self, headers: Mapping[str, str], body: bytes) -> bool:
        """Whether a webhook really comes from the platform (constant-time comparison)."""
        raise NotSupported(f"{self.display_name} does not sign its webhooks")

    def read_webhook(
        self, headers: Mapping[str, str], body: bytes, *, query: Mapping[str, str] = NO_QUERY
    ) -> InboundWebhook:
        """A webhook verified and read: its event id, type, account and effect.

        `query` is the delivery URL's query, where a platform signs there (SHOPLINE's `sign`).
        `BadSignature` when it is not signed by this app; `MalformedWebhook` when it is not of
        the platform's shape. Checks the signature before reading anything else.
        """
        raise NotSupported(f"{self.display_name} webhooks are not read here")

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
        """Send a request; every failure of httpx2's request family becomes a classified error.

        Messages name the failure's kind, never the exception's text: it can hold the URL, and
        some platforms put secrets in queries.
        """
        try:
            return await http.request(method, url, **kwargs)
        except httpx2.TimeoutException:
            raise self._error(
                TemporaryFailure, endpoint, "the platform did not answer in time"
            ) from None
        except httpx2.TransportError as exc:
            raise self._error(
                TemporaryFailure, endpoint, f"connection failed ({type(exc).__name__})"
            ) from None
        except httpx2.DecodingError:
            # The body does not decode as its Content-Encoding says (a broken gzip stream): the
            # answer is not what the protocol sends, most likely a proxy's doing.
            raise self._protocol(
                endpoint, "the answer's body does not decode as its Content-Encoding says"
            ) from None
        except httpx2.RequestError as exc:
            # The rest of the family (too many redirects, ...): not the platform's protocol either.
            raise self._protocol(endpoint, f"the request failed ({type(exc).__name__})") from None

    def _clean(self, text: str, secrets: Iterable[str | None] = ()) -> str:
        """Platform text made fit to raise, store and show.

        A platform may echo the request it refuses: the app's client secret and `secrets` (the
        code or tokens the call sent) are replaced wherever they appear, then the log filter's
        patterns catch the rest. Shortened to `MAX_MESSAGE` only after that, so no cut can leave
        half a secret that the replacement no longer recognizes.
        """
        cleaned = redact(text, known=(self.credentials.client_secret, *secrets))
        if len(cleaned) > MAX_MESSAGE:
            cleaned = cleaned[: MAX_MESSAGE - 1] + "…"
        return cleaned

    def _error(
        self,
        kind: type[E],
        endpoint: str,
        message: str,
        *,
        code: str | None = None,
        status: int | None = None,
        secrets: Iterable[str | None] = (),
    ) -> E:
        """A `kind` error whose message and code are cleaned of `secrets` and the client secret."""
        secrets = tuple(secrets)
        return kind(
            self._clean(message, secrets),
            provider=self.name,
            endpoint=endpoint,
            code=self._clean(code, secrets) if code else code,
            status=status,
        )

    def _rate_limited(
        self,
        endpoint: str,
        message: str,
        *,
        code: str | None = None,
        status: int | None = None,
        retry_after: float | None = None,
        secrets: Iterable[str | None] = (),
    ) -> RateLimited:
        """A `RateLimited` error, cleaned as `_error` cleans."""
        secrets = tuple(secrets)
        return RateLimited(
            self._clean(message, secrets),
            provider=self.name,
            endpoint=endpoint,
            code=self._clean(code, secrets) if code else code,
            status=status,
            retry_after=retry_after,
        )

    def _check_http_status(self, response: httpx2.Response, endpoint: str) -> None:
        """Raise what the HTTP status alone decides: 429 and 5xx."""
        error = self._status_error(response, endpoint)
        if error is not None:
            raise error

    def _status_error(self, response: httpx2.Response, endpoint: str) -> ProviderError | None:
        """The error the HTTP status alone decides, whatever the body says: 429 and 5xx."""
        status = response.status_code
        if status == 429:
            return self._rate_limited(
                endpoint,
                "too many requests",
                status=status,
                retry_after=retry_after_seconds(response),
            )
        if status >= 500:
            return self._error(
                TemporaryFailure, endpoint, f"the platform failed with HTTP {status}", status=status
            )
        return None

    def _refusal(
        self,
        response: httpx2.Response,
        endpoint: str,
        message: str | None = None,
        *,
        secrets: Iterable[str | None] = (),
    ) -> ProviderError:
        """The error of a non-2xx API answer that carries no error code: its status decides.

        401 refuses the access token, the only credential an API call carries: refresh first, or
        re-authorize where nothing can be refreshed. 408 is a timeout (retry); 429 and 5xx are as
        `_status_error` has them; anything else refused our request. `message` is the platform's
        own words when it sent some.
        """
        status = response.status_code
        error = self._status_error(response, endpoint)
        if error is not None:
            return error
        text = message or f"the platform answered HTTP {status} without an error code"
        kind: type[ProviderError] = RequestRejected
        if status == 401:
            kind = AccessExpired if self.refreshable else AuthorizationDead
        elif status == 408:
            kind = TemporaryFailure
        return self._error(kind, endpoint, text, status=status, secrets=secrets)

    def _json_object(self, response: httpx2.Response, endpoint: str) -> Fields:
        """The response body as a JSON object, or a `ProtocolError` saying what it was instead."""
        try:
            data = parse_json(response)
        except ValueError:
            raise self._protocol(
                endpoint,
                f"expected a JSON body, got HTTP {response.status_code} with "
                f"{media_type(response)}",
            ) from None
        if not isinstance(data, dict):
            raise self._protocol(endpoint, f"expected a JSON object, got {type(data).__name__}")
        return Fields(data, provider=self.name, endpoint=endpoint)

    def _protocol(self, endpoint: str, what: str) -> ProtocolError:
        return self._error(ProtocolError, endpoint, what)

    def _assumed_expiry(self, issued: datetime, endpoint: str) -> datetime | None:
        """The access token's expiry when its token response states none.

        `issued` plus `default_access_lifetime` (None where tokens never expire). Says so in the
        log, naming only the platform, the call and the lifetime, so an operator can tell an
        assumed expiry from a stated one.
        """
        life = self.default_access_lifetime
        if life is None:
            return None
        log.warning(
            "%s %s: the token response states no access-token expiry; assuming the documented "
            "lifetime of %.1f days",
            self.name,
            endpoint,
            life / timedelta(days=1),
        )
        return issued + life


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
    """Typed access to a platform's JSON object: a wrong or missing field is a `ProtocolError`.

    What it hands out can be stored and sent back: text without NUL or lone surrogates, finite
    numbers, credentials of visible ASCII, times and lifetimes a credential can have.
    """

    def __init__(self, data: dict[str, Any], *, provider: str, endpoint: str) -> None:
        self.data = data
        self.provider = provider
        self.endpoint = endpoint

    def __contains__(self, key: str) -> bool:
        return key in self.data

    def _fail(self, what: str) -> NoReturn:
        raise ProtocolError(what, provider=self.provider, endpoint=self.endpoint)

    def get(self, key: str) -> Any:
        """The field as the platform sent it, unchecked (None when missing)."""
        return self.data.get(key)

    def text(self, key: str) -> str:
        """A non-empty string."""
        value = self.data.get(key)
        if not isinstance(value, str) or value == "":
            self._fail(f"field {key!r} should be a non-empty string, got {_kind(value)}")
        return storable_text(value)

    def opt_text(self, key: str) -> str | None:
        """A string (an integer is taken as its digits), or None when missing or empty."""
        value = self.data.get(key)
        if value is None or value == "":
            return None
        if isinstance(value, bool) or not isinstance(value, str | int):
            self._fail(f"field {key!r} should be a string, got {_kind(value)}")
        return storable_text(str(value))

    def token(self, key: str) -> str:
        """A credential: up to `MAX_CREDENTIAL` visible ASCII characters, as it must go back out."""
        value = self.data.get(key)
        if not isinstance(value, str) or value == "":
            self._fail(f"field {key!r} should be a non-empty string, got {_kind(value)}")
        # The messages never quote the value: it is a credential, however broken.
        if len(value) > MAX_CREDENTIAL:
            self._fail(
                f"field {key!r} should be at most {MAX_CREDENTIAL} characters, got {len(value)}"
            )
        if _CREDENTIAL.fullmatch(value) is None:
            self._fail(
                f"field {key!r} should hold visible ASCII characters only (no spaces, control "
                "or non-ASCII characters)"
            )
        return value

    def opt_token(self, key: str) -> str | None:
        """A credential as `token` checks it, or None when missing or empty."""
        if self.data.get(key) is None or self.data.get(key) == "":
            return None
        return self.token(key)

    def id(self, key: str) -> str:
        """An identifier sent as a string or a number, returned as a string."""
        value = self.data.get(key)
        if isinstance(value, bool) or not isinstance(value, str | int) or value == "":
            self._fail(f"field {key!r} should be an id (string or integer), got {_kind(value)}")
        text = str(value)
        if len(text) > MAX_ID or _CONTROL.search(text):
            self._fail(
                f"field {key!r} should be an id of at most {MAX_ID} printable characters, got "
                f"{len(text)} characters"
            )
        return text

    def number(self, key: str) -> float:
        """A finite number, sent as a number or a numeric string."""
        value = self.data.get(key)
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            self._fail(f"field {key!r} should be a number, got {_kind(value)}")
        try:
            number = float(value)
        except ValueError:
            self._fail(f"field {key!r} should be a number, got a non-numeric string")
        except OverflowError:  # an integer too large for a float
            number = math.inf
        if not math.isfinite(number):
            self._fail(f"field {key!r} should be a finite number, got one out of range")
        return number

    def opt_number(self, key: str) -> float | None:
        """A number as `number` checks it, or None when missing."""
        if self.data.get(key) is None:
            return None
        return self.number(key)

    def moment(self, key: str, now: datetime, *, millis: bool = False) -> datetime:
        """A time sent as a Unix timestamp in seconds (milliseconds with `millis`).

        It must lie between 1970 and `MAX_LIFETIME` after `now`: no credential's expiry or issue
        time lies anywhere else.
        """
        value = self.number(key)
        try:
            moment = from_epoch_millis(value) if millis else from_epoch_seconds(value)
            return within_lifetime(moment, now)
        except ValueError:
            unit = "milliseconds" if millis else "seconds"
            self._fail(
                f"field {key!r} should be a Unix time in {unit} between 1970 and "
                f"{MAX_LIFETIME_YEARS} years from now"
            )

    def opt_moment(self, key: str, now: datetime, *, millis: bool = False) -> datetime | None:
        """A time as `moment` checks it, or None when missing."""
        if self.data.get(key) is None:
            return None
        return self.moment(key, now, millis=millis)

    def lifetime(self, key: str) -> timedelta:
        """A lifetime in seconds, between 0 and `MAX_LIFETIME`."""
        value = self.number(key)
        try:
            return lifetime(value)
        except ValueError:
            self._fail(
                f"field {key!r} should be a lifetime between 0 seconds and "
                f"{MAX_LIFETIME_YEARS} years"
            )

    def opt_lifetime(self, key: str) -> timedelta | None:
        """A lifetime as `lifetime` checks it, or None when missing."""
        if self.data.get(key) is None:
            return None
        return self.lifetime(key)

    def object(self, key: str) -> Fields:
        """A nested object."""
        value = self.data.get(key)
        if not isinstance(value, dict):
            self._fail(f"field {key!r} should be an object, got {_kind(value)}")
        return Fields(value, provider=self.provider, endpoint=self.endpoint)

    def objects(self, key: str) -> list[Fields]:
        """A list of objects."""
        value = self.data.get(key)
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            self._fail(f"field {key!r} should be a list of objects, got {_kind(value)}")
        return [Fields(v, provider=self.provider, endpoint=self.endpoint) for v in value]

    def texts(self, key: str) -> list[str]:
        """A list of strings; empty when missing."""
        value = self.data.get(key)
        if value is None:
            return []
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            self._fail(f"field {key!r} should be a list of strings, got {_kind(value)}")
        return [storable_text(v) for v in value]

    def without_tokens(self) -> dict[str, Any]:
        """The object minus every credential field, fit to store in `Grant.raw`.

        Fit also means storable as JSON everywhere (PostgreSQL refuses NaN and lone surrogates,
        JSON responses refuse non-finite numbers): see `storable`.
        """
        return {
            storable_text(str(k)): storable(v)
            for k, v in self.data.items()
            if k not in TOKEN_FIELDS
        }


def storable_text(text: str) -> str:
    """`text` with what no database can hold (NUL, lone surrogates) replaced by U+FFFD."""
    return _UNSTORABLE.sub("\ufffd", text)


def storable(value: Any, depth: int = RAW_DEPTH) -> Any:
    """A parsed JSON value made storable in a JSON column and a JSON response.

    Text as `storable_text`, non-finite numbers as None, and nothing nested more than `depth`
    levels deep (deeper values become None: no platform nests its token answer that far).
    """
    if isinstance(value, str):
        return storable_text(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict | list):
        if depth <= 0:
            return None
        if isinstance(value, list):
            return [storable(v, depth - 1) for v in value]
        return {storable_text(str(k)): storable(v, depth - 1) for k, v in value.items()}
    return value


def _kind(value: object) -> str:
    if value is None:
        return "nothing"
    return type(value).__name__


def parse_json(response: httpx2.Response) -> Any:
    """The body parsed as JSON; `ValueError` for any body that is not usable JSON.

    Beyond invalid syntax and undecodable text, that is an integer with more digits than Python
    converts (a `ValueError` that is no `JSONDecodeError`) and nesting deeper than the parser's
    recursion goes.
    """
    try:
        return response.json()
    except RecursionError:
        raise ValueError("the JSON body is nested too deeply") from None


def media_type(response: httpx2.Response) -> str:
    """The response's media type, without parameters, for messages ("no content type")."""
    value = response.headers.get("content-type", "").split(";")[0].strip()
    return value[:100] if value else "no content type"


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
    return [storable_text(s) for s in value.replace(",", " ").split() if s]
