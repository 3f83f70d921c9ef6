"""`shopkeys refresh`: one connection, every due one (a scheduler sweep), or all of them."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from shopkeys.cli.common import (
    OutputFormat,
    command,
    database_problem,
    err,
    fail,
    humanize_until,
    iso,
    out,
    runtime,
)
from shopkeys.errors import AuthorizationDead, ProviderError, RateLimited
from shopkeys.redact import redact
from shopkeys.refresh import ConnectionNotFound, ConnectionUnusable, NotRefreshable
from shopkeys.refresh.outcomes import Outcome
from shopkeys.refresh.scheduler import SweepReport
from shopkeys.runtime import Runtime
from shopkeys.store.records import ACTIVE, REVOKED, Connection

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
            "access_expires_at": iso(r.access_expires_at),
        }
        for r in results
    ]
    return summary
