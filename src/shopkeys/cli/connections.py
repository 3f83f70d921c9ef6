"""Commands about connections: connect, list, show, token, refresh, claim, disconnect, import."""

from __future__ import annotations

import asyncio
import json
import sys
import time
import webbrowser
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

import typer
from rich.markup import escape
from rich.table import Table

from shopkeys.cli.common import (
    OutputFormat,
    command,
    fail,
    humanize_until,
    iso,
    out,
    runtime,
)
from shopkeys.importing import TokenImport, import_token
from shopkeys.platform import Platform
from shopkeys.redact import redact
from shopkeys.refresh import ConnectionUnusable
from shopkeys.store.connections import EndUserConflict
from shopkeys.store.records import ACTIVE, STATUSES, Connection

#: Seconds between looks at the database while `connect` waits (tests make it shorter).
POLL_INTERVAL = 1.0


async def _pause(seconds: float) -> None:
    """The wait between polls (a seam for tests, which act as the merchant meanwhile)."""
    await asyncio.sleep(seconds)


class TokenFormat(StrEnum):
    raw = "raw"
    json = "json"
    env = "env"


#: The longest end user id the database holds (and the API accepts).
END_USER_MAX = 255


def _check_end_user(value: str | None) -> str | None:
    if value is not None and not 1 <= len(value) <= END_USER_MAX:
        fail(f"the end user id must be 1 to {END_USER_MAX} characters")
    return value


def _check_provider(name: str) -> str:
    if not Platform.known(name):
        fail(f"unknown platform {name!r}; choose one of {', '.join(Platform)}")
    return name


@command
async def connect(
    provider: str = typer.Argument(..., help="aliexpress, tiktok_shop, shopline or ecwid"),
    end_user: str | None = typer.Option(None, "--end-user", help="Your id for the merchant."),
    browser: bool = typer.Option(True, help="Open the link in a browser if one is available."),
    wait: int = typer.Option(600, help="Seconds to wait for the merchant."),
) -> None:
    """Print a connect link, open it, and wait until the store is connected.

    The service (`shopkeys serve`) must be running to receive the platform's callback.
    """
    _check_provider(provider)
    _check_end_user(end_user)
    async with runtime() as rt:
        link = await rt.connect.start(provider, end_user_id=end_user)
        out.print(f"Open this link to connect a {provider} store:\n{link.url}", soft_wrap=True)
        if browser:
            webbrowser.open(link.url)
        deadline = time.monotonic() + wait
        with out.status("Waiting for the merchant to authorize...", spinner="dots"):
            while True:
                session = await rt.vault.sessions.get(link.session_id)
                if session is not None and session.connection_id:
                    connection = await rt.vault.connections.get(session.connection_id)
                    if connection is not None:
                        out.print(
                            f"[green]connected[/green] "
                            f"{escape(connection.account_name or '')} "
                            f"({escape(connection.account_id)}) as {connection.id}"
                        )
                        return
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                await _pause(min(POLL_INTERVAL, left))
        fail(
            f"no callback within {wait} s; is `shopkeys serve` running at {rt.settings.public_url}?"
        )


@command
async def list_(
    provider: str | None = typer.Option(None, help="Only this platform."),
    status: str | None = typer.Option(None, help="active, needs_reauth or revoked."),
    end_user: str | None = typer.Option(None, "--end-user", help="Only this end user."),
    limit: int = typer.Option(200, help="At most this many."),
    format: OutputFormat = typer.Option(OutputFormat.table, "--format", help="table or json."),
) -> None:
    """List connections and their refresh state (no tokens)."""
    if provider is not None:
        _check_provider(provider)
    if status is not None and status not in STATUSES:
        fail(f"unknown status {status!r}; choose one of {', '.join(STATUSES)}")
    async with runtime() as rt:
        rows = await rt.vault.connections.find(
            provider=provider, status=status, end_user_id=end_user, limit=limit
        )
        now = rt.clock()
    if format is OutputFormat.json:
        print(json.dumps([_connection_json(c) for c in rows], indent=2))
        return
    if not rows:
        out.print("No connections yet. Connect one with `shopkeys connect PLATFORM`.")
        return
    # The access expiry matters less than the next refresh (which comes before it) and the
    # grant's deadline (which shows it where it is the deadline): the first column to go.
    wide = out.width >= WIDE_LIST
    table = Table()
    # Ids are what people copy into the next command: never shortened, whatever the width.
    table.add_column("id", no_wrap=True, min_width=max(len(c.id) for c in rows))
    table.add_column("platform", no_wrap=True)
    table.add_column("account", overflow="fold", min_width=8)
    table.add_column("status", no_wrap=True)
    if wide:
        table.add_column("access expires")
    table.add_column("next refresh")
    table.add_column("failures")
    table.add_column("refresh expires")
    marked = False
    for c in rows:
        account = f"{c.account_name} ({c.account_id})" if c.account_name else c.account_id
        deadline, from_access = _grant_deadline(c, now)
        marked = marked or from_access
        cells = [c.id, c.provider, escape(account), c.status]
        if wide:
            cells.append(humanize_until(c.access_expires_at, now))
        cells += [_next_refresh(c, now), escape(_failures(c)), deadline]
        table.add_row(*cells)
    if marked:
        table.caption = f"{ACCESS_MARK}: no refresh token, the grant ends with the access token"
    out.print(table)


#: From this width on, `shopkeys list` also shows the access token's expiry.
WIDE_LIST = 140
#: How `shopkeys list` marks a deadline that is the access token's (no refresh token).
ACCESS_MARK = "(access)"


def _next_refresh(connection: Connection, now: datetime) -> str:
    """When the refresh engine tries next: `in 2h 5m`, `due`, `overdue 3h`, or `—`."""
    when = connection.next_refresh_at
    if connection.status != ACTIVE or not connection.refreshable or when is None:
        return "—"
    if connection.blocked_until is not None and connection.blocked_until > when:
        when = connection.blocked_until  # nobody asks the platform before the hold ends
    if when > now:
        return humanize_until(when, now)
    late = now - when
    # A sweep runs every half minute or so: later than a few minutes means none runs.
    return "due" if late < OVERDUE else f"overdue {humanize_until(now, when).removeprefix('in ')}"


#: A due connection not refreshed for this long is shown as overdue (no scheduler running?).
OVERDUE = timedelta(minutes=5)


def _failures(connection: Connection) -> str:
    if not connection.refresh_failures:
        return "—"
    kind = connection.last_error_kind
    return f"{connection.refresh_failures} {kind}" if kind else str(connection.refresh_failures)


def _grant_deadline(connection: Connection, now: datetime) -> tuple[str, bool]:
    """The refresh token's expiry; without a refresh token the access token's, marked."""
    if connection.refreshable:
        return humanize_until(connection.refresh_expires_at, now), False
    if connection.access_expires_at is None:
        return "never", False  # tokens that never expire (Ecwid): no deadline at all
    return f"{humanize_until(connection.access_expires_at, now)} {ACCESS_MARK}", True


def _connection_json(c: Connection) -> dict[str, Any]:
    """One connection for `shopkeys list --format json`: raw fields, ISO times, no token."""
    return {
        "id": c.id,
        "provider": c.provider,
        "account_id": c.account_id,
        "account_name": c.account_name,
        "end_user_id": c.end_user_id,
        "status": c.status,
        "refreshable": c.refreshable,
        "access_expires_at": iso(c.access_expires_at),
        "refresh_expires_at": iso(c.refresh_expires_at),
        "next_refresh_at": iso(c.next_refresh_at),
        "last_refreshed_at": iso(c.last_refreshed_at),
        "blocked_until": iso(c.blocked_until),
        "refresh_failures": c.refresh_failures,
        "last_error_kind": c.last_error_kind,
        "last_error": redact(c.last_error) if c.last_error else None,
        "connected_at": iso(c.connected_at),
        "created_at": iso(c.created_at),
        "updated_at": iso(c.updated_at),
    }


@command
async def show(connection_id: str = typer.Argument(...)) -> None:
    """Show one connection (no tokens) and its recent events."""
    async with runtime() as rt:
        connection = await rt.vault.connections.get(connection_id)
        if connection is None:
            fail(f"no connection {connection_id}")
        events = await rt.vault.events.recent(connection_id, limit=10)
        now = rt.clock()
    table = Table(show_header=False)
    table.add_column(style="bold")
    table.add_column()
    for label, value in (
        ("id", connection.id),
        ("platform", connection.provider),
        ("account", f"{connection.account_name or ''} ({connection.account_id})"),
        ("end user", connection.end_user_id or ""),
        ("status", connection.status),
        ("access expires", humanize_until(connection.access_expires_at, now)),
        ("refresh expires", humanize_until(connection.refresh_expires_at, now)),
        ("scopes", " ".join(connection.scopes)),
        ("shops", ", ".join(str(s.get("name") or s.get("id")) for s in connection.shops)),
        ("version", str(connection.version)),
        ("last error", connection.last_error or ""),
    ):
        table.add_row(label, escape(value))
    out.print(table)
    for event in events:
        out.print(f"{event.created_at:%Y-%m-%d %H:%M:%S} {event.kind}")


@command
async def token(
    connection_id: str = typer.Argument(...),
    format: TokenFormat = typer.Option(TokenFormat.raw, "--format", help="raw, json or env."),
) -> None:
    """Print a valid access token, refreshing it first if it is about to expire."""
    async with runtime() as rt:
        try:
            fresh = await rt.tokens.fresh_token(connection_id)
        except ConnectionUnusable as exc:
            fail(str(exc))
    if format is TokenFormat.raw:
        print(fresh.access_token)
    elif format is TokenFormat.json:
        print(json.dumps(fresh.to_json()))
    else:
        print(f"{fresh.provider.upper()}_ACCESS_TOKEN={fresh.access_token}")


@command
async def claim(
    connection_id: str = typer.Argument(...),
    end_user: str | None = typer.Argument(
        None, help="Your id for the merchant; leave out with --release."
    ),
    release: bool = typer.Option(False, "--release", help="Leave it without an end user."),
    replace: bool = typer.Option(
        False, "--replace", help="Move it even if it belongs to another end user."
    ),
) -> None:
    """Give a connection to an end user (a store installed from an app market has none)."""
    if (end_user is None) == (not release):
        fail("give an end user id, or --release")
    _check_end_user(end_user)
    async with runtime() as rt:
        try:
            # Releasing names nobody to hand it to, so it is always an operator's deliberate act.
            connection = await rt.vault.connections.set_end_user(
                connection_id, end_user, force=replace or release
            )
        except EndUserConflict:
            fail(f"{connection_id} belongs to another end user; pass --replace to move it")
    if connection is None:
        fail(f"no connection {connection_id}")
    owner = escape(connection.end_user_id) if connection.end_user_id else "no end user"
    out.print(f"{connection.id} ({escape(connection.account_id)}) now belongs to {owner}")


@command
async def disconnect(
    connection_id: str = typer.Argument(...),
    yes: bool = typer.Option(False, "--yes", help="Do not ask."),
) -> None:
    """Delete a connection and its tokens."""
    if not yes:
        typer.confirm(f"Delete {connection_id} and its tokens?", abort=True)
    async with runtime() as rt:
        if await rt.vault.connections.delete(connection_id) is None:
            fail(f"no connection {connection_id}")
    out.print(f"deleted {connection_id}")


@command
async def import_(
    provider: str = typer.Argument(..., help="aliexpress, tiktok_shop, shopline or ecwid"),
    access_token: str = typer.Option(
        ...,
        prompt=True,
        hide_input=True,
        envvar="SHOPKEYS_IMPORT_ACCESS_TOKEN",
        help="Read from the prompt or SHOPKEYS_IMPORT_ACCESS_TOKEN, not the command line.",
    ),
    refresh_token: str | None = typer.Option(
        None,
        envvar="SHOPKEYS_IMPORT_REFRESH_TOKEN",
        help="Read from the prompt or SHOPKEYS_IMPORT_REFRESH_TOKEN, not the command line.",
    ),
    account_id: str | None = typer.Option(
        None, help="Account or store id (AliExpress seller id, Ecwid store id)."
    ),
    access_expires_at: datetime | None = typer.Option(
        None, help="When the access token expires (UTC)."
    ),
    refresh_expires_at: datetime | None = typer.Option(
        None, help="When the refresh token expires (UTC)."
    ),
    end_user: str | None = typer.Option(None, "--end-user"),
) -> None:
    """Import a token obtained elsewhere (AliExpress's Token Query Tool, another system)."""
    from datetime import UTC

    _check_provider(provider)
    _check_end_user(end_user)
    if refresh_token is None and sys.stdin.isatty():
        # Asked only at a terminal: a script with no refresh token (Ecwid has none) must not
        # block on a prompt; Click ignores an empty SHOPKEYS_IMPORT_REFRESH_TOKEN.
        refresh_token = typer.prompt(
            "Refresh token (empty if none)", default="", hide_input=True, show_default=False
        )

    def aware(value: datetime | None) -> datetime | None:
        return value.replace(tzinfo=UTC) if value and value.tzinfo is None else value

    request = TokenImport(
        provider=provider,
        access_token=access_token,
        refresh_token=refresh_token or None,
        access_expires_at=aware(access_expires_at),
        refresh_expires_at=aware(refresh_expires_at),
        account_id=account_id,
        end_user_id=end_user,
    )
    async with runtime() as rt:
        connection, created = await import_token(rt.vault, rt.providers, rt.http, request)
    out.print(f"{'imported' if created else 'updated'} {connection.id} ({connection.account_id})")
