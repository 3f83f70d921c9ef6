"""The JSON API's request and response models (they are also the OpenAPI document)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from shopkeys.platform import Platform
from shopkeys.providers.base import CREDENTIAL_CHARACTERS, MAX_CREDENTIAL
from shopkeys.store.records import Connection, Event


class ErrorDetail(BaseModel):
    code: str = Field(examples=["not_found"])
    message: str = Field(examples=["no connection con_x"])


class ErrorResponse(BaseModel):
    """Every error the API returns."""

    error: ErrorDetail


class RequestModel(BaseModel):
    """A request body: every string in it is text the database and the platforms can take."""

    @model_validator(mode="before")
    @classmethod
    def _storable_text(cls, data: Any) -> Any:
        # JSON allows lone surrogates ("\udfff") and NUL; neither can be stored (UTF-8 refuses
        # the one, PostgreSQL the other), so they are refused here with the field's name.
        problem = _unstorable(data, ())
        if problem is not None:
            raise ValueError(problem)
        return data


#: No request of ours nests deeper than this; deeper is refused rather than walked.
MAX_DEPTH = 32


def _unstorable(value: Any, where: tuple[str, ...]) -> str | None:
    """Why `value` holds text that cannot be stored, or None. Walks with its own stack, so a
    deeply nested body is refused instead of exhausting Python's recursion limit."""
    stack: list[tuple[Any, tuple[str, ...]]] = [(value, where)]
    while stack:
        item, path = stack.pop()
        if len(path) > MAX_DEPTH:
            return "the body is nested too deeply"
        if isinstance(item, str):
            problem = unstorable_text(item, ".".join(path) or "a value")
            if problem is not None:
                return problem
        elif isinstance(item, dict):
            for key, child in item.items():
                stack.append((key, path))
                stack.append((child, (*path, str(key))))
        elif isinstance(item, list):
            stack.extend((child, (*path, str(index))) for index, child in enumerate(item))
    return None


def unstorable_text(text: str, name: str) -> str | None:
    """Why `text` cannot be stored (a NUL, a lone surrogate), or None when it can."""
    if "\x00" in text:
        return f"{name} contains a NUL character"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return f"{name} contains a lone surrogate, which is not text"
    return None


def _utc(value: datetime) -> datetime:
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError("the time is out of range once converted to UTC") from None


#: A point in time with its offset (a naive time is ambiguous), that exists in UTC.
Instant = Annotated[AwareDatetime, AfterValidator(_utc)]

#: A credential as the platforms issue them: printable ASCII without spaces, a few KB at most.
#: Anything else could not travel in an HTTP header or query, so it cannot be a real token.
Credential = Annotated[
    str, Field(min_length=1, max_length=MAX_CREDENTIAL, pattern=f"^{CREDENTIAL_CHARACTERS}$")
]


class ConnectSessionRequest(RequestModel):
    provider: Platform
    end_user_id: str = Field(min_length=1, max_length=255, description="Your id for the merchant")
    return_to: str | None = Field(
        default=None,
        max_length=2048,
        description="Where to send the merchant afterwards (an allowed origin)",
    )


class ConnectSessionResponse(BaseModel):
    id: str
    url: str = Field(description="Open this in the merchant's browser")
    expires_at: datetime


class ConnectionOut(BaseModel):
    """A connection, without its tokens."""

    id: str
    provider: Platform
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
    connected_at: datetime | None = Field(
        description="When the merchant last connected the store (connect, reconnect, install, "
        "import); `GET /v1/token` serves the most recent"
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
    provider: Platform
    account_id: str
    connection_id: str
    public_token: str | None = Field(
        default=None,
        description="Present when the platform issued a public, read-only token with the "
        "authorization (Ecwid's storefront token); it never expires",
    )


class ImportRequest(RequestModel):
    """A token obtained elsewhere (AliExpress's Token Query Tool, a previous system)."""

    provider: Platform
    access_token: Credential
    refresh_token: Credential | None = None
    access_expires_at: Instant | None = Field(
        default=None, description="With its offset, e.g. 2030-01-01T00:00:00Z"
    )
    refresh_expires_at: Instant | None = None
    account_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=128,
        description="The account or store id; required where the platform cannot tell "
        "(AliExpress seller id, Ecwid store id)",
    )
    account_name: str | None = Field(default=None, max_length=255)
    end_user_id: str | None = Field(default=None, min_length=1, max_length=255)
    scopes: list[Annotated[str, Field(min_length=1, max_length=255)]] = Field(
        default_factory=list, max_length=200
    )


class ConnectionPatch(RequestModel):
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
