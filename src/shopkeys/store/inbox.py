"""The webhook inbox at rest: a platform's verified webhook recorded once, with what it means for
its connection, and queued for the app, all in one transaction.

The transaction commits before the platform gets its 200: a webhook answered is a webhook kept.
A delivery the platform retries finds its receipt and changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import String, cast, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from shopkeys.providers.inbound import Effect, InboundWebhook
from shopkeys.store.connections import note_deadline, revoke
from shopkeys.store.ids import new_id
from shopkeys.store.repository import Repository, escape_like
from shopkeys.store.tables import ConnectionRow, WebhookReceiptRow

#: The event kind a received webhook is logged as (`webhook.received` for the app).
RECEIVED = "webhook_received"


@dataclass(frozen=True, slots=True)
class Unmatched:
    """The subject of a webhook about an account that no connection here has."""

    provider: str
    account_id: str | None
    id: str | None = None
    end_user_id: str | None = None
    status: str | None = None


@dataclass(frozen=True, slots=True)
class Receipt:
    """What became of a webhook: new or a repeat, and the connection it concerns."""

    duplicate: bool
    connection_id: str | None


class InboxRepository(Repository):
    """Receiving the platforms' webhooks."""

    async def receive(self, webhook: InboundWebhook) -> Receipt:
        """Record `webhook` once: its receipt, a `webhook_received` event (queued for the app
        with the platform's type and payload), and its effect on the connection (`revoked`, or
        `reauth_due` with the deadline). A repeat of an event already received changes nothing.
        """

        async def work(session: AsyncSession) -> Receipt:
            await self._write_lock(session)
            earlier = (
                await session.execute(
                    select(WebhookReceiptRow.id, WebhookReceiptRow.connection_id).where(
                        WebhookReceiptRow.provider == webhook.provider,
                        WebhookReceiptRow.event_id == webhook.event_id,
                    )
                )
            ).first()
            if earlier is not None:
                return Receipt(duplicate=True, connection_id=earlier.connection_id)
            row = await self._connection_of(session, webhook)
            now = self.clock()
            session.add(
                WebhookReceiptRow(
                    id=new_id("whr"),
                    provider=webhook.provider,
                    event_id=webhook.event_id,
                    event_type=webhook.event_type,
                    connection_id=row.id if row else None,
                    received_at=now,
                )
            )
            detail = {
                "event_type": webhook.event_type,
                "event_id": webhook.event_id,
                "payload": webhook.payload,
            }
            subject = row or Unmatched(webhook.provider, webhook.account_id)
            await self._event(session, subject, RECEIVED, now, detail)
            if row is not None:
                await self._apply(session, row, webhook)
            return Receipt(duplicate=False, connection_id=row.id if row else None)

        try:
            return await self._transaction(work)
        except IntegrityError:
            # Two deliveries of one event at once: the other one's receipt won.
            return Receipt(duplicate=True, connection_id=None)

    async def _connection_of(
        self, session: AsyncSession, webhook: InboundWebhook
    ) -> ConnectionRow | None:
        """The connection the webhook names: by account, or by one of its shops."""
        by_provider = select(ConnectionRow).where(ConnectionRow.provider == webhook.provider)
        if webhook.account_id is not None:
            return await session.scalar(
                by_provider.where(ConnectionRow.account_id == webhook.account_id).with_for_update()
            )
        if webhook.shop_id is None:
            return None
        # The shops are JSON: narrow with the id's text, then check the parsed list.
        needle = f"%{escape_like(webhook.shop_id)}%"
        candidates = await session.scalars(
            by_provider.where(cast(ConnectionRow.shops, String).like(needle, escape="\\"))
            .order_by(ConnectionRow.connected_at.desc())
            .with_for_update()
        )
        for row in candidates:
            if any(str(shop.get("id")) == webhook.shop_id for shop in row.shops):
                return row
        return None

    async def _apply(
        self, session: AsyncSession, row: ConnectionRow, webhook: InboundWebhook
    ) -> None:
        now = self.clock()
        reason = f"{webhook.provider} webhook {webhook.event_type}"
        if webhook.effect is Effect.REVOKED and revoke(row, now):
            await session.flush()
            await self._event(session, row, "revoked", now, {"reason": reason})
            self._after_commit(session, row.id)
        elif (
            webhook.effect is Effect.REAUTH_DUE
            and webhook.deadline is not None
            and note_deadline(row, webhook.deadline)
        ):
            await session.flush()
            detail = {"deadline": webhook.deadline.isoformat(), "reason": reason}
            await self._event(session, row, "reauth_due", now, detail)
