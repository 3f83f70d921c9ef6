"""The database tables. Tokens are stored only as key-ring ciphertexts."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, DateTime, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes on every backend (SQLite keeps no offset, so it stores naive UTC)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: shopkeys stores aware UTC datetimes only")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSON(), list[Any]: JSON()}


class ConnectionRow(Base):
    """One authorized store account on one platform."""

    __tablename__ = "connections"
    __table_args__ = (
        UniqueConstraint("provider", "account_id", name="uq_connections_provider_account"),
        Index("ix_connections_end_user", "end_user_id"),
        Index("ix_connections_next_refresh", "next_refresh_at"),
        Index("ix_connections_end_user_connected", "end_user_id", "connected_at"),
        # The dashboard's and `/metrics`' counts by platform and status, from the index alone.
        Index("ix_connections_provider_status", "provider", "status"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    provider: Mapped[str] = mapped_column(String(32))
    account_id: Mapped[str] = mapped_column(String(128))
    account_name: Mapped[str | None] = mapped_column(String(255))
    end_user_id: Mapped[str | None] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(16), default="active")
    access_token: Mapped[str] = mapped_column(Text)
    refresh_token: Mapped[str | None] = mapped_column(Text)
    # A read-only token some platforms issue beside the access token (Ecwid's storefront token).
    public_token: Mapped[str | None] = mapped_column(Text)
    access_expires_at: Mapped[datetime | None]
    refresh_expires_at: Mapped[datetime | None]
    scopes: Mapped[list[Any]] = mapped_column(default=list)
    shops: Mapped[list[Any]] = mapped_column(default=list)
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", default=dict)
    # Increments on every change of tokens or status; caches and other instances key on it.
    version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    #: When the merchant last connected the store (a connect, reconnect, install or import).
    connected_at: Mapped[datetime | None]
    last_refreshed_at: Mapped[datetime | None]
    # Refresh bookkeeping for the refresh engine: when to try, failures so far, who holds it.
    # Written with plain UPDATEs that leave `version` alone: `version` moves only with the
    # tokens and the status, so bookkeeping never makes a token write lose its compare-and-set.
    next_refresh_at: Mapped[datetime | None]
    refresh_failures: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    #: The kind of the last failure (`temporary`, `rate_limited`, ...), shared with every caller.
    last_error_kind: Mapped[str | None] = mapped_column(String(32))
    #: No caller or instance asks the platform again before this (a `Retry-After`, a backoff).
    blocked_until: Mapped[datetime | None]
    lease_owner: Mapped[str | None] = mapped_column(String(64))
    lease_expires_at: Mapped[datetime | None]
    #: The deadline a `reauth_due` event was last sent for: one event per deadline.
    reauth_notified_for: Mapped[datetime | None]

    # Every ORM UPDATE or DELETE of a connection says `WHERE version = <the version read>` and
    # fails (StaleDataError) if another writer changed the row in between. SQLite ignores
    # FOR UPDATE, so without this a refresh or a re-encryption could overwrite a refresh token
    # that another process had just rotated. The code sets `version` itself (no generator).
    __mapper_args__ = {"version_id_col": version, "version_id_generator": False}


class AuthSessionRow(Base):
    """A connect session and the CSRF state of its current authorization attempt (both hashed)."""

    __tablename__ = "auth_sessions"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    provider: Mapped[str] = mapped_column(String(32))
    end_user_id: Mapped[str | None] = mapped_column(String(255))
    return_to: Mapped[str | None] = mapped_column(Text)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    state_hash: Mapped[str | None] = mapped_column(String(64), unique=True)
    state_expires_at: Mapped[datetime | None]
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    consumed_at: Mapped[datetime | None]
    connection_id: Mapped[str | None] = mapped_column(
        String(40), ForeignKey("connections.id", ondelete="SET NULL")
    )
    # The hash of the cookie set on the browser that opened the link (RFC 6749 section 10.12).
    browser_hash: Mapped[str | None] = mapped_column(String(64))
    # A callback that came back in another browser: the grant, encrypted, until the browser
    # that opened the link confirms it.
    pending: Mapped[str | None] = mapped_column(Text)


class EventRow(Base):
    """What happened to a connection. Kept after the connection is deleted, so no foreign key."""

    __tablename__ = "events"
    __table_args__ = (
        Index("ix_events_connection", "connection_id", "id"),
        # The dashboard's chart counts refreshes and failures by day over the last week.
        Index("ix_events_kind_created", "kind", "created_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    connection_id: Mapped[str | None] = mapped_column(String(40))
    provider: Mapped[str] = mapped_column(String(32))
    kind: Mapped[str] = mapped_column(String(32))
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime]


class DeliveryRow(Base):
    """An event on its way to the app's webhook URL: the outbox, written with the event."""

    __tablename__ = "deliveries"
    __table_args__ = (
        Index("ix_deliveries_due", "status", "next_attempt_at"),
        Index("ix_deliveries_connection", "connection_id", "event_id"),
    )

    #: The `webhook-id` header: the same on every attempt, so the app can drop repeats.
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    event_id: Mapped[int] = mapped_column(Integer, ForeignKey("events.id", ondelete="CASCADE"))
    connection_id: Mapped[str | None] = mapped_column(String(40))
    type: Mapped[str] = mapped_column(String(48))
    #: The JSON body sent, as signed: `{"type", "timestamp", "data"}`.
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    #: `pending`, `delivered` or `failed` (given up).
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime]
    last_status: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]
    delivered_at: Mapped[datetime | None]
    lease_owner: Mapped[str | None] = mapped_column(String(64))
    lease_expires_at: Mapped[datetime | None]


class WebhookReceiptRow(Base):
    """A platform's webhook, received once: a retried delivery finds its receipt and stops."""

    __tablename__ = "webhook_receipts"
    __table_args__ = (
        UniqueConstraint("provider", "event_id", name="uq_webhook_receipts_provider_event"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    provider: Mapped[str] = mapped_column(String(32))
    #: The platform's id for the event (TikTok's notification id, Ecwid's eventId).
    event_id: Mapped[str] = mapped_column(String(128))
    event_type: Mapped[str] = mapped_column(String(128))
    #: The connection it concerns; None when no connection here has that account.
    connection_id: Mapped[str | None] = mapped_column(String(40))
    received_at: Mapped[datetime]


class ApiKeyRow(Base):
    """An API key, stored as a hash; `prefix` lets operators recognise it."""

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(255))
    prefix: Mapped[str] = mapped_column(String(16))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    scope: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]
