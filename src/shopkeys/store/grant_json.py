"""Grants, accounts and shops as JSON: the connections' shops column and a held grant's payload."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from shopkeys.grant import Account, Grant, Shop

_GRANT_TEXT_FIELDS = (
    "provider",
    "access_token",
    "refresh_token",
    "account_id",
    "account_name",
    "public_token",
)


def shop_json(shop: Shop) -> dict[str, Any]:
    """A shop as the connections' `shops` column holds it: its extras beside its known fields."""
    return {"id": shop.id, "name": shop.name, "region": shop.region, **shop.extra}


def grant_and_account_json(grant: Grant, account: Account) -> str:
    """The text to seal for a grant held until the merchant confirms it (tokens included)."""
    return json.dumps(
        {
            "grant": {
                **{k: getattr(grant, k) for k in _GRANT_TEXT_FIELDS},
                "access_expires_at": _iso(grant.access_expires_at),
                "refresh_expires_at": _iso(grant.refresh_expires_at),
                "scopes": list(grant.scopes),
                "raw": grant.raw,
            },
            "account": {
                "account_id": account.account_id,
                "name": account.name,
                "shops": [shop_json(shop) for shop in account.shops],
                "extra": account.extra,
            },
        }
    )


def grant_and_account_from(text: str) -> tuple[Grant, Account]:
    """The grant and account that `grant_and_account_json` wrote."""
    data = json.loads(text)
    return _grant_from(data["grant"]), _account_from(data["account"])


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def _grant_from(data: dict[str, Any]) -> Grant:
    def moment(key: str) -> datetime | None:
        value = data.get(key)
        return datetime.fromisoformat(value) if value else None

    return Grant(
        provider=data["provider"],
        access_token=data["access_token"],
        refresh_token=data.get("refresh_token"),
        account_id=data["account_id"],
        account_name=data.get("account_name"),
        public_token=data.get("public_token"),
        access_expires_at=moment("access_expires_at"),
        refresh_expires_at=moment("refresh_expires_at"),
        scopes=list(data.get("scopes") or []),
        raw=dict(data.get("raw") or {}),
    )


def _account_from(data: dict[str, Any]) -> Account:
    shops = [
        Shop(
            id=shop["id"],
            name=shop.get("name"),
            region=shop.get("region"),
            extra={k: v for k, v in shop.items() if k not in ("id", "name", "region")},
        )
        for shop in data.get("shops") or []
    ]
    return Account(
        account_id=data["account_id"],
        name=data.get("name"),
        shops=shops,
        extra=dict(data.get("extra") or {}),
    )
