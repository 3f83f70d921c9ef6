"""Importing a token obtained elsewhere (AliExpress's Token Query Tool, a previous system).

The platform is asked whose token it is where it can say. A token the platform calls expired
(`AccessExpired`) is refreshed first when a refresh token came with it, and the refreshed grant is
what gets stored: a grant whose refresh token is alive is worth keeping.
"""

from __future__ import annotations

from dataclasses import replace

import httpx2

from shopkeys.errors import (
    AccessExpired,
    AuthorizationDead,
    ProtocolError,
    ProviderError,
    ShopkeysError,
)
from shopkeys.grant import Account, Grant
from shopkeys.providers.base import Provider
from shopkeys.store.records import Connection
from shopkeys.store.vault import Vault


class ImportRefused(ShopkeysError):
    """The token cannot be imported; `reason` is a stable code, the message says why."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


async def import_grant(
    vault: Vault,
    provider: Provider,
    http: httpx2.AsyncClient,
    grant: Grant,
    *,
    end_user_id: str | None,
) -> tuple[Connection, bool]:
    """Identify `grant`'s account (refreshing an expired one first) and store it."""
    if provider.account_id_hint and not grant.account_id:
        # Without it the connection would be stored under an empty account id.
        raise ImportRefused(
            "account_id_required",
            f"{provider.display_name} cannot tell whose token this is: send account_id "
            f"({provider.account_id_hint})",
        )
    if grant.account_id:
        problem = provider.account_id_problem(grant.account_id)
        if problem is not None:
            raise ImportRefused("invalid_account_id", problem)
    try:
        account = await provider.identify(http, grant)
    except AccessExpired as exc:
        if not grant.refresh_token:
            raise ImportRefused(
                "invalid_token",
                f"{provider.display_name} says the access token has expired ({exc.detail}) "
                "and no refresh token came with it",
            ) from exc
        grant = await _refreshed(provider, http, grant)
        # The refresh used up the caller's refresh token where the platform rotates: from here
        # on the new grant is the only one left, so it is stored whatever identify says.
        account = await _identify_refreshed(provider, http, grant)
    except AuthorizationDead as exc:
        # The platform refuses the token itself: the request is wrong, not a connection dead.
        raise ImportRefused(
            "invalid_token", f"{provider.display_name} does not accept this token ({exc})"
        ) from exc
    except ProtocolError:
        # A garbled answer, or one about another account than the caller named: storing the
        # grant under the caller's id could file it under the wrong store.
        raise
    except ProviderError:
        if not grant.account_id:
            raise
        account = Account(account_id=grant.account_id, name=grant.account_name)
    if not account.account_id:
        raise ImportRefused("account_id_required", "send account_id: the platform named no account")
    return await vault.connections.import_grant(grant, account, end_user_id=end_user_id)


async def _identify_refreshed(
    provider: Provider, http: httpx2.AsyncClient, grant: Grant
) -> Account:
    try:
        return await provider.identify(http, grant)
    except ProviderError:
        if not grant.account_id:
            raise
        return Account(account_id=grant.account_id, name=grant.account_name)


async def _refreshed(provider: Provider, http: httpx2.AsyncClient, grant: Grant) -> Grant:
    try:
        fresh = await provider.refresh(http, grant.refresh_token or "")
    except AuthorizationDead as exc:
        raise ImportRefused(
            "invalid_token",
            f"{provider.display_name} says the access token has expired and refused the refresh "
            f"token ({exc.detail})",
        ) from exc
    # What the caller told us stays where the refresh says nothing (the account). The refresh
    # token is the refresh's own: where it sent none, the grant can no longer be refreshed.
    return replace(
        fresh,
        account_id=fresh.account_id or grant.account_id,
        account_name=fresh.account_name or grant.account_name,
        raw={**fresh.raw, "imported": True},
    )
