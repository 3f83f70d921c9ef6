"""Benchmark of the operators' dashboard: `GET /` of `shopkeys serve` as shipped, with 10,000
connections and 100,000 events, against the same server's sign-in page.

    .venv/bin/python bench/dashboard.py [--requests 30] [--warmup 5] [--skip-postgres]

What it does, all on 127.0.0.1, for SQLite (shopkeys' default) and then PostgreSQL:
1. seeds a fresh database: `--connections` connections written with the vault's own row writer
   (tokens sealed with the key ring, 1,000 rows per transaction), a few hundred of them needing
   attention (needs re-authorization, revoked, failing refreshes, re-authorization due), then
   `--events` events over the last 30 days (mostly `refreshed`, some `refresh_failed`,
   `connected`, `needs_reauth`) with SQLAlchemy core inserts, and one API key of scope admin. On
   PostgreSQL the database of `--postgres-url` (its name must contain "bench") is dropped and
   created, and VACUUM ANALYZE runs once the rows are in, as autovacuum would do after such a
   load; SQLite has no such thing and gets none. Then `sync`, so that the kernel does not write
   the load out while the pages are measured;
2. runs the real command, `shopkeys serve --host 127.0.0.1 --port P`, from the bench's
   virtualenv, with nothing configured but SHOPKEYS_DATA_DIR (and SHOPKEYS_DATABASE_URL), and
   SHOPKEYS_SCHEDULER=false so that no refresh writes to the database while it is measured. It
   runs in a directory without a `.env` file, with its default logging: a request line per
   request on stderr, which goes to a file;
3. signs in as an operator does: `GET /signin` for the form's CSRF token and its cookie, then
   `POST /signin` with the API key, which answers 303 and the session cookie;
4. measures five pages, one request at a time over one keep-alive connection, in rounds that
   request each page once in turn (so a machine that speeds up or slows down does so for every
   page alike), `--warmup` rounds and then `--requests` measured ones: the sign-in page (the bare
   baseline: the same server, a template and no database read), the dashboard's first page, a
   filtered page (`status=attention&platform=tiktok_shop`), a search (`q=store 77`), and page
   50, reached by following the "Next page" links (`rel="next"`) from the first page;
5. prints for each the server time, read from the request line the product logged for it
   (`shopkeys.access GET / 200 12.34ms`: from the request's arrival in the app to its last
   byte sent), p50, p95 and max, the latency the client saw over loopback, the ratio to the
   sign-in page, and the CPU used per request by the server and by PostgreSQL (its backends
   and their parallel workers). Then PASS or MISS: p95 server time under 300 ms for the first
   page and the filtered page, on each database, and a warning when other processes used the
   cores meanwhile. It exits 0 either way: a benchmark, not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import html
import logging
import math
import os
import random
import re
import resource
import secrets
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from support import (
    PROVIDERS,
    Database,
    Logged,
    Served,
    add_rows,
    admin_connection,
    bench_settings,
    connection_row,
    cpu_seconds,
    execute_raw,
    machine_busy_seconds,
    percentile,
    proc_stat,
    recreate_postgres,
    request_lines,
    serve_product,
    shopkeys_command,
)

DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:55433/skbench_dash"
TARGET_P95_MS = 300.0
#: Rows per transaction when seeding connections (as refresh_sweep.py), and events per insert.
SEED_BATCH = 1000
EVENT_BATCH = 5000
#: How far back the seeded events go.
EVENT_DAYS = 30
#: The page that shows whether keyset pagination stays flat.
DEEP_PAGE = 50
#: Cores used by other processes during a run above which the report warns.
BUSY_MACHINE = 0.15
#: The event kinds seeded and their shares.
EVENT_MIX = (("refreshed", 0.85), ("refresh_failed", 0.08), ("connected", 0.05))
#: The remainder of the events (2 %) are `needs_reauth`.
SIGNIN = "/signin"
FIRST = "/"
FILTERED = "/?status=attention&platform=tiktok_shop"
SEARCH = "/?q=store+77"


# -- seeding --------------------------------------------------------------------------------------


@dataclass
class Seeded:
    api_key: str
    connections: int
    events: int
    attention: dict[str, int]
    seconds: float


def connection_kind(i: int) -> str:
    """What the i-th seeded connection needs: about 9 % need attention, of four kinds."""
    if i % 50 == 1:
        return "needs_reauth"
    if i % 50 == 2:
        return "revoked"
    if i % 25 == 3:
        return "failing"
    if i % 100 == 4:
        return "reauth_due"
    return "healthy"


async def seed(database: Database, connections: int, events: int) -> Seeded:
    """The connections through the vault's row writer, the events in bulk, one admin key."""
    from sqlalchemy import insert

    from shopkeys.grant import Grant
    from shopkeys.runtime import open_runtime
    from shopkeys.store.records import NEEDS_REAUTH, REVOKED
    from shopkeys.store.tables import EventRow

    started = time.perf_counter()
    runtime = await open_runtime(bench_settings(database.data_dir, database.configured_url))
    try:
        vault = runtime.vault
        writer = vault.connections
        rng = random.Random(20240601)
        now = datetime.now(UTC)
        ids: list[tuple[str, str]] = []
        attention: dict[str, int] = {}
        for start in range(0, connections, SEED_BATCH):
            rows = []
            for i in range(start, min(start + SEED_BATCH, connections)):
                provider = PROVIDERS[i % len(PROVIDERS)]
                created = now - timedelta(days=rng.uniform(1, 365))
                grant = Grant(
                    provider=provider,
                    access_token=secrets.token_urlsafe(48),
                    refresh_token=secrets.token_urlsafe(48),
                    access_expires_at=now + timedelta(hours=rng.uniform(1, 24)),
                    refresh_expires_at=now + timedelta(days=rng.uniform(30, 365)),
                    scopes=["read", "write"],
                    account_id=f"shop-{i:05d}",
                    account_name=f"Bench store {i}",
                )
                row = connection_row(
                    writer,
                    grant,
                    provider=provider,
                    end_user_id=f"user-{i}",
                    connected_at=created,
                    now=now,
                )
                row.last_refreshed_at = now - timedelta(hours=rng.uniform(0, 20))
                kind = connection_kind(i)
                attention[kind] = attention.get(kind, 0) + 1
                if kind == "needs_reauth":
                    row.status = NEEDS_REAUTH
                    row.refresh_failures = 1
                    row.last_error = "the refresh token was rejected"
                    row.last_error_kind = "needs_reauth"
                    row.next_refresh_at = None
                elif kind == "revoked":
                    row.status = REVOKED
                    row.next_refresh_at = None
                elif kind == "failing":
                    row.refresh_failures = rng.randint(1, 4)
                    row.last_error = "the platform answered 503"
                    row.last_error_kind = rng.choice(("temporary", "rate_limited"))
                elif kind == "reauth_due":
                    row.refresh_expires_at = now + timedelta(days=rng.uniform(1, 6))
                    row.reauth_notified_for = row.refresh_expires_at
                rows.append(row)
                ids.append((row.id, provider))
            await add_rows(writer, rows)

        table = EventRow.__table__
        times = sorted(now - timedelta(days=rng.uniform(0, EVENT_DAYS)) for _ in range(events))
        kinds = [kind for kind, _ in EVENT_MIX] + ["needs_reauth"]
        weights = [share for _, share in EVENT_MIX] + [1 - sum(s for _, s in EVENT_MIX)]
        chosen = rng.choices(kinds, weights=weights, k=events)
        for start in range(0, events, EVENT_BATCH):
            batch = []
            for n in range(start, min(start + EVENT_BATCH, events)):
                connection_id, provider = ids[rng.randrange(len(ids))]
                kind = chosen[n]
                detail: dict[str, Any]
                if kind == "refreshed":
                    detail = {"version": rng.randint(2, 400)}
                elif kind == "refresh_failed":
                    retry = times[n] + timedelta(minutes=5)
                    detail = {
                        "error": "the platform answered 503",
                        "kind": "temporary",
                        "retry_at": retry.isoformat(),
                    }
                elif kind == "connected":
                    detail = {"version": 1}
                else:
                    detail = {"error": "the refresh token was rejected", "kind": "needs_reauth"}
                batch.append(
                    {
                        "connection_id": connection_id,
                        "provider": provider,
                        "kind": kind,
                        "detail": detail,
                        "created_at": times[n],
                    }
                )
            async with vault.engine.begin() as connection:
                await connection.execute(insert(table), batch)

        if database.configured_url is not None:
            await execute_raw(vault.engine, "VACUUM ANALYZE")
        _, api_key = await runtime.api_keys.create("bench-operator", "admin")
    finally:
        await runtime.close()
    return Seeded(api_key, connections, events, attention, time.perf_counter() - started)


# -- the server -----------------------------------------------------------------------------------


_CSRF = re.compile(r'name="csrf" value="([^"]+)"')
_NEXT = re.compile(r'<a href="([^"]+)" rel="next">')
_ROW = re.compile(r'<a href="/connections/con_')


def sign_in(client: Any, api_key: str) -> None:
    """As a browser does: the form's CSRF token and cookie, then the key; 303 and a session."""
    form = client.get(SIGNIN)
    found = _CSRF.search(form.text)
    if form.status_code != 200 or found is None:
        raise RuntimeError(f"GET /signin answered {form.status_code} without a CSRF token")
    answer = client.post(
        SIGNIN, data={"csrf": html.unescape(found.group(1)), "api_key": api_key, "next": "/"}
    )
    if answer.status_code != 303 or "shopkeys_operator" not in client.cookies:
        raise RuntimeError(f"POST /signin answered {answer.status_code}, no session cookie")


def deep_page(client: Any, page: int) -> str:
    """The address of page `page`, by following the "Next page" links from the first."""
    path = FIRST
    for number in range(1, page):
        response = client.get(path)
        found = _NEXT.search(response.text)
        if response.status_code != 200 or found is None:
            raise RuntimeError(f"page {number} ({path}) has no next page")
        path = html.unescape(found.group(1))
    return path


# -- measuring ------------------------------------------------------------------------------------


def exited_children_seconds(pid: int) -> float:
    """User + system CPU time of the children a process has reaped: for PostgreSQL's
    postmaster, that of its parallel workers, which come and go within a query."""
    fields = proc_stat(pid)
    return (int(fields[13]) + int(fields[14])) / os.sysconf("SC_CLK_TCK") if fields else 0.0


def parent_of(pid: int) -> int | None:
    fields = proc_stat(pid)
    return int(fields[1]) if fields else None


def own_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class Backends:
    """Finds the PostgreSQL backends serving the bench's database (none on SQLite)."""

    def __init__(self, url: str | None) -> None:
        self.url = url

    def pids(self) -> list[int]:
        if self.url is None:
            return []
        return asyncio.run(self._pids())

    async def _pids(self) -> list[int]:
        from sqlalchemy.engine import make_url

        url = self.url or ""
        connection = await admin_connection(url)
        try:
            rows = await connection.fetch(
                "SELECT pid FROM pg_stat_activity "
                "WHERE datname = $1 AND backend_type = 'client backend'",
                make_url(url).database,
            )
        finally:
            await connection.close()
        return [row["pid"] for row in rows]


@dataclass(frozen=True)
class PostgresProcesses:
    """The PostgreSQL backends serving the bench's database, and their postmaster, whose
    reaped children are the parallel workers they started (none on SQLite)."""

    backends: list[int]
    postmaster: int | None

    def seconds(self) -> float:
        used = sum(cpu_seconds(pid) for pid in self.backends)
        if self.postmaster is not None:
            used += exited_children_seconds(self.postmaster)
        return used


@dataclass(frozen=True)
class Sample:
    """CPU seconds so far: the server's, the database's, the machine's, the bench's."""

    server: float
    database: float
    machine: float
    own: float

    @classmethod
    def take(cls, server_pid: int, database: PostgresProcesses) -> Sample:
        return cls(
            cpu_seconds(server_pid),
            database.seconds(),
            machine_busy_seconds(),
            own_seconds(),
        )


@dataclass
class Target:
    name: str
    path: str
    server_ms: list[float] = field(default_factory=list)
    client_ms: list[float] = field(default_factory=list)
    bytes: int = 0
    rows: int = 0
    #: CPU seconds over the measured requests: the server's and PostgreSQL's.
    server_cpu: float = 0.0
    database_cpu: float = 0.0
    errors: int = 0

    def p(self, q: float, client: bool = False) -> float:
        return percentile(sorted(self.client_ms if client else self.server_ms), q)

    def per_request_ms(self, seconds: float) -> float:
        return 1000 * seconds / len(self.client_ms) if self.client_ms else math.nan

    def get(self, client: Any, server_pid: int, database: PostgresProcesses) -> None:
        """One measured request, and the CPU the server and the database used meanwhile."""
        before = Sample.take(server_pid, database)
        sent = time.perf_counter()
        response = client.get(self.path)
        body = response.content
        elapsed = time.perf_counter() - sent
        after = Sample.take(server_pid, database)
        self.client_ms.append(elapsed * 1000)
        self.server_cpu += after.server - before.server
        self.database_cpu += after.database - before.database
        if response.status_code != 200:
            self.errors += 1
        self.bytes = len(body)
        self.rows = len(_ROW.findall(response.text))


def measure(
    client: Any, served: Served, backends: Backends, targets: list[Target], options: Options
) -> float:
    """`--warmup` then `--requests` rounds, each one GET of every target in turn, one at a time:
    a machine that speeds up or slows down during the run does so for every page alike. Each
    request's server time is read from its request line in the log. Returns the cores every
    other process (not the server, the database or the bench) used meanwhile."""
    from shopkeys.web.request_log import loggable_path

    logged = []
    for target in targets:
        parts = urlsplit(target.path)
        logged.append(loggable_path(parts.path, parts.query.encode()))
    # The line of the request before (written just after its response was sent) is in by now.
    time.sleep(0.2)
    _, offset = request_lines(served.log_path, 0)
    for _ in range(options.warmup):
        for target in targets:
            client.get(target.path)
    _, offset = wait_for_lines(served.log_path, offset, logged * options.warmup)
    # The connections the server's pool opened during the warm-up serve the measured requests.
    pids = backends.pids()
    database = PostgresProcesses(pids, parent_of(pids[0]) if pids else None)
    first, started = Sample.take(served.pid, database), time.perf_counter()
    for _ in range(options.requests):
        for target in targets:
            target.get(client, served.pid, database)
    last, wall = Sample.take(served.pid, database), time.perf_counter() - started
    used = (last.server - first.server) + (last.database - first.database) + (last.own - first.own)
    lines, _ = wait_for_lines(served.log_path, offset, logged * options.requests)
    for index, line in enumerate(lines):
        target = targets[index % len(targets)]
        target.server_ms.append(line.ms)
        target.errors += line.status != 200
    return max(0.0, last.machine - first.machine - used) / wall


def wait_for_lines(log_path: Path, offset: int, expected: list[str]) -> tuple[list[Logged], int]:
    """The next request lines after `offset`, once written (a request's line is written just
    after its response is sent): one for each path of `expected`, in that order."""
    lines: list[Logged] = []
    deadline = time.monotonic() + 10
    while len(lines) < len(expected):
        more, offset = request_lines(log_path, offset)
        lines += more
        if len(lines) >= len(expected):
            break
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {len(lines)} of {len(expected)} request lines in {log_path}")
        time.sleep(0.01)
    paths = [line.path for line in lines]
    if paths != expected:
        wrong = [
            (seen, wanted) for seen, wanted in zip(paths, expected, strict=False) if seen != wanted
        ]
        raise RuntimeError(
            f"unexpected request lines (logged, sent): {wrong[:3]}, {len(paths)} lines"
        )
    return lines, offset


# -- the run --------------------------------------------------------------------------------------


@dataclass
class Options:
    connections: int
    events: int
    requests: int
    warmup: int
    skip_sqlite: bool
    skip_postgres: bool
    postgres_url: str
    log_dir: Path | None


def parse_options(argv: list[str] | None) -> Options:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--connections", type=int, default=10_000, help="connections to seed")
    parser.add_argument("--events", type=int, default=100_000, help="events to seed")
    parser.add_argument("--requests", type=int, default=30, help="measured requests per page")
    parser.add_argument("--warmup", type=int, default=5, help="requests per page before those")
    parser.add_argument("--skip-sqlite", action="store_true", help="no SQLite run")
    parser.add_argument("--skip-postgres", action="store_true", help="no PostgreSQL run")
    parser.add_argument(
        "--postgres-url",
        default=DEFAULT_POSTGRES_URL,
        help="a database the bench may drop and create (its name must contain 'bench')",
    )
    parser.add_argument("--log-dir", type=Path, help="keep the output of `shopkeys serve` here")
    args = parser.parse_args(argv)
    if args.connections < DEEP_PAGE * 50 + 1:
        parser.error(f"--connections must be more than {DEEP_PAGE * 50} to reach page {DEEP_PAGE}")
    return Options(
        connections=args.connections,
        events=args.events,
        requests=max(1, args.requests),
        warmup=max(0, args.warmup),
        skip_sqlite=args.skip_sqlite,
        skip_postgres=args.skip_postgres,
        postgres_url=args.postgres_url,
        log_dir=args.log_dir,
    )


def postgres_reachable(url: str) -> str | None:
    """None when the server of `url` answers, else why not."""
    import asyncpg

    async def probe() -> None:
        connection = await admin_connection(url, timeout=5)
        await connection.close()

    try:
        asyncio.run(probe())
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


@dataclass
class DatabaseRun:
    database: Database
    seeded: Seeded
    targets: list[Target]
    #: Cores used by other processes while the pages were measured.
    other_cores: float


def run_database(database: Database, options: Options, log_dir: Path) -> DatabaseRun:
    import httpx2

    database.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    if database.configured_url is not None:
        asyncio.run(recreate_postgres(database.configured_url))
    print(
        f"{database.name}: seeding {options.connections:,} connections and "
        f"{options.events:,} events ...",
        flush=True,
    )
    seeded = asyncio.run(seed(database, options.connections, options.events))
    # The load left dirty pages in the kernel's cache (PostgreSQL's files or SQLite's): written
    # out now, not by the kernel's flusher threads while the pages are measured.
    os.sync()
    needing = sum(n for kind, n in seeded.attention.items() if kind != "healthy")
    print(
        f"  seeded in {seeded.seconds:.1f} s; {needing:,} connections need attention "
        f"({', '.join(f'{k} {n}' for k, n in sorted(seeded.attention.items()) if k != 'healthy')})",
        flush=True,
    )
    log_path = (log_dir / f"serve-{database.name.lower()}.log").absolute()
    backends = Backends(database.configured_url)
    with (
        serve_product(database, log_path, ready_path=SIGNIN) as served,
        httpx2.Client(base_url=served.url, timeout=60) as client,
    ):
        sign_in(client, seeded.api_key)
        deep = deep_page(client, DEEP_PAGE)
        targets = [
            Target("sign-in page (bare)", SIGNIN),
            Target("dashboard, first page", FIRST),
            Target("filtered page", FILTERED),
            Target("search", SEARCH),
            Target(f"page {DEEP_PAGE} (cursor)", deep),
        ]
        other = measure(client, served, backends, targets, options)
        for target in targets:
            print(f"  {describe(target)}", flush=True)
        print(f"  other processes meanwhile: {other:.2f} cores", flush=True)
    return DatabaseRun(database, seeded, targets, other)


def describe(target: Target) -> str:
    parts = [
        f"{target.name:<22} server p50 {target.p(0.5):7.2f} ms  p95 {target.p(0.95):7.2f} ms"
        f"  client p50 {target.p(0.5, client=True):7.2f} ms"
    ]
    if target.path != SIGNIN:
        parts.append(f"{target.rows} rows")
    parts.append(f"{target.bytes / 1024:.0f} KiB")
    if target.errors:
        parts.append(f"{target.errors} ERRORS")
    return ", ".join(parts)


def main(argv: list[str] | None = None) -> int:
    options = parse_options(argv)
    # The seeding's own note that it made a key file in the fresh data directory: not news here.
    logging.getLogger("shopkeys").setLevel(logging.ERROR)
    started = time.perf_counter()
    runs: list[DatabaseRun] = []
    with tempfile.TemporaryDirectory(prefix="shopkeys-dashboard-bench-") as tmp:
        log_dir = (options.log_dir or Path(tmp) / "logs").absolute()
        log_dir.mkdir(parents=True, exist_ok=True)
        print(
            f"`{' '.join([*shopkeys_command(), 'serve'])}`, SHOPKEYS_SCHEDULER=false; "
            f"{options.warmup} warm-up and {options.requests} measured requests per page, "
            "one at a time, 127.0.0.1 only"
        )
        databases = []
        if not options.skip_sqlite:
            databases.append(Database("SQLite", None, Path(tmp) / "sqlite-data"))
        if not options.skip_postgres:
            why = postgres_reachable(options.postgres_url)
            if why is None:
                databases.append(Database("PostgreSQL", options.postgres_url, Path(tmp) / "pg"))
            else:
                print(f"PostgreSQL not reachable ({why}): skipped (--postgres-url)")
        for database in databases:
            runs.append(run_database(database, options, log_dir))
    report(runs, options)
    print(f"whole run: {time.perf_counter() - started:.0f} s")
    return 0


def report(runs: list[DatabaseRun], options: Options) -> None:
    print()
    print(
        f"{options.connections:,} connections, {options.events:,} events; server time from "
        f"the product's request log, client time over loopback; {options.requests} requests each"
    )
    header = (
        f"{'':<34} {'p50 ms':>7} {'p95 ms':>7} {'max ms':>7} {'client':>7} {'x bare':>7} "
        f"{'CPU ms':>7} {'PG ms':>6} {'KiB':>5} {'rows':>4}"
    )
    print(header)
    print("-" * len(header))
    for run in runs:
        bare = run.targets[0].p(0.5)
        postgres = run.database.configured_url is not None
        for target in run.targets:
            ratio = f"{target.p(0.5) / bare:.1f}" if bare else "-"
            server_cpu = target.per_request_ms(target.server_cpu)
            database_cpu = f"{target.per_request_ms(target.database_cpu):.2f}" if postgres else "-"
            print(
                f"{run.database.name + ', ' + target.name:<34} {target.p(0.5):>7.2f} "
                f"{target.p(0.95):>7.2f} {max(target.server_ms, default=math.nan):>7.2f} "
                f"{target.p(0.5, client=True):>7.2f} {ratio:>7} "
                f"{server_cpu:>7.2f} {database_cpu:>6} "
                f"{target.bytes / 1024:>5.0f} "
                f"{target.rows if target.path != SIGNIN else '-':>4}"
            )
    print(
        "p50/p95/max: server time (request line); client: p50 seen by the client; x bare: p50 "
        "over the sign-in page's p50; CPU ms / PG ms: CPU per request of `shopkeys serve` / of "
        "PostgreSQL's backends and their parallel workers."
    )
    print()
    for run in runs:
        first, filtered, deep = run.targets[1], run.targets[2], run.targets[4]
        for target in (first, filtered):
            p95 = target.p(0.95)
            verdict = "PASS" if p95 < TARGET_P95_MS and not target.errors else "MISS"
            print(
                f"{run.database.name}, {target.name}: p95 server time {p95:.1f} ms "
                f"(target < {TARGET_P95_MS:.0f} ms): {verdict}"
            )
        if first.p(0.5):
            print(
                f"{run.database.name}, page {DEEP_PAGE} / first page (p50): "
                f"{deep.p(0.5) / first.p(0.5):.2f}x"
            )
    targets = [t for run in runs for t in run.targets]
    busy = max((run.other_cores for run in runs), default=0.0)
    if busy > BUSY_MACHINE:
        print(
            f"WARNING: other processes used {busy:.0%} of a core while the pages were measured; "
            "on a small machine that skews every figure. Run it on a quiet machine."
        )
    if any(t.errors for t in targets):
        print("note: some requests did not answer 200 (see ERRORS above): figures untrustworthy")
    print(f"machine: {os.cpu_count() or 1} cores; server, client and PostgreSQL share them")


if __name__ == "__main__":
    sys.exit(main())
