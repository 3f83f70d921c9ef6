"""Commands about connections: connect, list, show, token, refresh, claim, disconnect, import."""

from __future__ import annotations

import asyncio
import json
import sys
import time
import webbrowser
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from shopkeys.cli.common import (
    command,
    database_problem,
    err,
    fail,
    humanize_until,
    out,
    runtime,
)
from shopkeys.errors import AuthorizationDead, ProviderError, RateLimited
from shopkeys.importing import TokenImport, import_token
from shopkeys.platform import Platform
from shopkeys.redact import redact
from shopkeys.refresh import ConnectionNotFound, ConnectionUnusable, NotRefreshable
from shopkeys.refresh.outcomes import Outcome
from shopkeys.refresh.scheduler import SweepReport
from shopkeys.runtime import Runtime
from shopkeys.store.connections import EndUserConflict
from shopkeys.store.records import ACTIVE, REVOKED, STATUSES, Connection

#: Seconds between looks at the database while `connect` waits (tests make it shorter).
POLL_INTERVAL = 1.0


async def _pause(seconds: float) -> None:
    """The wait between polls (a seam for tests, which act as the merchant meanwhile)."""
    await asyncio.sleep(seconds)


class OutputFormat(StrEnum):
    table = "table"
    json = "json"


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


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


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
        "access_expires_at": _iso(c.access_expires_at),
        "refresh_expires_at": _iso(c.refresh_expires_at),
        "next_refresh_at": _iso(c.next_refresh_at),
        "last_refreshed_at": _iso(c.last_refreshed_at),
        "blocked_until": _iso(c.blocked_until),
        "refresh_failures": c.refresh_failures,
        "last_error_kind": c.last_error_kind,
        "last_error": redact(c.last_error) if c.last_error else None,
        "connected_at": _iso(c.connected_at),
        "created_at": _iso(c.created_at),
        "updated_at": _iso(c.updated_at),
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


#: How many connections `shopkeys refresh --all` refreshes at once.
ALL_CONCURRENCY = 8
#: How many connections `--all` reads per query while listing what to refresh.
PAGE = 1000

#: The outcomes in the summary's order, as it names them.
OUTCOME_LABELS: dict[Outcome, str] = {
    Outcome.REFRESHED: "refreshed",
    Outcome.JOINED: "joined",
    Outcome.SKIPPED: "skipped",
    Outcome.TEMPORARY_FAILURE: "temporary failure",
    Outcome.RATE_LIMITED: "rate limited",
    Outcome.NEEDS_REAUTH: "needs reauth",
}
#: The outcomes that make `shopkeys refresh` exit non-zero.
FAILED = frozenset({Outcome.TEMPORARY_FAILURE, Outcome.RATE_LIMITED, Outcome.NEEDS_REAUTH})


@dataclass(frozen=True, slots=True)
class Refreshed:
    """How one connection's refresh ended, and why, in words that hold no token."""

    connection_id: str
    outcome: Outcome
    detail: str | None = None
    access_expires_at: datetime | None = None


@command
async def refresh(
    connection_id: str | None = typer.Argument(None),
    due: bool = typer.Option(
        False, "--due", help="Refresh every connection due now, as the scheduler would."
    ),
    all_: bool = typer.Option(
        False, "--all", help="Refresh every active connection now, due or not."
    ),
    format: OutputFormat = typer.Option(
        OutputFormat.table, "--format", help="table or json (the summary as JSON)."
    ),
) -> None:
    """Refresh tokens now: one connection, those due (--due), or all of them (--all).

    Safe beside a running service: every refresh takes the connection's lease, as any instance
    does. Exits 1 when a refresh failed or a connection needs the merchant again.
    """
    chosen = (connection_id is not None) + due + all_
    if chosen != 1:
        what = "a connection id, --due or --all"
        fail(f"give one of {what}" if chosen == 0 else f"give only one of {what}")
    report: SweepReport | None = None
    async with runtime() as rt:
        try:
            if connection_id is not None:
                results = [await _refresh_one(rt, connection_id)]
            else:
                with _progress() as progress:
                    if due:
                        results, report = await _refresh_due(rt, progress)
                    else:
                        results = await _refresh_all(rt, progress)
        finally:
            # The refreshes in flight store what they got (a rotated refresh token) first.
            await rt.tokens.aclose()
        now = rt.clock()
    mode = "id" if connection_id is not None else "due" if due else "all"
    results.sort(key=lambda r: r.connection_id)
    _print_results(results, now, lines=format is OutputFormat.table)
    if format is OutputFormat.json:
        print(json.dumps(_summary_json(mode, results, report), indent=2))
    elif connection_id is None:
        out.print(_summary_table(mode, results, report))
    if any(r.outcome in FAILED for r in results):
        raise typer.Exit(1)


def _progress() -> Progress:
    """A progress bar on stderr, gone when done; nothing at all where stderr is no terminal."""
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=True,
        # Output on stdout (a summary piped to a file) must stay on stdout.
        redirect_stdout=False,
        redirect_stderr=False,
        disable=not err.is_terminal,
    )


async def _refresh_one(rt: Runtime, connection_id: str) -> Refreshed:
    """`shopkeys refresh ID`: a connection that cannot be refreshed is an error here."""
    try:
        return await _force(rt, connection_id)
    except ConnectionNotFound:
        fail(f"no connection {connection_id}")
    except NotRefreshable as exc:
        # The API answers 409 `not_refreshable` here: a refresh that did nothing.
        fail(f"{connection_id}: not refreshable: {exc}")
    except ConnectionUnusable as exc:
        fail(f"{connection_id}: {exc}")


async def _refresh_all(rt: Runtime, progress: Progress) -> list[Refreshed]:
    """Every active connection, forced, `ALL_CONCURRENCY` at once, each id once."""
    ids: list[str] = []
    after: str | None = None
    while True:
        page = await rt.vault.connections.find(status=ACTIVE, limit=PAGE, after=after)
        ids += [c.id for c in page]
        if len(page) < PAGE:
            break
        after = page[-1].id
    task = progress.add_task("refreshing", total=len(ids))
    results: list[Refreshed] = []
    # One shared iterator: each id is taken by one worker, so no connection is refreshed twice
    # at once (the token service would join them anyway).
    pending = iter(dict.fromkeys(ids))

    async def work() -> None:
        for connection_id in pending:
            results.append(await _one_of_all(rt, connection_id))
            progress.advance(task)

    await asyncio.gather(*(work() for _ in range(min(ALL_CONCURRENCY, len(ids)))))
    return results


async def _one_of_all(rt: Runtime, connection_id: str) -> Refreshed:
    """One connection of `--all`: what cannot be refreshed is skipped, with the reason."""
    try:
        return await _force(rt, connection_id)
    except ConnectionNotFound:
        return Refreshed(connection_id, Outcome.SKIPPED, "deleted meanwhile")
    except (NotRefreshable, ConnectionUnusable) as exc:
        return Refreshed(connection_id, Outcome.SKIPPED, redact(str(exc)))
    except Exception as exc:  # one connection's surprise must not end the run
        return Refreshed(connection_id, Outcome.TEMPORARY_FAILURE, database_problem(exc))


async def _force(rt: Runtime, connection_id: str) -> Refreshed:
    """Refresh one connection now, whatever its token's life, through the token service.

    Raises `ConnectionNotFound`, `NotRefreshable`, and `ConnectionUnusable` when its platform
    is not configured here; every other way it ends is an outcome.
    """
    try:
        fresh, outcome = await rt.tokens.refresh_with_outcome(connection_id)
    except AuthorizationDead as exc:
        return Refreshed(connection_id, Outcome.NEEDS_REAUTH, redact(str(exc)))
    except RateLimited as exc:
        return Refreshed(connection_id, Outcome.RATE_LIMITED, redact(str(exc)))
    except ProviderError as exc:
        return Refreshed(connection_id, Outcome.TEMPORARY_FAILURE, redact(str(exc)))
    except ConnectionUnusable as exc:
        connection = exc.connection
        if connection.status == ACTIVE and connection.provider not in rt.providers:
            raise
        if connection.status == REVOKED:
            return Refreshed(connection_id, Outcome.SKIPPED, redact(str(exc)))
        return Refreshed(connection_id, Outcome.NEEDS_REAUTH, redact(str(exc)))
    if outcome is Outcome.REFRESHED:
        return Refreshed(connection_id, outcome, access_expires_at=fresh.expires_at)
    if outcome in (Outcome.TEMPORARY_FAILURE, Outcome.RATE_LIMITED):
        # The refresh failed, and the stored token, which still works, was handed out.
        after = await rt.vault.connections.get(connection_id)
        error = redact(after.last_error) if after and after.last_error else "the refresh failed"
        still = humanize_until(fresh.expires_at, rt.clock())
        return Refreshed(connection_id, outcome, f"{error}; its access token still works ({still})")
    return Refreshed(
        connection_id,
        Outcome.JOINED,
        "its tokens were replaced meanwhile (a reconnect, or another refresh)",
        access_expires_at=fresh.expires_at,
    )


async def _refresh_due(rt: Runtime, progress: Progress) -> tuple[list[Refreshed], SweepReport]:
    """One scheduler sweep, as any instance runs it (leases taken, shared with the others)."""
    expected = await rt.vault.leases.count_due(providers=rt.tokens.providers)
    task = progress.add_task("refreshing due", total=expected)
    heard: list[tuple[str, Outcome]] = []

    def step(connection_id: str, outcome: Outcome) -> None:
        heard.append((connection_id, outcome))
        # The sweep first plans connections stored without a refresh time: it may find more.
        progress.update(task, completed=len(heard), total=max(expected, len(heard)))

    report = await rt.scheduler.sweep(progress=step)
    results = []
    for connection_id, outcome in heard:
        connection = await rt.vault.connections.get(connection_id)
        results.append(_due_result(connection_id, outcome, connection))
    return results, report


def _due_result(connection_id: str, outcome: Outcome, connection: Connection | None) -> Refreshed:
    """A sweep's outcome with the reason the connection's row gives (its stored error)."""
    if outcome is Outcome.REFRESHED:
        expires = connection.access_expires_at if connection else None
        return Refreshed(connection_id, outcome, access_expires_at=expires)
    if outcome is Outcome.JOINED:
        return Refreshed(connection_id, outcome, "refreshed by another caller meanwhile")
    if outcome is Outcome.SKIPPED:
        why = "no longer due, held back, or taken by another instance"
        return Refreshed(connection_id, outcome, why)
    error = connection.last_error if connection is not None else None
    return Refreshed(connection_id, outcome, redact(error) if error else None)


def _print_results(results: list[Refreshed], now: datetime, *, lines: bool) -> None:
    """A line per connection on stdout (`lines`), the failures as errors on stderr always."""
    for r in results:
        if r.outcome in FAILED:
            text = f"{r.connection_id}: {OUTCOME_LABELS[r.outcome]}"
            if r.detail:
                text += f": {r.detail}"
            err.print(f"[red]error:[/red] {escape(text)}", soft_wrap=True)
            continue
        if not lines:
            continue
        text = f"{r.connection_id}: {OUTCOME_LABELS[r.outcome]}"
        if r.outcome in (Outcome.REFRESHED, Outcome.JOINED) and r.access_expires_at is not None:
            text += f", access expires {humanize_until(r.access_expires_at, now)}"
        if r.detail:
            text += f", {r.detail}"
        out.print(escape(text), soft_wrap=True)


def _summary_table(mode: str, results: list[Refreshed], report: SweepReport | None) -> Table:
    counts = Counter(r.outcome for r in results)
    table = Table(title=f"refresh --{mode}")
    table.add_column("outcome")
    table.add_column("connections", justify="right")
    for outcome, label in OUTCOME_LABELS.items():
        style = "red" if outcome in FAILED and counts[outcome] else None
        table.add_row(label, str(counts[outcome]), style=style)
    if report is not None:
        table.add_section()
        table.add_row("planned (given a refresh time)", str(report.planned))
        table.add_row("ended (grant over, now needs_reauth)", str(report.ended))
        table.add_row("reauth_due notices sent", str(report.reauth_due))
    return table


def _summary_json(
    mode: str, results: list[Refreshed], report: SweepReport | None
) -> dict[str, Any]:
    counts = Counter(r.outcome for r in results)
    summary: dict[str, Any] = {
        "mode": mode,
        "outcomes": {outcome.value: counts[outcome] for outcome in OUTCOME_LABELS},
        "failed": any(r.outcome in FAILED for r in results),
    }
    if report is not None:
        summary.update(planned=report.planned, ended=report.ended, reauth_due=report.reauth_due)
    summary["connections"] = [
        {
            "id": r.connection_id,
            "outcome": r.outcome.value,
            "detail": r.detail,
            "access_expires_at": _iso(r.access_expires_at),
        }
        for r in results
    ]
    return summary


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
