"""`shopkeys events`: the events on their way to the app's webhook URL, and sending them again."""

from __future__ import annotations

import typer
from rich.markup import escape
from rich.table import Table

from shopkeys.cli.common import command, err, fail, out, runtime
from shopkeys.store.deliveries import DELIVERED, DELIVERY_STATUSES, FAILED, Delivery

events_app = typer.Typer(
    help="Events sent to the app (SHOPKEYS_WEBHOOK_URL).", no_args_is_help=True
)

NO_URL = (
    "[yellow]note:[/yellow] SHOPKEYS_WEBHOOK_URL is not set: events are recorded, but none is "
    "queued or sent"
)


@events_app.command("list")
@command
async def list_events(
    status: str | None = typer.Option(None, help="pending, delivered or failed (given up)."),
    connection: str | None = typer.Option(None, "--connection", help="Only this connection."),
    limit: int = typer.Option(50, help="At most this many, newest first."),
) -> None:
    """List the newest events queued for the app and how their delivery went."""
    if status is not None and status not in DELIVERY_STATUSES:
        fail(f"unknown status {status!r}; choose one of {', '.join(DELIVERY_STATUSES)}")
    if limit < 1:
        fail("--limit must be at least 1")
    async with runtime() as rt:
        rows = await rt.vault.deliveries.recent(limit, status=status, connection_id=connection)
        configured = rt.settings.webhook_url is not None
    if not configured:
        err.print(NO_URL, soft_wrap=True)
    if not rows:
        out.print("No events for the app yet." if status is None else f"No {status} events.")
        return
    table = Table()
    # Ids are what people copy into `shopkeys events redeliver`: never shortened.
    table.add_column("id", no_wrap=True, min_width=max(len(d.id) for d in rows))
    table.add_column("type", no_wrap=True)
    table.add_column("connection", no_wrap=True)
    table.add_column("status")
    table.add_column("attempts", justify="right")
    table.add_column("last status", overflow="fold")
    table.add_column("next attempt / delivered at", no_wrap=True)
    for delivery in rows:
        table.add_row(
            delivery.id,
            delivery.type,
            delivery.connection_id or "",
            delivery.status,
            str(delivery.attempts),
            escape(_last_status(delivery)),
            _when(delivery),
        )
    out.print(table)


def _last_status(delivery: Delivery) -> str:
    """The last attempt's HTTP status, or what went wrong when there was no answer."""
    if delivery.last_error:
        return delivery.last_error
    return str(delivery.last_status) if delivery.last_status is not None else ""


def _when(delivery: Delivery) -> str:
    if delivery.status == DELIVERED and delivery.delivered_at is not None:
        return f"delivered {delivery.delivered_at:%Y-%m-%d %H:%M:%S}"
    if delivery.status == FAILED:
        return "given up"
    return f"next {delivery.next_attempt_at:%Y-%m-%d %H:%M:%S}"


@events_app.command("redeliver")
@command
async def redeliver(
    delivery_id: str | None = typer.Argument(None, help="The event's id (msg_...)."),
    failed: bool = typer.Option(False, "--failed", help="Every event that was given up."),
) -> None:
    """Send an event to the app again (it keeps its id, so the app can drop a repeat)."""
    if (delivery_id is None) == (not failed):
        fail("name one event id, or use --failed for every event that was given up")
    async with runtime() as rt:
        if failed:
            count = await rt.vault.deliveries.redeliver_failed()
            message = f"requeued {count} given-up event(s)"
        else:
            assert delivery_id is not None
            delivery = await rt.vault.deliveries.redeliver(delivery_id)
            if delivery is None:
                fail(f"no event {delivery_id}")
            message = f"requeued {delivery.id} ({delivery.type})"
        configured = rt.settings.webhook_url is not None
    out.print(message)
    if not configured:
        err.print(NO_URL, soft_wrap=True)
