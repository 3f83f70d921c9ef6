"""What the API answers, as typed values.

Read leniently: fields the service adds later are ignored, so an older client keeps working with
a newer service. Providers and statuses in answers are plain strings for the same reason; the
arguments are typed with `Provider` and `Status`, so that a misspelt filter fails in mypy.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

#: The platforms shopkeys connects to.
Provider = Literal["aliexpress", "tiktok_shop", "shopline", "ecwid"]
#: A connection's status.
Status = Literal["active", "needs_reauth", "revoked"]


@dataclass(frozen=True, slots=True)
class Token:
    """A valid access token for one connection. Its repr leaves the tokens out, so logging it
    leaks nothing."""

    access_token: str = field(repr=False)
    #: None: the token does not expire (Ecwid).
    expires_at: datetime | None
    provider: str
    account_id: str
    connection_id: str
    #: Ecwid's public storefront token, when the platform issued one; it never expires.
    public_token: str | None = field(default=None, repr=False)

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> Token:
        return cls(
            access_token=_text(body["access_token"]),
            expires_at=_time(body.get("expires_at")),
            provider=_text(body["provider"]),
            account_id=_text(body["account_id"]),
            connection_id=_text(body["connection_id"]),
            public_token=_optional_text(body.get("public_token")),
        )


@dataclass(frozen=True, slots=True)
class Connection:
    """A store connected to the app: everything the API shows of it, never its tokens."""

    id: str
    provider: str
    account_id: str
    account_name: str | None
    end_user_id: str | None
    status: str
    access_expires_at: datetime | None
    refresh_expires_at: datetime | None
    scopes: tuple[str, ...]
    shops: tuple[dict[str, Any], ...]
    metadata: dict[str, Any]
    version: int
    created_at: datetime
    updated_at: datetime
    last_refreshed_at: datetime | None
    refresh_failures: int
    last_error: str | None
    refreshable: bool
    connected_at: datetime | None

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> Connection:
        return cls(
            id=_text(body["id"]),
            provider=_text(body["provider"]),
            account_id=_text(body["account_id"]),
            account_name=_optional_text(body.get("account_name")),
            end_user_id=_optional_text(body.get("end_user_id")),
            status=_text(body["status"]),
            access_expires_at=_time(body.get("access_expires_at")),
            refresh_expires_at=_time(body.get("refresh_expires_at")),
            scopes=tuple(_text(s) for s in body.get("scopes") or ()),
            shops=tuple(dict(s) for s in body.get("shops") or ()),
            metadata=dict(body.get("metadata") or {}),
            version=int(body["version"]),
            created_at=_required_time(body["created_at"]),
            updated_at=_required_time(body["updated_at"]),
            last_refreshed_at=_time(body.get("last_refreshed_at")),
            refresh_failures=int(body.get("refresh_failures") or 0),
            last_error=_optional_text(body.get("last_error")),
            refreshable=bool(body.get("refreshable", True)),
            connected_at=_time(body.get("connected_at")),
        )


@dataclass(frozen=True, slots=True)
class ConnectionPage:
    """One page of `GET /v1/connections`; iterate it for its connections."""

    data: tuple[Connection, ...]
    #: Pass as `after` for the next page; None on the last one.
    next_after: str | None

    def __iter__(self) -> Iterator[Connection]:
        return iter(self.data)

    def __len__(self) -> int:
        return len(self.data)

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> ConnectionPage:
        return cls(
            data=tuple(Connection.from_json(c) for c in body["data"]),
            next_after=_optional_text(body.get("next_after")),
        )


@dataclass(frozen=True, slots=True)
class ConnectSession:
    """A connect link for a merchant. Whoever opens `url` first can connect a store for the end
    user, so it is kept out of the repr like a secret."""

    id: str
    url: str = field(repr=False)
    expires_at: datetime

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> ConnectSession:
        return cls(
            id=_text(body["id"]),
            url=_text(body["url"]),
            expires_at=_required_time(body["expires_at"]),
        )


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError("expected a string")
    return value


def _optional_text(value: Any) -> str | None:
    return None if value is None else _text(value)


def _required_time(value: Any) -> datetime:
    # Python 3.11 reads every ISO 8601 form the API writes, "Z" included.
    return datetime.fromisoformat(_text(value))


def _time(value: Any) -> datetime | None:
    return None if value is None else _required_time(value)
