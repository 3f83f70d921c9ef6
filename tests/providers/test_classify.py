"""`Provider.classify(response)`: a platform's answer to a signed API call, as an error class.

The proxy sends what `sign_request` prepared and asks `classify` what the answer means: None when
the call succeeded, else the classified error (re-authorize, refresh first, wait, retry, or our
request). The vectors are the platforms' documented answers (docs/platforms.md, "Classifying API
answers"), run through each provider alike; the last tests send real signed requests to the
sandbox's simulators and classify what they answer.
"""

from __future__ import annotations

import inspect
import json
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urlsplit

import httpx2
import pytest

from shopkeys.errors import (
    AccessExpired,
    AuthorizationDead,
    ProtocolError,
    ProviderError,
    RateLimited,
    RequestRejected,
    TemporaryFailure,
)
from shopkeys.grant import Grant
from shopkeys.providers import Provider
from shopkeys.providers.aliexpress import AliExpress
from shopkeys.providers.ecwid import Ecwid
from shopkeys.providers.shopline import Shopline
from shopkeys.providers.tiktok_shop import TikTokShop
from shopkeys.sandbox.browser import callback_params, press
from shopkeys.sandbox.core import Fault
from tests.conftest import LiveSandbox
from tests.providers.platforms import ACCESS, BY_NAME, PLATFORMS, SECRET, Platform

HTML = "<html><body><h1>502 Bad Gateway</h1></body></html>"
#: How the gateway states an `ApiCallLimit` ban.
BAN = "This ban will last 3 more seconds"


@dataclass(frozen=True)
class Answer:
    """One answer a platform sends to an API call, and what `classify` must make of it."""

    name: str
    status: int
    #: A JSON body, or text as it stands (`str`), or nothing.
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    #: The class expected, or None for a successful call.
    kind: type[ProviderError] | None = None
    code: str | None = None
    retry_after: float | None = None

    def response(self) -> httpx2.Response:
        if isinstance(self.body, str):
            headers = {"content-type": "text/html", **self.headers}
            return httpx2.Response(self.status, text=self.body, headers=headers)
        if self.body is None:
            return httpx2.Response(self.status, headers=self.headers)
        return httpx2.Response(self.status, json=self.body, headers=self.headers)


def _ae_sync(code: str, msg: str, kind: str = "ISV") -> dict[str, Any]:
    """An error of a business API on `/sync`: wrapped, its message called `msg`."""
    return {"error_response": {"type": kind, "code": code, "msg": msg, "request_id": "0ba2887"}}


def _ae_rest(code: str, message: str, kind: str = "ISV") -> dict[str, Any]:
    """An error of a system API on `/rest`: flat."""
    return {"type": kind, "code": code, "message": message, "request_id": "0ba2887"}


def _tts(code: int, message: str, data: Any = None) -> dict[str, Any]:
    body = {"code": code, "message": message, "request_id": "202407231200001"}
    return body if data is None else {**body, "data": data}


ANSWERS: dict[str, list[Answer]] = {
    "aliexpress": [
        Answer(
            "sync-success",
            200,
            {
                "aliexpress_merchant_profile_get_response": {
                    "profile": {"shop_id": 910000001, "shop_name": "Demo"},
                    "request_id": "0ba2887",
                }
            },
        ),
        Answer("rest-success", 200, {"code": "0", "request_id": "0ba2887"}),
        Answer(
            "sync-illegal-access-token",
            200,
            _ae_sync("IllegalAccessToken", "The specified access token is invalid or expired"),
            kind=AccessExpired,
            code="IllegalAccessToken",
        ),
        Answer(
            "rest-illegal-access-token",
            200,
            _ae_rest("IllegalAccessToken", "The specified access token is invalid or expired"),
            kind=AccessExpired,
            code="IllegalAccessToken",
        ),
        Answer(
            "api-call-limit",
            200,
            _ae_sync("ApiCallLimit", "The request has exceeded the limit."),
            kind=RateLimited,
            code="ApiCallLimit",
        ),
        Answer(
            "api-call-limit-with-ban",
            200,
            _ae_sync("ApiCallLimit", "The request has exceeded the limit. " + BAN),
            kind=RateLimited,
            code="ApiCallLimit",
            retry_after=3.0,
        ),
        Answer("http-429", 429, {}, {"Retry-After": "5"}, RateLimited, retry_after=5.0),
        Answer(
            "incomplete-signature",
            200,
            _ae_sync("IncompleteSignature", "The request signature does not conform"),
            kind=RequestRejected,
            code="IncompleteSignature",
        ),
        Answer(
            "missing-parameter",
            200,
            _ae_rest("MissingParameter", "Missing parameter: method"),
            kind=RequestRejected,
            code="MissingParameter",
        ),
        Answer(
            "invalid-app-key",
            200,
            _ae_sync("InvalidAppKey", "Invalid app key"),
            kind=RequestRejected,
            code="InvalidAppKey",
        ),
        Answer(
            "unknown-isp-code",
            200,
            _ae_sync("ServiceUnavailable", "The service is temporarily unavailable", "ISP"),
            kind=TemporaryFailure,
            code="ServiceUnavailable",
        ),
        Answer(
            "unknown-system-code",
            200,
            _ae_rest("InternalError", "The gateway failed", "SYSTEM"),
            kind=TemporaryFailure,
            code="InternalError",
        ),
        Answer(
            "unknown-isv-code",
            200,
            _ae_sync("InvalidApiPath", "The specified API path is invalid"),
            kind=RequestRejected,
            code="InvalidApiPath",
        ),
        Answer("http-500-page", 500, HTML, kind=TemporaryFailure),
        Answer("http-503-empty", 503, kind=TemporaryFailure),
        Answer("http-200-page", 200, HTML, kind=ProtocolError),
        Answer("http-200-list", 200, [{"code": "0"}], kind=ProtocolError),
        Answer("garbled-error-response", 200, {"error_response": "oops"}, kind=ProtocolError),
        Answer("http-400-page", 400, HTML, kind=RequestRejected),
        Answer(
            "http-405-error-body",
            405,
            _ae_rest("HttpMethodNotAllowed", "This API only accepts POST requests"),
            kind=RequestRejected,
            code="HttpMethodNotAllowed",
        ),
    ],
    "tiktok_shop": [
        Answer(
            "success",
            200,
            _tts(0, "Success", {"shops": [{"id": "7000714532876273420", "cipher": "GCP_1"}]}),
        ),
        Answer("success-without-data", 200, _tts(0, "Success")),
        Answer(
            "access-token-expired",
            200,
            _tts(105002, "Expired credentials. The access token is expired, please refresh it."),
            kind=AccessExpired,
            code="105002",
        ),
        Answer(
            "access-token-invalid",
            200,
            _tts(105001, "Invalid credentials. The access token is invalid."),
            kind=AuthorizationDead,
            code="105001",
        ),
        Answer(
            "bad-signature-401",
            401,
            _tts(106001, "Invalid credentials. The 'sign' query parameter is invalid."),
            kind=RequestRejected,
            code="106001",
        ),
        Answer(
            "bad-app-key-or-timestamp",
            200,
            _tts(36009004, "Invalid request. The app key or timestamp is invalid."),
            kind=RequestRejected,
            code="36009004",
        ),
        Answer(
            "no-api-permission",
            200,
            _tts(105005, "Access denied. The app has no permission for this API."),
            kind=RequestRejected,
            code="105005",
        ),
        Answer(
            "rate-limit-code",
            200,
            _tts(36009002, "Too many requests. Please retry later."),
            kind=RateLimited,
            code="36009002",
        ),
        Answer(
            "rate-limit-code-with-retry-after",
            200,
            _tts(36009002, "Too many requests."),
            {"Retry-After": "3"},
            RateLimited,
            "36009002",
            3.0,
        ),
        Answer(
            "http-429",
            429,
            _tts(36009002, "Too many requests."),
            {"Retry-After": "2"},
            RateLimited,
            retry_after=2.0,
        ),
        Answer(
            "internal-error-code",
            200,
            _tts(36009003, "Internal error. Please retry later."),
            kind=TemporaryFailure,
            code="36009003",
        ),
        Answer(
            "unknown-code-system-busy",
            200,
            _tts(98001001, "System busy, please try again"),
            kind=TemporaryFailure,
            code="98001001",
        ),
        Answer(
            "unknown-code",
            200,
            _tts(12052048, "You can't edit other sellers' products."),
            kind=RequestRejected,
            code="12052048",
        ),
        Answer("http-502-page", 502, HTML, kind=TemporaryFailure),
        Answer("http-200-page", 200, HTML, kind=ProtocolError),
        Answer("no-code", 200, {"message": "Success", "data": {}}, kind=ProtocolError),
        Answer("code-as-text", 200, {"code": "0", "data": {}}, kind=ProtocolError),
        Answer("http-401-page", 401, HTML, kind=RequestRejected),
        Answer("http-400-with-code-0", 400, _tts(0, "Success", {}), kind=RequestRejected),
    ],
    "shopline": [
        # A success body may hold `code` and `error` fields of its own: the status decides.
        Answer("success-with-a-code-field", 200, {"_id": "p1", "code": "SUMMER", "error": None}),
        Answer(
            "token-info-success",
            200,
            {"merchant": {"_id": "5c403b6ce84a590001284cb5", "handle": "turnturn"}},
        ),
        Answer("empty-success", 204),
        Answer(
            "token-expired",
            401,
            {"error": "TOKEN_EXPIRED", "error_description": "Token is expired"},
            kind=AccessExpired,
            code="TOKEN_EXPIRED",
        ),
        Answer(
            "token-expired-under-code",
            401,
            {"code": "TOKEN_EXPIRED", "message": "Token is expired"},
            kind=AccessExpired,
            code="TOKEN_EXPIRED",
        ),
        Answer(
            "token-revoked",
            401,
            {"code": "TOKEN_REVOKED", "message": "Token is revoked"},
            kind=AuthorizationDead,
            code="TOKEN_REVOKED",
        ),
        Answer(
            "invalid-token",
            401,
            {"error": "invalid_token", "error_description": "The access token is invalid"},
            kind=AuthorizationDead,
            code="invalid_token",
        ),
        Answer(
            "missing-token",
            401,
            {"code": "MISSING_TOKEN_ERROR", "message": "Token is required in the header"},
            kind=RequestRejected,
            code="MISSING_TOKEN_ERROR",
        ),
        Answer(
            "missing-user-agent",
            400,
            {"code": "MISSING_USER_AGENT", "message": "User-Agent header is required"},
            kind=RequestRejected,
            code="MISSING_USER_AGENT",
        ),
        Answer(
            "bare-401",
            401,
            headers={"WWW-Authenticate": 'Bearer realm="Doorkeeper", error="invalid_token"'},
            kind=AccessExpired,
        ),
        Answer("uncoded-401", 401, {"message": "Unauthorized"}, kind=AccessExpired),
        Answer("uncoded-403", 403, {"message": "Forbidden"}, kind=RequestRejected),
        Answer("http-404-page", 404, HTML, kind=RequestRejected),
        Answer("http-408", 408, kind=TemporaryFailure),
        # The Open API bans an IP for 5 minutes after 1000 requests in 5 minutes.
        Answer("http-429", 429, {}, {"Retry-After": "300"}, RateLimited, retry_after=300.0),
        Answer("http-500-page", 500, HTML, kind=TemporaryFailure),
        Answer(
            "server-error-code",
            503,
            {"error": "temporarily_unavailable"},
            kind=TemporaryFailure,
        ),
        Answer("http-200-page", 200, HTML, kind=ProtocolError),
    ],
    "ecwid": [
        Answer("success", 200, {"generalInfo": {"storeId": 1003}}),
        # Some REST calls answer files (product files, invoices): a 2xx is success, whatever
        # its body.
        Answer("file-download", 200, HTML),
        Answer(
            "invalid-api-token",
            403,
            {"errorMessage": "Invalid access token.", "errorCode": "INVALID_API_TOKEN"},
            kind=AuthorizationDead,
            code="INVALID_API_TOKEN",
        ),
        Answer("bare-403", 403, kind=AuthorizationDead),
        Answer("bare-401", 401, kind=AuthorizationDead),
        Answer(
            "store-not-found",
            404,
            {"errorMessage": "Store not found.", "errorCode": "STORE_NOT_FOUND"},
            kind=AuthorizationDead,
            code="STORE_NOT_FOUND",
        ),
        Answer(
            "insufficient-scope",
            403,
            {"errorMessage": "Scope missing.", "errorCode": "INSUFFICIENT_APP_SCOPE"},
            kind=RequestRejected,
            code="INSUFFICIENT_APP_SCOPE",
        ),
        Answer(
            "plan",
            402,
            {"errorMessage": "Upgrade.", "errorCode": "NOT_AVAILABLE_ON_CURRENT_PLAN"},
            kind=RequestRejected,
            code="NOT_AVAILABLE_ON_CURRENT_PLAN",
        ),
        Answer(
            "rate-limited",
            429,
            {"errorMessage": "Too many requests.", "errorCode": "RATE_LIMITED"},
            {"Retry-After": "60"},
            RateLimited,
            "RATE_LIMITED",
            60.0,
        ),
        Answer("bare-429", 429, headers={"Retry-After": "9"}, kind=RateLimited, retry_after=9.0),
        Answer(
            "internal-error",
            500,
            {"errorMessage": "Internal error.", "errorCode": "INTERNAL_ERROR"},
            kind=TemporaryFailure,
            code="INTERNAL_ERROR",
        ),
        Answer("http-503-page", 503, HTML, kind=TemporaryFailure),
        Answer("bad-parameter", 400, {"errorMessage": "Wrong limit."}, kind=RequestRejected),
        Answer("http-404-page", 404, HTML, kind=RequestRejected),
    ],
}


def answer_cases() -> list[Any]:
    return [
        pytest.param(BY_NAME[name], case, id=f"{name}-{case.name}")
        for name, cases in ANSWERS.items()
        for case in cases
    ]


@pytest.mark.parametrize(("platform", "case"), answer_cases())
def test_documented_answers_are_classified(platform: Platform, case: Answer) -> None:
    error = platform.provider().classify(case.response(), secrets=(ACCESS,))
    if case.kind is None:
        assert error is None
        return
    assert type(error) is case.kind, error
    # A garbled answer names what it was instead, not a status (as every `ProtocolError`).
    status = None if case.kind is ProtocolError else case.status
    assert (error.provider, error.endpoint, error.status) == (platform.name, "api", status)
    assert error.code == case.code
    if isinstance(error, RateLimited):
        assert error.retry_after == case.retry_after
    assert str(error).startswith(f"{platform.name} api: ")


def test_every_platform_has_every_kind_of_answer() -> None:
    """Success, wait, retry and our request on every platform; a garbled answer wherever a
    successful status does not make a success (Ecwid's 2xx always does)."""
    for name, cases in ANSWERS.items():
        kinds = {case.kind for case in cases}
        assert {None, RateLimited, TemporaryFailure, RequestRejected} <= kinds, name
        assert AccessExpired in kinds or AuthorizationDead in kinds, name
        assert (ProtocolError in kinds) is (name != "ecwid"), name
        assert any(c.kind is RateLimited and c.status == 429 for c in cases), name


@pytest.mark.parametrize("platform", PLATFORMS, ids=str)
def test_the_endpoint_named_is_the_errors(platform: Platform) -> None:
    error = platform.provider().classify(httpx2.Response(503), "orders")
    assert isinstance(error, TemporaryFailure)
    assert error.endpoint == "orders"


@pytest.mark.parametrize("cls", [AliExpress, TikTokShop, Shopline, Ecwid], ids=lambda c: c.name)
def test_one_signature_everywhere(cls: type[Provider]) -> None:
    assert inspect.signature(cls.classify) == inspect.signature(Provider.classify)


# -- what the answer echoes --------------------------------------------------------------------


def echo() -> str:
    """A request repeated back: the access token and the client secret, keyed and bare."""
    return (
        f"access_token={ACCESS}&session={ACCESS}&app_secret={SECRET} | "
        f"Authorization: Bearer {ACCESS} | x-tts-access-token: {ACCESS} | "
        f"{json.dumps({'access_token': ACCESS, 'client_secret': SECRET})} | "
        f"you sent {ACCESS} signed with {SECRET}"
    )


ECHOES: dict[str, list[tuple[int, Any]]] = {
    "aliexpress": [
        (200, _ae_sync("IllegalAccessToken", echo())),
        (200, _ae_rest("ApiCallLimit", echo())),
        (200, _ae_sync(ACCESS, "the token echoed in the code")),
        (400, _ae_rest("MissingParameter", echo())),
    ],
    "tiktok_shop": [
        (200, _tts(105002, echo())),
        (200, _tts(36009002, echo())),
        (200, _tts(12345678, echo())),
        (401, _tts(106001, echo())),
    ],
    "shopline": [
        (401, {"code": "TOKEN_EXPIRED", "message": echo()}),
        (401, {"error": "invalid_token", "error_description": echo()}),
        (401, {"error": echo()}),
        (403, {"message": echo()}),
    ],
    "ecwid": [
        (403, {"errorMessage": echo(), "errorCode": "INVALID_API_TOKEN"}),
        (400, {"errorMessage": echo(), "errorCode": ACCESS}),
        (429, {"errorMessage": echo(), "errorCode": "RATE_LIMITED"}),
    ],
}


def echo_cases() -> list[Any]:
    return [
        pytest.param(BY_NAME[name], status, body, id=f"{name}-{index}")
        for name, answers in ECHOES.items()
        for index, (status, body) in enumerate(answers)
    ]


@pytest.mark.parametrize(("platform", "status", "body"), echo_cases())
def test_an_echoed_access_token_or_client_secret_is_never_repeated(
    platform: Platform, status: int, body: Any
) -> None:
    error = platform.provider().classify(httpx2.Response(status, json=body), secrets=(ACCESS,))
    assert error is not None
    for shown in (str(error), repr(error), error.detail, error.code or ""):
        assert ACCESS not in shown
        assert SECRET not in shown


# -- answers that are no answer -----------------------------------------------------------------

UNREADABLE = {
    "integer-too-long": b'{"code": ' + b"1" * 5000 + b"}",
    "nested-too-deeply": b"[" * 100_000 + b"]" * 100_000,
    "not-text": b"\xff\xfe not text",
}


@pytest.mark.parametrize("body", UNREADABLE.values(), ids=UNREADABLE.keys())
@pytest.mark.parametrize("platform", PLATFORMS, ids=str)
def test_json_python_cannot_read_is_classified_not_raised(platform: Platform, body: bytes) -> None:
    provider = platform.provider()
    for status in (200, 400, 401):
        headers = {"content-type": "application/json"}
        error = provider.classify(httpx2.Response(status, content=body, headers=headers))
        if status == 200 and platform.name == "ecwid":
            assert error is None  # Ecwid: a 2xx is success, whatever its body
        elif status == 200:
            assert isinstance(error, ProtocolError)
        else:
            assert isinstance(error, ProviderError)


# -- the default: the HTTP status alone ---------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "refreshable", "kind"),
    [
        (200, True, None),
        (201, True, None),
        (204, True, None),
        (401, True, AccessExpired),
        (401, False, AuthorizationDead),
        (403, True, RequestRejected),
        (404, True, RequestRejected),
        (408, True, TemporaryFailure),
        (429, True, RateLimited),
        (500, True, TemporaryFailure),
        (503, True, TemporaryFailure),
    ],
)
def test_the_default_reads_the_status(
    status: int, refreshable: bool, kind: type[ProviderError] | None
) -> None:
    """What a platform without its own `classify` gets: RFC 6750's reading of a Bearer API."""
    provider = BY_NAME["tiktok_shop" if refreshable else "ecwid"].provider()
    headers = {"Retry-After": "4"} if status == 429 else {}
    response = httpx2.Response(status, text=f"answer {ACCESS}", headers=headers)
    error = Provider.classify(provider, response, secrets=(ACCESS,))
    if kind is None:
        assert error is None
        return
    assert type(error) is kind
    assert error.status == status and ACCESS not in str(error)
    if isinstance(error, RateLimited):
        assert error.retry_after == 4.0


# -- the simulators' answers, over a real socket -------------------------------------------------

#: Each simulator's signed API call: its fault-injection endpoint and the request to send.
SIMULATED_CALLS = {
    "aliexpress": "profile",
    "tiktok_shop": "shops",
    "shopline": "api",
    "ecwid": "profile",
}


def api_request(provider: Provider, grant: Grant) -> httpx2.Request:
    """The simulator's API call for `grant`, before signing."""
    if isinstance(provider, AliExpress):
        base = provider.url("api", "/sync")
        return httpx2.Request("GET", base, params={"method": "aliexpress.merchant.profile.get"})
    if isinstance(provider, TikTokShop):
        return httpx2.Request("GET", provider.url("api", "/authorization/202309/shops"))
    if isinstance(provider, Shopline):
        return httpx2.Request("GET", provider.api_url("/token/info"))
    assert isinstance(provider, Ecwid)
    return httpx2.Request("GET", provider.api_url(grant.account_id, "/profile"))


async def connect(live: LiveSandbox, name: str, http: httpx2.AsyncClient) -> Grant:
    """A grant from the simulator, through its authorization page and code exchange."""
    provider = live.provider(name)
    redirect_uri = live.redirect_uri(name)
    location = await press(http, provider.authorization_url("classify", redirect_uri))
    params = callback_params(location)
    assert urlsplit(location).path == urlsplit(redirect_uri).path, location
    code = params.pop("code")
    params.pop("state", None)
    return await provider.exchange_code(http, code, redirect_uri, **params)


async def call(
    live: LiveSandbox, name: str, http: httpx2.AsyncClient, grant: Grant, token: str | None = None
) -> ProviderError | None:
    provider = live.provider(name)
    request = provider.sign_request(api_request(provider, grant), token or grant.access_token)
    response = await http.send(request)
    return provider.classify(response, secrets=(token or grant.access_token,))


@pytest.mark.parametrize("name", list(SIMULATED_CALLS))
async def test_simulated_api_answers(
    live_sandbox: LiveSandbox, http: httpx2.AsyncClient, name: str
) -> None:
    grant = await connect(live_sandbox, name, http)
    assert await call(live_sandbox, name, http, grant) is None

    # A token the platform never issued.
    unknown = await call(live_sandbox, name, http, grant, token="never-issued-" + "x" * 20)
    expected = {
        "aliexpress": AccessExpired,  # IllegalAccessToken: refresh first, the refresh decides
        "tiktok_shop": AuthorizationDead,  # 105001
        "shopline": AuthorizationDead,  # invalid_token
        "ecwid": AuthorizationDead,  # INVALID_API_TOKEN
    }
    assert type(unknown) is expected[name], unknown
    assert unknown is not None and "never-issued" not in str(unknown)

    # The simulator's faults: a 429 with a wait, a 5xx page, a 200 page.
    simulator = live_sandbox.simulator(name)
    endpoint = SIMULATED_CALLS[name]
    simulator.faults.set(endpoint, Fault(status=429, retry_after=7, times=1))
    limited = await call(live_sandbox, name, http, grant)
    assert isinstance(limited, RateLimited) and limited.retry_after == 7
    simulator.faults.set(endpoint, Fault(status=503, times=1))
    assert type(await call(live_sandbox, name, http, grant)) is TemporaryFailure
    simulator.faults.set(endpoint, Fault(malformed=True, times=1))
    garbled = await call(live_sandbox, name, http, grant)
    if name == "ecwid":
        assert garbled is None  # a 2xx is success on Ecwid's REST API, whatever its body
    else:
        assert type(garbled) is ProtocolError


@pytest.mark.parametrize(
    ("name", "code", "kind"),
    [
        ("aliexpress", "IllegalAccessToken", AccessExpired),
        ("aliexpress", "ApiCallLimit", RateLimited),
        ("aliexpress", "IncompleteSignature", RequestRejected),
        ("aliexpress", "ServiceUnavailable", TemporaryFailure),
        ("tiktok_shop", "105001", AuthorizationDead),
        ("tiktok_shop", "105002", AccessExpired),
        ("tiktok_shop", "106001", RequestRejected),
        ("tiktok_shop", "36009002", RateLimited),
        ("tiktok_shop", "36009003", TemporaryFailure),
        ("shopline", "TOKEN_EXPIRED", AccessExpired),
        ("shopline", "TOKEN_REVOKED", AuthorizationDead),
        ("shopline", "invalid_token", AuthorizationDead),
        ("shopline", "MISSING_TOKEN_ERROR", RequestRejected),
        ("ecwid", "INVALID_API_TOKEN", AuthorizationDead),
        ("ecwid", "RATE_LIMITED", RateLimited),
        ("ecwid", "INSUFFICIENT_APP_SCOPE", RequestRejected),
    ],
)
async def test_simulated_platform_errors(
    live_sandbox: LiveSandbox,
    http: httpx2.AsyncClient,
    name: str,
    code: str,
    kind: type[ProviderError],
) -> None:
    grant = await connect(live_sandbox, name, http)
    live_sandbox.simulator(name).faults.set(
        SIMULATED_CALLS[name], Fault(platform_error=code, times=1)
    )
    error = await call(live_sandbox, name, http, grant)
    assert type(error) is kind, error
    assert error.code == code
    if name == "aliexpress" and kind is RateLimited:
        assert isinstance(error, RateLimited) and error.retry_after is not None


async def test_simulated_bad_signature_and_expired_tokens(
    live_sandbox: LiveSandbox, http: httpx2.AsyncClient
) -> None:
    """What the simulators answer on their own, without faults."""
    # AliExpress and TikTok Shop refuse a signature made with another secret.
    for name in ("aliexpress", "tiktok_shop"):
        grant = await connect(live_sandbox, name, http)
        good = live_sandbox.provider(name)
        wrong = type(good)(
            replace(good.credentials, client_secret="not-the-app-secret-0001"),
            base_url=live_sandbox.base_url(name),
            clock=live_sandbox.simulator(name).clock,
        )
        response = await http.send(
            wrong.sign_request(api_request(wrong, grant), grant.access_token)
        )
        error = good.classify(response, secrets=(grant.access_token,))
        assert type(error) is RequestRejected, error
        assert error.code == ("IncompleteSignature" if name == "aliexpress" else "106001")

    # An access token past its life: refresh first.
    for name in ("aliexpress", "tiktok_shop", "shopline"):
        grant = await connect(live_sandbox, name, http)
        simulator = live_sandbox.simulator(name)
        assert grant.access_expires_at is not None
        simulator.clock.advance((grant.access_expires_at - simulator.clock()).total_seconds() + 1)
        try:
            error = await call(live_sandbox, name, http, grant)
        finally:
            simulator.clock.reset()
        assert type(error) is AccessExpired, (name, error)

    # SHOPLINE's Open API refuses a call without a User-Agent.
    grant = await connect(live_sandbox, "shopline", http)
    shopline = live_sandbox.provider("shopline")
    request = shopline.sign_request(api_request(shopline, grant), grant.access_token)
    request.headers["User-Agent"] = ""
    error = shopline.classify(await http.send(request), secrets=(grant.access_token,))
    assert type(error) is RequestRejected and error.code == "MISSING_USER_AGENT"
