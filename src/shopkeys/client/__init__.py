"""A Python client for the shopkeys API: `Client` (asyncio) and `SyncClient`, with typed answers
and one exception class per kind of error.

It talks HTTP only (httpx2 and the standard library): an app imports it without the service's
own dependencies being loaded, and it never reaches into the service's modules.

    async with Client("http://127.0.0.1:8000", "sk_...") as shopkeys:
        token = await shopkeys.token("con_...")
"""

from shopkeys.client._async import Client
from shopkeys.client._core import DEFAULT_TIMEOUT, SHOP_HEADER
from shopkeys.client._sync import SyncClient
from shopkeys.client.errors import (
    BadRequest,
    Conflict,
    Forbidden,
    NeedsReauth,
    NotFound,
    NotRefreshable,
    PlatformError,
    RateLimited,
    ServerError,
    ShopkeysApiError,
    ShopkeysError,
    Unauthorized,
    error_from_response,
)
from shopkeys.client.models import (
    Connection,
    ConnectionPage,
    ConnectSession,
    Provider,
    Status,
    Token,
)

__all__ = [
    "DEFAULT_TIMEOUT",
    "SHOP_HEADER",
    "BadRequest",
    "Client",
    "Conflict",
    "ConnectSession",
    "Connection",
    "ConnectionPage",
    "Forbidden",
    "NeedsReauth",
    "NotFound",
    "NotRefreshable",
    "PlatformError",
    "Provider",
    "RateLimited",
    "ServerError",
    "ShopkeysApiError",
    "ShopkeysError",
    "Status",
    "SyncClient",
    "Token",
    "Unauthorized",
    "error_from_response",
]
