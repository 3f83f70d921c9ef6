"""Recording a change: its event, and the app's copy of it in the outbox, in one transaction.

The events that concern the app get a row in `deliveries` in the transaction that commits the
change, so an event is sent to the app if and only if its change was committed.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncSession

from shopkeys.store.ids import new_id
from shopkeys.store.tables import DeliveryRow, EventRow

#: The event kinds the app is sent, and the Standard Webhooks `type` each goes out as. The others
#: (`moved`, `end_user_changed`, ...) stay in the log for operators.
APP_EVENT_TYPES: dict[str, str] = {
    "connected": "connection.created",
    "reconnected": "connection.created",
    "refreshed": "connection.refreshed",
    "refresh_failed": "connection.refresh_failed",
    "needs_reauth": "connection.needs_reauth",
    "reauth_due": "connection.reauth_due",
    "revoked": "connection.revoked",
    "disconnected": "connection.deleted",
    "webhook_received": "webhook.received",
}


class Subject(Protocol):
    """What an event names of its connection: a stored row, or the record of one; or, for a
    platform's webhook about an account with no connection here, no connection at all."""

    @property
    def id(self) -> str | None: ...
    @property
    def provider(self) -> str: ...
    @property
    def account_id(self) -> str | None: ...
    @property
    def end_user_id(self) -> str | None: ...
    @property
    def status(self) -> str | None: ...


async def record_event(
    session: AsyncSession,
    row: Subject,
    kind: str,
    now: datetime,
    detail: dict[str, Any],
    *,
    outbox: bool,
) -> EventRow:
    """Record a change to `row` in the transaction of `session`, and queue it for the app when
    `outbox` is on and the app is sent events of this kind. `detail` never holds a token."""
    event = EventRow(
        connection_id=row.id, provider=row.provider, kind=kind, detail=detail, created_at=now
    )
    session.add(event)
    event_type = APP_EVENT_TYPES.get(kind)
    if outbox and event_type is not None:
        await session.flush()  # the event's id, which the delivery names
        data: dict[str, Any] = {
            "connection_id": row.id,
            "provider": row.provider,
            "account_id": row.account_id,
            "end_user_id": row.end_user_id,
            "status": row.status,
        }
        if kind == "reconnected":
            data["reconnected"] = True
        data.update({key: value for key, value in detail.items() if key not in data})
        payload = {"type": event_type, "timestamp": now.isoformat(), "data": data}
        session.add(
            DeliveryRow(
                id=new_id("msg"),
                event_id=event.id,
                connection_id=row.id,
                type=event_type,
                payload=payload,
                status="pending",
                attempts=0,
                next_attempt_at=now,
                created_at=now,
            )
        )
    return event
