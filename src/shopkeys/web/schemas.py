"""The JSON API's request and response models (they are also the OpenAPI document)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from shopkeys.store.records import Connection, Event


class ErrorDetail(BaseModel):
    code: str = Field(examples=["not_found"])
    message: str = Field(examples=["no connection con_x"])


class ErrorResponse(BaseModel):
    """Every error the API returns."""

    error: ErrorDetail


class ConnectSessionRequest(BaseModel):
    provider: Literal["aliexpress", "tiktok_shop", "shopline", "ecwid"]
    end_user_id: str = Field(min_length=1, max_length=255, description="Your id for the merchant")
    return_to: str | None = Field(
        default=None, description="Where to send the merchant afterwards (an allowed origin)"
    )


class ConnectSessionResponse(BaseModel):
    id: str
    url: str = Field(description="Open this in the merchant's browser")
    expires_at: datetime


class ConnectionOut(BaseModel):
    """A connection, without its tokens."""

    id: str
    provider: str
    account_id: str
    account_name: str | None
    end_user_id: str | None
    status: Literal["active", "needs_reauth", "revoked"]
    access_expires_at: datetime | None = Field(description="null: the token does not expire")
    refresh_expires_at: datetime | None
    scopes: list[str]
    shops: list[dict[str, Any]]
    metadata: dict[str, Any]
    version: int
    created_at: datetime
    updated_at: datetime
    last_refreshed_at: datetime | None
    refresh_failures: int
    last_error: str | None
    refreshable: bool = Field(
        description="false: no refresh token is stored (the token never expires, or the "
        "platform issued none that works)"
    )

    @classmethod
    def of(cls, connection: Connection) -> ConnectionOut:
        return cls.model_validate(connection, from_attributes=True)


class ConnectionPage(BaseModel):
    data: list[ConnectionOut]
    next_after: str | None = Field(description="Pass as `after` for the next page; null at the end")


class TokenOut(BaseModel):
    access_token: str
    expires_at: datetime | None = Field(description="null: the token does not expire")
    provider: str
    account_id: str
    connection_id: str
    public_token: str | None = Field(
        default=None,
        description="Present when the platform issued a public, read-only token with the "
        "authorization (Ecwid's storefront token); it never expires",
    )


class ImportRequest(BaseModel):
    """A token obtained elsewhere (AliExpress's Token Query Tool, a previous system)."""

    provider: Literal["aliexpress", "tiktok_shop", "shopline", "ecwid"]
    access_token: str = Field(min_length=1)
    refresh_token: str | None = None
    access_expires_at: datetime | None = None
    refresh_expires_at: datetime | None = None
    account_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=128,
        description="The account or store id; required where the platform cannot tell "
        "(AliExpress seller id, Ecwid store id)",
    )
    account_name: str | None = Field(default=None, max_length=255)
    end_user_id: str | None = Field(default=None, min_length=1, max_length=255)
    scopes: list[str] = Field(default_factory=list)


class ConnectionPatch(BaseModel):
    """Changes to a connection: who it belongs to (claim a store installed from an app market)."""

    model_config = ConfigDict(extra="forbid")

    end_user_id: str | None = Field(
        min_length=1,
        max_length=255,
        description="Your id for the merchant; null leaves the connection without one",
    )
    expected_end_user_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=255,
        description="Who the connection belongs to now; leave out (or null) to claim one that "
        "belongs to nobody. A connection that belongs to someone else answers 409.",
    )


class ImportResponse(BaseModel):
    connection: ConnectionOut
    created: bool


class EventOut(BaseModel):
    id: int
    connection_id: str | None
    provider: str
    kind: str
    detail: dict[str, Any]
    created_at: datetime

    @classmethod
    def of(cls, event: Event) -> EventOut:
        return cls.model_validate(event, from_attributes=True)


class Health(BaseModel):
    status: Literal["ok"]
    database: Literal["ok"]
    providers: dict[str, Literal["configured", "not configured"]]
