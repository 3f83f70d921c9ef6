"""Benchmark of the refresh engine: `shopkeys worker` refreshing every due connection against the
sandbox, beside the sandbox's own ceiling measured in the same run.

    .venv/bin/python bench/refresh_sweep.py [--connections 20000] [--concurrency 16]
    .venv/bin/python bench/refresh_sweep.py --connections 2000          # a quick run

What it does, all on 127.0.0.1:
1. runs the real command `shopkeys sandbox --port P` in its own process (its defaults: uvloop,
   httptools, an access log line per request, written to a file), with no SHOPKEYS_ setting, so it
   accepts its demo app credentials;
2. the ceiling: asks the TikTok Shop simulator for `--connections` fresh grants in bulk
   (`POST /sandbox/tiktok_shop/_sandbox/grants`) and refreshes each once with a bare httpx2 loop,
   `--concurrency` requests at once, in a process of its own; it does so at the workers' total
   concurrency too (for the 2-worker run), and once more at the end, and keeps the higher of the
   two at `--concurrency`;
3. for each database (PostgreSQL, then SQLite unless `--skip-sqlite`): creates it, has the
   simulator issue `--connections` grants, and writes them as connections through the vault's own
   row writer (sealing and refresh planning as a connect does; in batches of 1,000 rows, where a
   connect takes one transaction each). Then for each run (PostgreSQL: 1 worker, then 2; SQLite:
   1), it starts `shopkeys worker` processes (SHOPKEYS_REFRESH_INTERVAL=0.25, the concurrency
   asked, the platform's base URL pointing at the sandbox), waits until they have started, marks
   every connection due (`next_refresh_at` in the past) and waits until every one is refreshed or
   has failed. The next run marks the same connections due again: the vault holds the tokens the
   last run rotated, as the simulator does;
4. prints for each: refreshes/s (from marking them due to the last refresh written), the share of
   the ceiling, CPU seconds per 1,000 refreshes (/proc) of the workers (or the bare loop), of the
   sandbox and of the PostgreSQL backends serving the bench's database, PostgreSQL transactions
   per refresh (pg_stat_database), and the duplicates: refresh requests the sandbox received
   beyond the connections refreshed, or connections with more than one `refreshed` event. Then
   PASS/MISS for the targets: 1 worker on PostgreSQL at least 50 % of the ceiling, 2 workers
   faster than 1, no duplicate; and a warning when other processes kept the cores busy. It exits
   0 either way: a benchmark, not a test.

`--profile-dir DIR` runs every worker under cProfile (CPU-time clock) and keeps the profiles.

The PostgreSQL database named by `--postgres-url` (default skbench on 127.0.0.1:55433) is dropped
and created again: its name must contain "bench".
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from multiprocessing.queues import Queue
from pathlib import Path
from typing import Any

from support import (
    HOST,
    Database,
    add_rows,
    clean_environment,
    connection_row,
    cpu_seconds,
    execute_raw,
    free_port,
    machine_busy_seconds,
    recreate_postgres,
    shopkeys_command,
    shopkeys_process,
    stop_process,
    wait_until_ok,
)

PLATFORM = "tiktok_shop"
REFRESH_PATH = "/api/v2/token/refresh"
DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:55433/skbench"
TARGET_RATIO = 0.50
#: Seconds between the workers' sweeps: short, so a run starts soon after the rows come due.
SWEEP_INTERVAL = 0.25
#: A run that makes no progress for this long is given up.
STALL_SECONDS = 60.0
#: Cores used by other processes during a run above which the report warns.
BUSY_MACHINE = 0.25
#: Grants asked of the sandbox per request, and rows written per transaction when seeding.
ISSUE_CHUNK = 5000
SEED_BATCH = 1000

#: `python -c PROFILED OUT SCRIPT ARGS...`: runs SCRIPT under cProfile with a CPU-time clock (the
#: default, wall time, counts the time a process waits for a core on a busy machine) and writes
#: the profile to OUT when it exits.
PROFILED = """
import cProfile, runpy, sys, time
out, script = sys.argv[1], sys.argv[2]
sys.argv = sys.argv[2:]
profile = cProfile.Profile(time.process_time)
try:
    profile.runcall(runpy.run_path, script, run_name="__main__")
except SystemExit:
    pass
finally:
    profile.dump_stats(out)
"""


# -- the sandbox ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sandbox:
    url: str
    pid: int

    @property
    def mount(self) -> str:
        return f"{self.url}/sandbox/{PLATFORM}"


@contextmanager
def run_sandbox(log_path: Path) -> Iterator[Sandbox]:
    """`shopkeys sandbox --port P` until the block ends, in a directory without a `.env`."""
    port = free_port()
    with shopkeys_process(
        "sandbox", port, clean_environment(), log_path, stop_timeout=30
    ) as process:
        sandbox = Sandbox(f"http://{HOST}:{port}", process.pid)
        wait_until_ok(
            f"{sandbox.mount}/_sandbox",
            process,
            lambda: f"the sandbox exited; see {log_path}",
            "the sandbox did not start",
        )
        yield sandbox


async def issue_grants(sandbox: Sandbox, prefix: str, count: int) -> list[dict[str, Any]]:
    """`count` fresh TikTok Shop grants (the token endpoint's `data`), issued in bulk."""
    import httpx2

    grants: list[dict[str, Any]] = []
    async with httpx2.AsyncClient(timeout=120) as http:
        for start in range(0, count, ISSUE_CHUNK):
            logins = [f"{prefix}-{i}" for i in range(start, min(start + ISSUE_CHUNK, count))]
            response = await http.post(f"{sandbox.mount}/_sandbox/grants", json={"logins": logins})
            response.raise_for_status()
            grants += response.json()["grants"]
    return grants


async def refresh_calls(sandbox: Sandbox) -> int:
    """How many refresh requests the simulator has received so far."""
    import httpx2

    async with httpx2.AsyncClient(timeout=30) as http:
        response = await http.get(f"{sandbox.mount}/_sandbox")
        calls: dict[str, int] = response.json().get("calls", {})
        return calls.get("refresh", 0)


def app_credentials() -> tuple[str, str]:
    from shopkeys.sandbox import DEMO_CREDENTIALS

    app_key, app_secret, _ = DEMO_CREDENTIALS[PLATFORM]
    return app_key, app_secret


# -- the ceiling: a bare httpx2 loop --------------------------------------------------------------


@dataclass
class Run:
    """One measured run: a bare loop or a set of workers."""

    name: str
    concurrency: str
    done: int = 0
    failed: int = 0
    seconds: float = 0.0
    client_cpu: float = 0.0
    sandbox_cpu: float = 0.0
    #: CPU seconds of the PostgreSQL backends serving the bench's database (None: SQLite).
    database_cpu: float | None = None
    #: PostgreSQL transactions in the bench's database, the bench's own left out (None: SQLite).
    transactions: int | None = None
    #: Cores used on average by every other process on the machine meanwhile (the bench, the
    #: database's background processes, and anything else running).
    other_cores: float = 0.0
    #: Refresh requests the sandbox received beyond the refreshes (None: not counted).
    extra_calls: int | None = None
    #: Connections with more than one `refreshed` event in the run (None: not counted).
    duplicated: int | None = None
    note: str = ""
    workers: list[float] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.done / self.seconds if self.seconds else 0.0

    def per_thousand(self, seconds: float) -> float:
        return 1000 * seconds / self.done if self.done else float("nan")


def bare_loop(
    url: str, params: dict[str, str], tokens: list[str], concurrency: int, out: Queue[Any]
) -> None:
    """The ceiling's process: each refresh token refreshed once, `concurrency` at once."""
    out.put(asyncio.run(_bare_loop(url, params, tokens, concurrency)))


async def _bare_loop(
    url: str, params: dict[str, str], tokens: list[str], concurrency: int
) -> tuple[int, int, float, float]:
    import httpx2

    ok = errors = 0
    pending = iter(tokens)
    # The product's client: httpx2's default pool, a timeout.
    async with httpx2.AsyncClient(timeout=30) as http:

        async def one() -> None:
            nonlocal ok, errors
            for token in pending:
                response = await http.get(url, params={**params, "refresh_token": token})
                if response.status_code == 200 and response.json().get("code") == 0:
                    ok += 1
                else:
                    errors += 1

        cpu, started = time.process_time(), time.perf_counter()
        await asyncio.gather(*(one() for _ in range(concurrency)))
        return ok, errors, time.perf_counter() - started, time.process_time() - cpu


async def measure_ceiling(sandbox: Sandbox, count: int, concurrency: int, name: str) -> Run:
    grants = await issue_grants(sandbox, f"ceiling-{secrets.token_hex(3)}", count)
    tokens = [grant["refresh_token"] for grant in grants]
    app_key, app_secret = app_credentials()
    params = {"app_key": app_key, "app_secret": app_secret, "grant_type": "refresh_token"}
    calls = await refresh_calls(sandbox)
    context = multiprocessing.get_context("spawn")
    out: Queue[Any] = context.Queue()
    process = context.Process(
        target=bare_loop, args=(sandbox.mount + REFRESH_PATH, params, tokens, concurrency, out)
    )
    sandbox_cpu, machine = cpu_seconds(sandbox.pid), machine_busy_seconds()
    process.start()
    ok, errors, seconds, client_cpu = await asyncio.to_thread(out.get)
    await asyncio.to_thread(process.join)
    sandbox_used = cpu_seconds(sandbox.pid) - sandbox_cpu
    machine_used = machine_busy_seconds() - machine
    run = Run(name, str(concurrency), done=ok, failed=errors, seconds=seconds)
    run.client_cpu, run.sandbox_cpu = client_cpu, sandbox_used
    # Includes the loop process's start-up (imports) besides the bench and the database.
    run.other_cores = max(0.0, machine_used - sandbox_used - client_cpu) / seconds
    run.extra_calls = (await refresh_calls(sandbox)) - calls - ok
    return run


# -- the databases --------------------------------------------------------------------------------


async def seed(database: Database, keys: Any, grants: Sequence[dict[str, Any]]) -> float:
    """Write one connection per grant through the vault's row writer; returns the seconds taken.

    The rows are what a connect writes (tokens sealed with the key ring, scopes, expiries, the
    next refresh planned by the vault's plan), many per transaction instead of one.
    """
    from shopkeys.credentials import AppCredentials
    from shopkeys.providers.base import Fields
    from shopkeys.providers.tiktok_shop import TikTokShop
    from shopkeys.store.database import create_engine, upgrade
    from shopkeys.store.vault import Vault

    started = time.perf_counter()
    engine = create_engine(database.url())
    try:
        await upgrade(engine)
        vault = Vault(engine, keys)
        provider = TikTokShop(AppCredentials(*app_credentials()))
        connections = vault.connections
        for start in range(0, len(grants), SEED_BATCH):
            rows = []
            now = datetime.now(UTC)
            for data in grants[start : start + SEED_BATCH]:
                grant = provider._grant(Fields(data, provider=PLATFORM, endpoint="token"), {})
                row = connection_row(
                    connections,
                    grant,
                    provider=PLATFORM,
                    end_user_id=f"user-{grant.account_id}",
                    connected_at=now,
                    now=now,
                )
                rows.append(row)
            await add_rows(connections, rows)
    finally:
        await engine.dispose()
    return time.perf_counter() - started


@dataclass
class Progress:
    refreshed: int
    failed: int
    last_refresh: datetime | None


class Probe:
    """The bench's own look at the database: marks connections due, counts what is done."""

    def __init__(self, database: Database) -> None:
        from shopkeys.store.database import create_engine

        self.postgres = database.configured_url is not None
        self.engine = create_engine(database.url())

    async def close(self) -> None:
        await self.engine.dispose()

    async def tidy(self) -> None:
        """VACUUM ANALYZE on PostgreSQL, so the last run's dead rows do not slow the next."""
        if not self.postgres:
            return
        await execute_raw(self.engine, "VACUUM ANALYZE connections", "VACUUM ANALYZE events")

    async def backends(self) -> dict[int, float] | None:
        """CPU seconds so far of each PostgreSQL backend serving this database but the probe's
        (None on SQLite). Backends on this machine only, read from /proc."""
        if not self.postgres:
            return None
        from sqlalchemy import text

        query = text(
            "SELECT pid FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        async with self.engine.connect() as connection:
            pids = list(await connection.scalars(query))
        return {pid: cpu_seconds(pid) for pid in pids}

    async def transactions(self) -> int | None:
        """Transactions committed and rolled back in this database so far (None on SQLite).

        PostgreSQL publishes these counters a moment late (within a second, and when a backend
        exits), so this waits that long first.
        """
        if not self.postgres:
            return None
        from sqlalchemy import text

        await asyncio.sleep(1.1)
        query = text(
            "SELECT xact_commit + xact_rollback FROM pg_stat_database "
            "WHERE datname = current_database()"
        )
        async with self.engine.connect() as connection:
            return int(await connection.scalar(query) or 0)

    async def last_event(self) -> int:
        from sqlalchemy import func, select

        from shopkeys.store.tables import EventRow

        async with self.engine.connect() as connection:
            return int((await connection.scalar(select(func.max(EventRow.id)))) or 0)

    async def mark_all_due(self) -> datetime:
        """Every connection due now and unleased; returns when that was committed."""
        from sqlalchemy import update

        from shopkeys.store.tables import ConnectionRow as C

        past = datetime.now(UTC) - timedelta(seconds=1)
        async with self.engine.begin() as connection:
            await connection.execute(
                update(C).values(next_refresh_at=past, lease_owner=None, lease_expires_at=None)
            )
        return datetime.now(UTC)

    async def progress(self, since: datetime) -> Progress:
        from sqlalchemy import func, or_, select

        from shopkeys.store.records import ACTIVE
        from shopkeys.store.tables import ConnectionRow as C

        refreshed = C.last_refreshed_at >= since
        failed = (~refreshed) & or_(C.refresh_failures > 0, C.status != ACTIVE)
        query = select(
            func.count().filter(refreshed),
            func.count().filter(failed),
            func.max(C.last_refreshed_at),
        )
        async with self.engine.connect() as connection:
            row = (await connection.execute(query)).one()
        last = row[2]
        if last is not None and last.tzinfo is None:
            last = last.replace(tzinfo=UTC)
        return Progress(int(row[0]), int(row[1]), last)

    async def duplicated(self, after_event: int) -> int:
        """Connections with more than one `refreshed` event after `after_event`."""
        from sqlalchemy import func, select

        from shopkeys.store.tables import EventRow as E

        twice = (
            select(E.connection_id)
            .where(E.id > after_event, E.kind == "refreshed")
            .group_by(E.connection_id)
            .having(func.count() > 1)
            .subquery()
        )
        async with self.engine.connect() as connection:
            return int(await connection.scalar(select(func.count()).select_from(twice)) or 0)


# -- the workers ----------------------------------------------------------------------------------


def worker_environment(
    database: Database, keys: str, sandbox: Sandbox, concurrency: int
) -> dict[str, str]:
    app_key, app_secret = app_credentials()
    prefix = f"SHOPKEYS_{PLATFORM.upper()}_"
    env = {
        **clean_environment(),
        "SHOPKEYS_DATA_DIR": str(database.data_dir),
        "SHOPKEYS_ENCRYPTION_KEYS": keys,
        "SHOPKEYS_REFRESH_INTERVAL": str(SWEEP_INTERVAL),
        "SHOPKEYS_REFRESH_CONCURRENCY": str(concurrency),
        prefix + "APP_KEY": app_key,
        prefix + "APP_SECRET": app_secret,
        prefix + "BASE_URL": sandbox.mount,
    }
    if database.configured_url is not None:
        env["SHOPKEYS_DATABASE_URL"] = database.configured_url
    return env


@contextmanager
def run_workers(
    count: int, env: dict[str, str], log_dir: Path, label: str, profile_dir: Path | None
) -> Iterator[list[subprocess.Popen[bytes]]]:
    """`count` `shopkeys worker` processes until the block ends (SIGTERM, as a deployment
    stops them); each one's output goes to a file in `log_dir`."""
    processes: list[subprocess.Popen[bytes]] = []
    try:
        for index in range(count):
            command = [*shopkeys_command(), "worker"]
            if profile_dir is not None:
                # The virtualenv's `shopkeys` script under cProfile, timed in CPU seconds.
                out = profile_dir / f"{label}-{index + 1}.prof"
                command = [sys.executable, "-c", PROFILED, str(out), *command]
            with (log_dir / f"{label}-{index + 1}.log").open("wb") as log:
                processes.append(
                    subprocess.Popen(
                        command,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        stdin=subprocess.DEVNULL,
                        env=env,
                        cwd=log_dir,
                    )
                )
        yield processes
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)
        for process in processes:
            stop_process(process)


async def wait_started(processes: list[subprocess.Popen[bytes]], log_dir: Path, label: str) -> None:
    """Until every worker has logged that it started (start-up is not measured)."""
    deadline = time.monotonic() + 120
    for index, process in enumerate(processes):
        log = log_dir / f"{label}-{index + 1}.log"
        while "started" not in log.read_text(errors="replace"):
            if process.poll() is not None:
                raise RuntimeError(f"a worker exited at start-up:\n{log.read_text()[-2000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"a worker did not start; see {log}")
            await asyncio.sleep(0.05)
    # Their first sweep (nothing due yet) is over by then.
    await asyncio.sleep(4 * SWEEP_INTERVAL)


async def measure_workers(
    name: str,
    count: int,
    database: Database,
    probe: Probe,
    keys: str,
    sandbox: Sandbox,
    options: Options,
    log_dir: Path,
) -> Run:
    label = f"{database.name.lower()}-{count}w"
    env = worker_environment(database, keys, sandbox, options.concurrency)
    total = options.connections
    await probe.tidy()
    after_event = await probe.last_event()
    calls = await refresh_calls(sandbox)
    with run_workers(count, env, log_dir, label, options.profile_dir) as processes:
        await wait_started(processes, log_dir, label)
        pids = [process.pid for process in processes]
        transactions = await probe.transactions()
        database_cpu = await probe.backends()
        workers_cpu = [cpu_seconds(pid) for pid in pids]
        sandbox_cpu, machine = cpu_seconds(sandbox.pid), machine_busy_seconds()
        timer = time.perf_counter()
        marked = await probe.mark_all_due()
        # The bench's own transactions in the database: marking, each poll, reading backends
        # and counters.
        polls = 4
        seen, last_change = -1, time.monotonic()
        while True:
            await asyncio.sleep(0.25)
            progress = await probe.progress(marked)
            polls += 1
            finished = progress.refreshed + progress.failed
            if finished >= total:
                break
            if finished != seen:
                seen, last_change = finished, time.monotonic()
            elif time.monotonic() - last_change > STALL_SECONDS:
                break
            if any(process.poll() is not None for process in processes):
                break
        workers_used = [
            cpu_seconds(pid) - before for pid, before in zip(pids, workers_cpu, strict=True)
        ]
        sandbox_used = cpu_seconds(sandbox.pid) - sandbox_cpu
        backends_after = await probe.backends()
        machine_used = machine_busy_seconds() - machine
        wall = time.perf_counter() - timer
    concurrency = f"{count}x{options.concurrency}" if count > 1 else str(options.concurrency)
    run = Run(name, concurrency, done=progress.refreshed, failed=progress.failed)
    if progress.last_refresh is not None:
        run.seconds = (progress.last_refresh - marked).total_seconds()
    run.workers = workers_used
    run.client_cpu = sum(workers_used)
    run.sandbox_cpu = sandbox_used
    if database_cpu is not None and backends_after is not None:
        run.database_cpu = sum(
            seconds - database_cpu.get(pid, 0.0) for pid, seconds in backends_after.items()
        )
    used = sandbox_used + run.client_cpu + (run.database_cpu or 0.0)
    run.other_cores = max(0.0, machine_used - used) / wall if wall else 0.0
    if transactions is not None:
        # Read once the workers are gone: an exiting backend publishes its counts.
        run.transactions = (await probe.transactions() or 0) - transactions - polls
    run.extra_calls = (await refresh_calls(sandbox)) - calls - progress.refreshed
    run.duplicated = await probe.duplicated(after_event)
    if finished < total:
        run.note = f"INCOMPLETE: {total - finished:,} neither refreshed nor failed"
    if options.profile_dir is not None:
        run.note = (run.note + "; " if run.note else "") + "under cProfile"
    return run


# -- the run --------------------------------------------------------------------------------------


@dataclass
class Options:
    connections: int
    concurrency: int
    workers: int
    skip_sqlite: bool
    postgres_url: str
    log_dir: Path | None
    profile_dir: Path | None


def parse_options(argv: list[str] | None) -> Options:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument(
        "--connections", type=int, default=20_000, help="connections due (default 20000)"
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        default=16,
        help="refreshes at once per worker (SHOPKEYS_REFRESH_CONCURRENCY), and the bare loop's",
    )
    parser.add_argument(
        "--workers", type=int, default=2, help="most workers on PostgreSQL (runs 1..N)"
    )
    parser.add_argument("--skip-sqlite", action="store_true", help="no SQLite run")
    parser.add_argument(
        "--postgres-url",
        default=DEFAULT_POSTGRES_URL,
        help="a database the bench may drop and create (its name must contain 'bench')",
    )
    parser.add_argument(
        "--log-dir", type=Path, help="keep the sandbox's and the workers' output here"
    )
    parser.add_argument(
        "--profile-dir",
        type=Path,
        help="run every worker under cProfile, writing DIR/<run>-<n>.prof (slows them down)",
    )
    args = parser.parse_args(argv)
    return Options(
        connections=args.connections,
        concurrency=args.concurrency,
        workers=max(1, args.workers),
        skip_sqlite=args.skip_sqlite,
        postgres_url=args.postgres_url,
        log_dir=args.log_dir,
        profile_dir=args.profile_dir,
    )


def main(argv: list[str] | None = None) -> int:
    options = parse_options(argv)
    with tempfile.TemporaryDirectory(prefix="shopkeys-refresh-bench-") as tmp:
        log_dir = (options.log_dir or Path(tmp) / "logs").absolute()
        log_dir.mkdir(parents=True, exist_ok=True)
        if options.profile_dir is not None:
            options.profile_dir = options.profile_dir.absolute()
            options.profile_dir.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        with run_sandbox(log_dir / "sandbox.log") as sandbox:
            print(f"Sandbox: `shopkeys sandbox` at {sandbox.url}, refreshing {PLATFORM}")
            runs, ceiling = asyncio.run(measure(options, sandbox, Path(tmp), log_dir))
        report(runs, ceiling, options)
        print(f"whole run: {time.perf_counter() - started:.0f} s")
        if options.log_dir is None:
            shutil.rmtree(log_dir, ignore_errors=True)
    return 0


async def measure(
    options: Options, sandbox: Sandbox, tmp: Path, log_dir: Path
) -> tuple[list[Run], Run]:
    from shopkeys.crypto import KeyRing, generate_key_ring

    count, concurrency = options.connections, options.concurrency
    keys = generate_key_ring().serialize()
    runs: list[Run] = []

    async def ceiling(at: int, name: str) -> Run:
        run = await measure_ceiling(sandbox, count, at, name)
        print(describe(run), flush=True)
        runs.append(run)
        return run

    first = await ceiling(concurrency, "bare httpx2 loop")
    if options.workers > 1:
        await ceiling(options.workers * concurrency, "bare httpx2 loop")

    databases = [Database("PostgreSQL", options.postgres_url, tmp / "pg-data")]
    if not options.skip_sqlite:
        databases.append(Database("SQLite", None, tmp / "sqlite-data"))
    for database in databases:
        database.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        if database.configured_url is not None:
            await recreate_postgres(database.configured_url)
        grants = await issue_grants(
            sandbox, f"{database.name.lower()}-{secrets.token_hex(3)}", count
        )
        seconds = await seed(database, KeyRing.parse(keys), grants)
        print(f"{database.name}: seeded {count:,} connections in {seconds:.1f} s", flush=True)
        probe = Probe(database)
        try:
            most = options.workers if database.configured_url is not None else 1
            for workers in range(1, most + 1):
                name = f"{workers} worker{'s' if workers > 1 else ''}, {database.name}"
                run = await measure_workers(
                    name, workers, database, probe, keys, sandbox, options, log_dir
                )
                print(describe(run), flush=True)
                runs.append(run)
        finally:
            await probe.close()

    last = await ceiling(concurrency, "bare httpx2 loop (again)")
    best = max(first, last, key=lambda r: r.rate)
    return runs, best


def describe(run: Run) -> str:
    parts = [
        f"  {run.name} (concurrency {run.concurrency}): {run.done:,} refreshes in "
        f"{run.seconds:.1f} s = {run.rate:,.0f}/s"
    ]
    if run.failed:
        parts.append(f"{run.failed:,} FAILED")
    if run.workers and len(run.workers) > 1:
        parts.append("worker CPU " + " + ".join(f"{w:.1f}" for w in run.workers) + " s")
    if run.note:
        parts.append(run.note)
    return ", ".join(parts)


def report(runs: list[Run], ceiling: Run, options: Options) -> None:
    print()
    print(
        f"{options.connections:,} connections due, TikTok Shop sandbox in its own process; "
        "CPU in seconds per 1,000 refreshes"
    )
    header = (
        f"{'':<32} {'conc':>5} {'refreshes':>9} {'seconds':>7} {'per s':>7} {'ceiling':>7} "
        f"{'CPU':>6} {'sandbox':>7} {'PG':>5} {'PG tx':>5} {'dup':>4}"
    )
    print(header)
    print("-" * len(header))
    for run in runs:
        share = f"{run.rate / ceiling.rate:.0%}" if ceiling.rate else "-"
        duplicates = "-"
        if run.extra_calls is not None:
            duplicates = str(max(run.extra_calls, run.duplicated or 0))
        database = f"{run.per_thousand(run.database_cpu):.2f}" if run.database_cpu else "-"
        transactions = (
            f"{run.transactions / run.done:.1f}" if run.transactions and run.done else "-"
        )
        print(
            f"{run.name:<32} {run.concurrency:>5} {run.done:>9,} {run.seconds:>7.1f} "
            f"{run.rate:>7,.0f} {share:>7} {run.per_thousand(run.client_cpu):>6.2f} "
            f"{run.per_thousand(run.sandbox_cpu):>7.2f} {database:>5} {transactions:>5} "
            f"{duplicates:>4}"
        )
    print(
        "CPU: the bare loop's own, or the workers' (all of them); sandbox: `shopkeys sandbox`; "
        "PG: the PostgreSQL backends of the bench's database; PG tx: its transactions per refresh."
    )
    print(
        "dup: refresh requests the sandbox received beyond the refreshes written (or, if more, "
        "connections with more than one `refreshed` event)."
    )
    print(
        f"ceiling: the faster bare loop at concurrency {ceiling.concurrency}, {ceiling.rate:,.0f}/s"
    )
    print()
    by_name = {run.name: run for run in runs}
    one = by_name.get("1 worker, PostgreSQL")
    two = by_name.get("2 workers, PostgreSQL")
    if one is not None and ceiling.rate:
        ratio = one.rate / ceiling.rate
        verdict = "PASS" if ratio >= TARGET_RATIO else "MISS"
        print(f"1 worker on PostgreSQL: {ratio:.0%} of the ceiling (target >= 50%): {verdict}")
    if one is not None and two is not None:
        verdict = "PASS" if two.rate > one.rate else "MISS"
        print(
            f"2 workers vs 1 on PostgreSQL: {two.rate:,.0f}/s vs {one.rate:,.0f}/s "
            f"({two.rate / one.rate if one.rate else 0:.2f}x; target > 1): {verdict}"
        )
    workers = [run for run in runs if run.duplicated is not None]
    duplicates = sum(max(run.extra_calls or 0, run.duplicated or 0) for run in workers)
    print(f"duplicate refreshes: {duplicates} (target 0): {'PASS' if duplicates == 0 else 'MISS'}")
    busy = max(run.other_cores for run in runs)
    if busy > BUSY_MACHINE:
        print(
            f"WARNING: other processes used up to {busy:.1f} cores during the runs (the bench "
            "itself takes a little): on a small machine that skews every figure."
        )
    failed = [run for run in runs if run.failed or run.note.startswith("INCOMPLETE")]
    if failed:
        print("note: some refreshes failed or did not happen; see the lines above")
    cores = os.cpu_count() or 1
    print(f"machine: {cores} cores; sandbox, workers and PostgreSQL share them")


if __name__ == "__main__":
    sys.exit(main())
