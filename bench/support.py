"""What the benchmarks here share: a free port, the `shopkeys` command and its processes,
shopkeys' settings and connection rows as the product writes them, the bench's PostgreSQL
database, CPU time from /proc, and percentiles.

The scripts run as `python bench/NAME.py`, so this directory comes first on `sys.path` (in the
processes they spawn too) and they import this module as `support`.
"""

from __future__ import annotations

import math
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

HOST = "127.0.0.1"
PROVIDERS = ("aliexpress", "tiktok_shop", "shopline", "ecwid")


# -- processes ------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def shopkeys_command() -> list[str]:
    """The `shopkeys` command of the Python running the bench (its virtualenv's script)."""
    script = Path(sys.executable).with_name("shopkeys")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from shopkeys.cli import main; main()"]


def clean_environment() -> dict[str, str]:
    """The bench's environment without any SHOPKEYS_ setting."""
    return {k: v for k, v in os.environ.items() if not k.startswith("SHOPKEYS_")}


def stop_process(process: subprocess.Popen[bytes], timeout: float = 30) -> None:
    """SIGTERM, as a deployment stops it; killed when it has not exited after `timeout` s."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextmanager
def shopkeys_process(
    subcommand: str,
    port: int,
    env: dict[str, str],
    log_path: Path,
    stop_timeout: float,
    options: Sequence[str] = (),
) -> Iterator[subprocess.Popen[bytes]]:
    """`shopkeys SUBCOMMAND --host 127.0.0.1 --port PORT [OPTIONS]` (`--sandbox`, say) until the
    block ends, its stdout and stderr going to `log_path`, in that file's directory."""
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [*shopkeys_command(), subcommand, "--host", HOST, "--port", str(port), *options],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            # No `.env` file is read from here: only the environment above configures it.
            cwd=log_path.parent,
        )
    try:
        yield process
    finally:
        stop_process(process, stop_timeout)


def wait_until_ok(
    url: str, process: subprocess.Popen[bytes], exited: Callable[[], str], slow: str
) -> None:
    """Start-up, not a measurement: until GET `url` answers 200. Raises RuntimeError(exited())
    when the process ends first, RuntimeError(slow) after 60 s."""
    import httpx2

    deadline = time.monotonic() + 60
    while True:
        if process.poll() is not None:
            raise RuntimeError(exited())
        try:
            if httpx2.get(url, timeout=5).status_code == 200:
                return
        except httpx2.TransportError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(slow)
        time.sleep(0.05)


# -- shopkeys' data -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Database:
    name: str
    #: SHOPKEYS_DATABASE_URL for the product's processes; None: SQLite in the data directory.
    configured_url: str | None
    data_dir: Path

    def url(self) -> Any:
        from shopkeys.store.database import database_url

        return database_url(self.configured_url, self.data_dir)


def bench_settings(data_dir: Path, database_url: str | None = None) -> Any:
    """shopkeys' defaults for `data_dir` (and the database, SQLite there when None), whatever
    the environment of the bench says."""
    from shopkeys.config import Settings

    return Settings(
        _env_file=None,
        data_dir=data_dir,
        database_url=database_url,
        encryption_keys=None,
        sandbox_api_key=None,
    )


def connection_row(
    writer: Any,
    grant: Any,
    *,
    provider: str,
    end_user_id: str,
    connected_at: datetime,
    now: datetime,
) -> Any:
    """An active connection's row as a connect writes it, through the vault's row writer
    (`vault.connections`): tokens sealed with its key ring, the next refresh planned."""
    from shopkeys.store.ids import new_id
    from shopkeys.store.records import ACTIVE
    from shopkeys.store.tables import ConnectionRow

    row = ConnectionRow(
        id=new_id("con"),
        provider=provider,
        account_id=grant.account_id,
        account_name=grant.account_name,
        end_user_id=end_user_id,
        version=1,
        status=ACTIVE,
        created_at=connected_at,
        updated_at=now,
        connected_at=connected_at,
        refresh_failures=0,
        shops=[],
    )
    writer._write_grant(row, grant)
    return row


async def add_rows(writer: Any, rows: list[Any]) -> None:
    """`rows` in one transaction of the row writer's storage."""
    async with writer._storage.sessions() as session, session.begin():
        session.add_all(rows)


async def execute_raw(engine: Any, *statements: str) -> None:
    """`statements` on the driver's own connection, outside a transaction (VACUUM's way)."""
    async with engine.connect() as connection:
        raw = await connection.get_raw_connection()
        driver: Any = raw.driver_connection
        for statement in statements:
            await driver.execute(statement)


# -- PostgreSQL -----------------------------------------------------------------------------------


async def admin_connection(url: str, **options: Any) -> Any:
    """An asyncpg connection to the `postgres` database of the server of `url`."""
    import asyncpg
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    return await asyncpg.connect(
        host=parsed.host,
        port=parsed.port,
        user=parsed.username,
        password=parsed.password,
        database="postgres",
        **options,
    )


async def recreate_postgres(url: str) -> None:
    """Drop and create the bench's database (its name must contain "bench")."""
    from sqlalchemy.engine import make_url

    name = make_url(url).database or ""
    if "bench" not in name:
        raise SystemExit(f"refusing to drop database {name!r}: its name must contain 'bench'")
    admin = await admin_connection(url)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()


# -- CPU time (Linux /proc) -----------------------------------------------------------------------


def proc_stat(pid: int) -> list[str] | None:
    """The fields of /proc/PID/stat after the command's name (`state` first); None when the
    process is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None


def process_cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process so far; None when it is gone."""
    fields = proc_stat(pid)
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK") if fields else None


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far; 0 when it is gone."""
    return process_cpu_seconds(pid) or 0.0


def machine_busy_seconds() -> float:
    """CPU time every process on the machine has used so far (/proc/stat, all cores)."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(f) for f in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


# -- figures --------------------------------------------------------------------------------------


def percentile(sorted_values: list[float], q: float) -> float:
    """The nearest-rank percentile of values sorted ascending (p95 of 30 is the 29th)."""
    if not sorted_values:
        return math.nan
    index = min(len(sorted_values) - 1, max(0, math.ceil(q * len(sorted_values)) - 1))
    return sorted_values[index]


# -- `shopkeys serve` as the benches run it -------------------------------------------------------


def product_environment(
    database: Database, settings: dict[str, str] | None = None
) -> dict[str, str]:
    """The bench's environment without any SHOPKEYS_ setting, plus the database, no scheduler
    (nothing but the bench's requests touches the database while it measures) and `settings`."""
    env = clean_environment()
    env["SHOPKEYS_DATA_DIR"] = str(database.data_dir)
    env["SHOPKEYS_SCHEDULER"] = "false"
    if database.configured_url is not None:
        env["SHOPKEYS_DATABASE_URL"] = database.configured_url
    env.update(settings or {})
    return env


@dataclass(frozen=True)
class Served:
    url: str
    pid: int
    log_path: Path


@contextmanager
def serve_product(
    database: Database,
    log_path: Path,
    *,
    ready_path: str = "/healthz",
    options: Sequence[str] = (),
    settings: dict[str, str] | None = None,
) -> Iterator[Served]:
    """`shopkeys serve` (with `options`) until the block ends, its output going to `log_path`;
    started once `ready_path` answers (start-up, not a measurement)."""
    port = free_port()
    env = product_environment(database, settings)
    with shopkeys_process(
        "serve", port, env, log_path, stop_timeout=15, options=options
    ) as process:
        url = f"http://{HOST}:{port}"
        wait_until_ok(
            url + ready_path,
            process,
            lambda: f"shopkeys serve exited:\n{log_path.read_text()[-2000:]}",
            "shopkeys serve did not start",
        )
        yield Served(url, process.pid, log_path)


_REQUEST_LINE = re.compile(r" shopkeys\.access GET (.+) (\d{3}) (\d+(?:\.\d+)?)ms(?: |$)")


@dataclass(frozen=True)
class Logged:
    path: str
    status: int
    ms: float


def request_lines(log_path: Path, offset: int) -> tuple[list[Logged], int]:
    """The request lines `shopkeys serve` logged after byte `offset`, and the new offset (the
    end of the last complete line)."""
    with log_path.open("rb") as log:
        log.seek(offset)
        data = log.read()
    complete = data[: data.rfind(b"\n") + 1]
    found = []
    for line in complete.decode("utf-8", errors="replace").splitlines():
        match = _REQUEST_LINE.search(line)
        if match:
            found.append(Logged(match.group(1), int(match.group(2)), float(match.group(3))))
    return found, offset + len(complete)
