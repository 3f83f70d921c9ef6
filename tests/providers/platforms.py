"""The four platforms' success answers and calls, shaped alike for tests that cover them all.

Each `Platform` knows where its token fields and its identity fields sit in the answers it sends,
so a test can break one field (or the whole body) and run the same call on every platform.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx2

from shopkeys.grant import Account, Grant
from shopkeys.providers import AppCredentials, Provider, get

SECRET = "unit-test-client-secret-0001"
CODE = "unit-test-authorization-code-0001"
ACCESS = "unit-test-access-token-0001"
REFRESH = "unit-test-refresh-token-0001"
#: Everything a call can send that must never come back in an error.
SENT = (SECRET, CODE, ACCESS, REFRESH)
NOW = datetime(2030, 1, 1, tzinfo=UTC)
REDIRECT = "https://app.example/oauth/callback"
STORE_ID = 1003

#: A stand-in value that `Answer.text` replaces with raw JSON text (which `json.dumps` cannot
#: write: `NaN`, `1e400`, a 400-digit integer).
RAW = "__raw_json__"

Path = Sequence[str | int]


def at_millis(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def at_seconds(moment: datetime) -> int:
    return int(moment.timestamp())


@dataclass(frozen=True)
class Platform:
    """How one platform answers its token and identity calls."""

    name: str
    #: The token answer's fields, and the body that carries them.
    token_fields: Callable[[], dict[str, Any]]
    token_body: Callable[[dict[str, Any]], dict[str, Any]]
    #: The identity call's body, or None where identify makes no call (AliExpress).
    identity_body: Callable[[], dict[str, Any]] | None
    #: Where the identity's account id sits: in the identity body, or (AliExpress) in the token
    #: fields.
    account_id_path: Path
    #: Fields that hold times and lifetimes, by where they sit in the token fields.
    time_fields: tuple[str, ...]
    #: Fields that hold credentials.
    credential_fields: tuple[str, ...]
    refreshable: bool = True

    def __str__(self) -> str:
        return self.name

    def provider(self) -> Provider:
        credentials = AppCredentials("unit-test-client-id", SECRET, service_id="svc-1")
        return get(self.name)(credentials, clock=lambda: NOW)

    def grant(self) -> Grant:
        """A grant as this platform's code exchange gives it, to identify."""
        return Grant(
            provider=self.name,
            access_token=ACCESS,
            refresh_token=REFRESH if self.refreshable else None,
            access_expires_at=None,
            refresh_expires_at=None,
            scopes=[],
            account_id=str(STORE_ID) if self.name == "ecwid" else "account-1",
            raw={},
        )


def _aliexpress_fields() -> dict[str, Any]:
    return {
        "access_token": ACCESS,
        "refresh_token": REFRESH,
        "expires_in": 86400,
        "refresh_expires_in": 172800,
        "expire_time": at_millis(NOW + timedelta(days=1)),
        "refresh_token_valid_time": at_millis(NOW + timedelta(days=2)),
        "user_id": "2000000001",
        "seller_id": "2000000002",
        "user_nick": "cn1234567",
        "sp": "ae",
        "code": "0",
        "request_id": "2101abcd",
    }


def _tiktok_fields() -> dict[str, Any]:
    return {
        "access_token": ACCESS,
        "access_token_expire_in": at_seconds(NOW + timedelta(days=7)),
        "refresh_token": REFRESH,
        "refresh_token_expire_in": at_seconds(NOW + timedelta(days=60)),
        "open_id": "account-1",
        "seller_name": "Demo Store",
        "granted_scopes": ["seller.shop.info"],
    }


def _shopline_fields() -> dict[str, Any]:
    return {
        "access_token": ACCESS,
        "token_type": "Bearer",
        "expires_in": 15778476,
        "refresh_token": REFRESH,
        "scope": "products orders",
        "created_at": at_seconds(NOW),
        "resource_owner_id": "account-1",
    }


def _ecwid_fields() -> dict[str, Any]:
    return {
        "access_token": ACCESS,
        "token_type": "bearer",
        "scope": "read_store_profile public_storefront",
        "store_id": STORE_ID,
        "public_token": "unit-test-public-token-0001",
    }


def _envelope(data: dict[str, Any]) -> dict[str, Any]:
    return {"code": 0, "message": "success", "request_id": "2024072312", "data": data}


PLATFORMS = (
    Platform(
        name="aliexpress",
        token_fields=_aliexpress_fields,
        token_body=lambda fields: fields,
        identity_body=None,
        account_id_path=("seller_id",),
        time_fields=(
            "expire_time",
            "expires_in",
            "refresh_token_valid_time",
            "refresh_expires_in",
        ),
        credential_fields=("access_token", "refresh_token"),
    ),
    Platform(
        name="tiktok_shop",
        token_fields=_tiktok_fields,
        token_body=_envelope,
        identity_body=lambda: _envelope(
            {
                "shops": [
                    {
                        "id": "7000714532876273420",
                        "name": "Demo Shop",
                        "region": "GB",
                        "code": "GBLCSLWLVS",
                        "cipher": "GCP_XF90igAAAABh00qsWgtvOiGFNqyubMt3",
                        "seller_type": "LOCAL",
                    }
                ]
            }
        ),
        account_id_path=("data", "shops", 0, "id"),
        time_fields=("access_token_expire_in", "refresh_token_expire_in"),
        credential_fields=("access_token", "refresh_token"),
    ),
    Platform(
        name="shopline",
        token_fields=_shopline_fields,
        token_body=lambda fields: fields,
        identity_body=lambda: {
            "resource_owner_id": "account-1",
            "scope": ["products"],
            "expires_in": 15551707,
            "created_at": at_seconds(NOW),
            "merchant": {"_id": "account-1", "handle": "demo", "name": "Demo"},
        },
        account_id_path=("merchant", "_id"),
        time_fields=("expires_in", "created_at"),
        credential_fields=("access_token", "refresh_token"),
    ),
    Platform(
        name="ecwid",
        token_fields=_ecwid_fields,
        token_body=lambda fields: fields,
        identity_body=lambda: {
            "generalInfo": {"storeId": STORE_ID, "storeUrl": "https://store1003.company.site"},
            "account": {"accountName": "Jane Owner"},
            "settings": {"storeName": "Demo"},
        },
        account_id_path=("generalInfo", "storeId"),
        time_fields=(),
        credential_fields=("access_token", "public_token"),
        refreshable=False,
    ),
)

BY_NAME = {platform.name: platform for platform in PLATFORMS}


def put(body: Any, path: Path, value: Any) -> Any:
    """`body` with the value at `path` replaced (None removes the field)."""
    target = body
    for step in path[:-1]:
        target = target[step]
    if value is None:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return body


def text(body: Any, raw: str | None = None) -> str:
    """The body as JSON text, with the `RAW` placeholder replaced by `raw` as it stands."""
    encoded = json.dumps(body)
    return encoded if raw is None else encoded.replace(json.dumps(RAW), raw)


def answering(
    content: str | bytes, status: int = 200, headers: dict[str, str] | None = None
) -> httpx2.AsyncClient:
    """A client whose every request gets this answer."""
    all_headers = {"content-type": "application/json", **(headers or {})}

    def handler(request: httpx2.Request) -> httpx2.Response:
        body = content.encode("utf-8", "surrogatepass") if isinstance(content, str) else content
        return httpx2.Response(status, content=body, headers=all_headers)

    return httpx2.AsyncClient(transport=httpx2.MockTransport(handler))


def token_answer(platform: Platform, changes: dict[str, Any] | None = None) -> dict[str, Any]:
    """The platform's token answer with `changes` made to its token fields (None removes)."""
    fields = platform.token_fields()
    for key, value in (changes or {}).items():
        put(fields, (key,), value)
    return platform.token_body(fields)


async def exchange(platform: Platform, http: httpx2.AsyncClient) -> Grant:
    """The code exchange as the callback makes it (Ecwid's callback names the store)."""
    return await platform.provider().exchange_code(http, CODE, REDIRECT, store_id=str(STORE_ID))


async def refresh(platform: Platform, http: httpx2.AsyncClient) -> Grant:
    return await platform.provider().refresh(http, REFRESH)


async def identify(platform: Platform, http: httpx2.AsyncClient) -> Account:
    """Identify, as the callback does after the exchange.

    AliExpress makes no identity call: it reads the token answer, so its identify runs the
    exchange first and the answer under test is the token answer.
    """
    provider = platform.provider()
    if platform.identity_body is None:
        grant = await exchange(platform, http)
        return await provider.identify(http, grant)
    return await provider.identify(http, platform.grant())


Call = Callable[[Platform, httpx2.AsyncClient], Any]
CALLS: dict[str, Call] = {"exchange": exchange, "refresh": refresh, "identify": identify}


def calls_with_requests() -> list[tuple[Platform, str]]:
    """Every (platform, call) that sends a request: Ecwid has nothing to refresh."""
    return [
        (platform, call)
        for platform in PLATFORMS
        for call in CALLS
        if platform.refreshable or call != "refresh"
    ]


def success_body(platform: Platform, call: str) -> dict[str, Any]:
    """What the platform answers to `call` when all is well."""
    if call == "identify" and platform.identity_body is not None:
        return platform.identity_body()
    return token_answer(platform)
