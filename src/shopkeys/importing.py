"""Importing a token obtained elsewhere (AliExpress's Token Query Tool, a previous system).

The platform is asked whose token it is where it can say. A token the platform calls expired
(`AccessExpired`) is refreshed first when a refresh token came with it, and the refreshed grant is
what gets stored: a grant whose refresh token is alive is worth keeping.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime

import httpx2

from shopkeys.errors import (
    AccessExpired,
    AuthorizationDead,
    ProtocolError,
    ProviderError,
)
from shopkeys.flow_errors import ImportRefused, NotConfigured
from shopkeys.grant import Account, Grant
from shopkeys.providers.base import Provider
from shopkeys.store.records import Connection
from shopkeys.store.vault import Vault


@dataclass(frozen=True, slots=True)
class TokenImport:
    """A token obtained elsewhere, as an app (the API) or an operator (the CLI) hands it over."""

    provider: str
    access_token: str = field(repr=False)
    refresh_token: str | None = field(default=None, repr=False)
    access_expires_at: datetime | None = None
    refresh_expires_at: datetime | None = None
    account_id: str | None = None
    account_name: str | None = None
    scopes: Sequence[str] = ()
    end_user_id: str | None = None

    def grant(self) -> Grant:
        """The grant to store; marked as imported, since no connect flow produced it."""
        return Grant(
            provider=self.provider,
            access_token=self.access_token,
            refresh_token=self.refresh_token or None,
            access_expires_at=self.access_expires_at,
            refresh_expires_at=self.refresh_expires_at,
            scopes=list(self.scopes),
            account_id=self.account_id or "",
            account_name=self.account_name,
            raw={"imported": True},
        )


async def import_token(
    vault: Vault,
    providers: Mapping[str, Provider],
    http: httpx2.AsyncClient,
    request: TokenImport,
) -> tuple[Connection, bool]:
    """Import `request` through its platform's configured client; `NotConfigured` without one."""
    provider = providers.get(request.provider)
    if provider is None:
        raise NotConfigured(f"{request.provider} is not configured")
    return await import_grant(
        vault, provider, http, request.grant(), end_user_id=request.end_user_id
    )


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
            f"{provider.display_name} cannot tell whose token this is: send account_id "
            f"({provider.account_id_hint})",
            code="account_id_required",
        )
    if grant.account_id:
        problem = provider.account_id_problem(grant.account_id)
        if problem is not None:
            raise ImportRefused(problem, code="invalid_account_id")
    try:
        account = await provider.identify(http, grant)
    except AccessExpired as exc:
        if not grant.refresh_token:
            raise ImportRefused(
                f"{provider.display_name} says the access token has expired ({exc.detail}) "
                "and no refresh token came with it",
                code="invalid_token",
            ) from exc
        grant = await _refreshed(provider, http, grant)
        # The refresh used up the caller's refresh token where the platform rotates: from here
        # on the new grant is the only one left, so it is stored whatever identify says.
        account = await _identify_refreshed(provider, http, grant)
    except AuthorizationDead as exc:
        # The platform refuses the token itself: the request is wrong, not a connection dead.
        raise ImportRefused(
            f"{provider.display_name} does not accept this token ({exc})", code="invalid_token"
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
        raise ImportRefused(
            "send account_id: the platform named no account", code="account_id_required"
        )
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
            f"{provider.display_name} says the access token has expired and refused the refresh "
            f"token ({exc.detail})",
            code="invalid_token",
        ) from exc
    # What the caller told us stays where the refresh says nothing (the account). The refresh
    # token is the refresh's own: where it sent none, the grant can no longer be refreshed.
    return replace(
        fresh,
        account_id=fresh.account_id or grant.account_id,
        account_name=fresh.account_name or grant.account_name,
        raw={**fresh.raw, "imported": True},
    )
