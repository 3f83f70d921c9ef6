"""Benchmark of `shopkeys serve` as shipped: the token hot path against a bare endpoint.

    .venv/bin/python bench/token_read.py [--duration 10] [--warmup 5] [--rounds 3]

What it does, all on 127.0.0.1:
1. seeds a fresh data directory (SQLite and the key file, shopkeys' defaults) with 10,000
   connections and one API key;
2. runs the real command, `shopkeys serve --host 127.0.0.1 --port P`, with SHOPKEYS_DATA_DIR
   pointing at it and nothing else configured: its default logging (one request line per
   request, redacted) and its own choice of server settings, its output going to a file. It
   fetches every token once (so the in-process cache is full), warms up, then drives the token
   route for random ids with 32 connections: wrk when it is installed, else an asyncio client in
   a separate process; then measures the p99 latency at half the throughput just reached (an
   open-loop, rate-limited asyncio client, latency counted from each request's scheduled send
   time);
3. serves a bare Starlette app with one route that returns a constant JSON body of the same size,
   on uvicorn's defaults as anyone would run it (asyncio loop, h11, pinned so that installing
   uvloop or httptools does not change it) with the access log off, and drives it the same way;
4. prints requests/s, p50 and p99 for both, the ratio, PASS/MISS against the targets (ratio >=
   60 %, p99 < 10 ms at half load), and how many lines the product logged, which shows its log
   was on. It exits 0 either way: a benchmark, not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import random
import re
import resource
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from multiprocessing.queues import Queue
from pathlib import Path
from typing import Any

from support import (
    HOST,
    PROVIDERS,
    bench_settings,
    clean_environment,
    free_port,
    machine_busy_seconds,
    percentile,
    process_cpu_seconds,
    shopkeys_command,
    shopkeys_process,
)

TOKEN_PATH = "/v1/connections/{connection_id}/token"
TARGET_RATIO = 0.60
TARGET_P99_MS = 10.0
#: Cores used by other processes during a run above which the report warns.
BUSY_MACHINE = 0.15
#: The bare endpoint's server: uvicorn's defaults, the loop and the HTTP parser pinned to what
#: they are without extras installed (`auto` would pick uvloop and httptools where present).
BARE_UVICORN: dict[str, Any] = {
    "host": HOST,
    "loop": "asyncio",
    "http": "h11",
    "access_log": False,
}


# -- seeding --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Seeded:
    data_dir: Path
    ids: list[str]
    api_key: str
    #: Encryption keys of a vault seeded before the key file was used (older manifests).
    keys: str | None = None


MANIFEST = "bench-seed.json"


def save_seeded(seeded: Seeded) -> None:
    """What `--data-dir` needs to reuse a seeded vault (bench data only: the API key included)."""
    path = seeded.data_dir / MANIFEST
    content = {"ids": seeded.ids, "api_key": seeded.api_key}
    path.touch(mode=0o600)
    path.write_text(json.dumps(content))


def load_seeded(data_dir: Path, count: int) -> Seeded | None:
    try:
        content = json.loads((data_dir / MANIFEST).read_text())
    except FileNotFoundError:
        return None
    if len(content["ids"]) != count:
        raise SystemExit(f"{data_dir} holds {len(content['ids'])} connections, not {count}")
    return Seeded(data_dir, content["ids"], content["api_key"], content.get("keys"))


async def seed(data_dir: Path, count: int, batch: int) -> Seeded:
    """`count` connections and one admin API key, written through the vault itself."""
    from shopkeys.grant import Account, Grant
    from shopkeys.runtime import open_runtime

    runtime = await open_runtime(bench_settings(data_dir))
    try:
        now = datetime.now(UTC)
        run = secrets.token_hex(3)
        ids: list[str] = []
        started = time.perf_counter()

        async def one(i: int) -> str:
            provider = PROVIDERS[i % len(PROVIDERS)]
            grant = Grant(
                provider=provider,
                access_token=secrets.token_urlsafe(48),
                refresh_token=secrets.token_urlsafe(48),
                # Far from expiry: the benchmark measures reads, never a refresh.
                access_expires_at=now + timedelta(days=30),
                refresh_expires_at=now + timedelta(days=365),
                scopes=["read"],
                account_id=f"bench-{run}-{i}",
                account_name=f"Bench store {i}",
            )
            account = Account(account_id=grant.account_id, name=grant.account_name)
            connection, _ = await runtime.vault.connections.upsert(
                grant, account, end_user_id=f"user-{i}"
            )
            return connection.id

        for start in range(0, count, batch):
            ids += await asyncio.gather(*(one(i) for i in range(start, min(start + batch, count))))
            done = len(ids)
            if done % 1000 < batch or done == count:
                rate = done / (time.perf_counter() - started)
                print(f"  seeded {done:>6}/{count} connections ({rate:,.0f}/s)", flush=True)
        _, api_key = await runtime.api_keys.create("bench", "read")
        return Seeded(data_dir=data_dir, ids=ids, api_key=api_key)
    finally:
        await runtime.close()


# -- the two servers ------------------------------------------------------------------------------


def bare_app(body: bytes) -> Any:
    """A Starlette app with the token route's path returning constants: the upper bound."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    async def token(request: Request) -> Response:
        return Response(body, media_type="application/json", headers={"cache-control": "no-store"})

    return Starlette(routes=[Route(TOKEN_PATH, token, methods=["GET"])])


def run_bare(port: int, body: bytes) -> None:
    """The bare server process's entry point."""
    import uvicorn

    uvicorn.run(bare_app(body), port=port, **BARE_UVICORN)


@dataclass(frozen=True)
class Served:
    url: str
    port: int
    pid: int


def wait_until_answering(
    name: str, url: str, probe_path: str, headers: dict[str, str], exited: Callable[[], bool]
) -> None:
    """Wait for start-up (not a measurement): until `probe_path` answers 200."""
    import httpx2

    deadline = time.monotonic() + 60
    with httpx2.Client(base_url=url, headers=headers, timeout=5) as client:
        while True:
            if exited():
                raise RuntimeError(f"the {name} server exited")
            try:
                response = client.get(probe_path)
            except httpx2.TransportError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the {name} server did not start") from None
                time.sleep(0.05)
                continue
            if response.status_code != 200:
                raise RuntimeError(f"{probe_path} answered {response.status_code}")
            return


def product_environment(seeded: Seeded, extra: dict[str, str]) -> dict[str, str]:
    """The bench's environment without any SHOPKEYS_ setting, plus the data directory: the
    product runs on its defaults unless `--serve-env` says otherwise."""
    env = clean_environment()
    env["SHOPKEYS_DATA_DIR"] = str(seeded.data_dir)
    if seeded.keys is not None:
        env["SHOPKEYS_ENCRYPTION_KEYS"] = seeded.keys
    return {**env, **extra}


@contextmanager
def serve_product(
    port: int,
    env: dict[str, str],
    log_path: Path,
    probe_path: str,
    headers: dict[str, str],
) -> Iterator[Served]:
    """Run `shopkeys serve` until the block ends, its stdout and stderr going to `log_path`."""
    with shopkeys_process("serve", port, env, log_path, stop_timeout=15) as process:
        url = f"http://{HOST}:{port}"
        wait_until_answering(
            "shopkeys", url, probe_path, headers, lambda: process.poll() is not None
        )
        yield Served(url=url, port=port, pid=process.pid)


@contextmanager
def serve_bare(port: int, body: bytes, probe_path: str) -> Iterator[Served]:
    """Run the bare endpoint in its own process until the block ends."""
    context = multiprocessing.get_context("spawn")
    process = context.Process(target=run_bare, args=(port, body), daemon=True)
    process.start()
    url = f"http://{HOST}:{port}"
    try:
        wait_until_answering("bare", url, probe_path, {}, lambda: not process.is_alive())
        assert process.pid is not None
        yield Served(url=url, port=port, pid=process.pid)
    finally:
        process.terminate()
        process.join(timeout=15)
        if process.is_alive():
            process.kill()
            process.join()


@dataclass(frozen=True)
class ProductLog:
    lines: int
    request_lines: int
    sample: str


def read_product_log(path: Path) -> ProductLog:
    """How many lines the product wrote, and how many of them are token requests."""
    lines = requests = 0
    sample = ""
    with path.open(encoding="utf-8", errors="replace") as log:
        for line in log:
            lines += 1
            if "/v1/connections/" in line and "/token" in line:
                requests += 1
                sample = sample or line.rstrip("\n")
    return ProductLog(lines, requests, sample)


def machine_seconds() -> float | None:
    """CPU time all processes on the machine have used (None where there is no /proc/stat)."""
    try:
        return machine_busy_seconds()
    except OSError:
        return None


def children_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


@dataclass
class CpuUse:
    """Cores used during a run: by the server, by the load generator, and by anything else.

    On a 2-core machine the server and the load generator take a core each; anything else
    running (a test suite, a build) makes the figures meaningless, so it is measured and shown.
    """

    server: float | None
    client: float
    other: float | None


@contextmanager
def watch_cpu(server_pid: int) -> Iterator[list[CpuUse]]:
    """Measures the block; the load generator must be a child process that ends inside it."""
    out: list[CpuUse] = []
    server, machine = process_cpu_seconds(server_pid), machine_seconds()
    children = children_seconds()
    started = time.perf_counter()
    yield out
    wall = time.perf_counter() - started
    server_after, machine_after = process_cpu_seconds(server_pid), machine_seconds()
    client = children_seconds() - children
    server_used = server_after - server if server is not None and server_after is not None else None
    other = None
    if server_used is not None and machine is not None and machine_after is not None:
        # Includes this process's own small share and the load generator's start-up.
        other = max(0.0, (machine_after - machine) - server_used - client) / wall
    server_share = server_used / wall if server_used is not None else None
    out.append(CpuUse(server_share, client / wall, other))


# -- load generators ------------------------------------------------------------------------------


@dataclass
class Result:
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    errors: int = 0
    generator: str = ""
    target_rate: float | None = None
    cpu: CpuUse | None = None

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


@dataclass(frozen=True)
class ClientSpec:
    port: int
    paths: list[str]
    api_key: str
    connections: int
    duration: float
    rate: float | None = None  # None: closed loop, as fast as the server answers


class HttpConnection:
    """A minimal keep-alive HTTP/1.1 client: GET only, Content-Length bodies only.

    httpx2 would spend more CPU per request than the server does, and the load generator must
    not be what is measured.
    """

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, port: int) -> HttpConnection:
        reader, writer = await asyncio.open_connection(HOST, port)
        return cls(reader, writer)

    async def get(self, request: bytes) -> int:
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        match = re.search(rb"(?i)\r\ncontent-length:\s*(\d+)", head)
        if match is None:
            raise RuntimeError("response without Content-Length")
        await self.reader.readexactly(int(match.group(1)))
        return status

    def close(self) -> None:
        self.writer.close()


def request_bytes(port: int, path: str, api_key: str) -> bytes:
    return (
        f"GET {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\n"
        f"Authorization: Bearer {api_key}\r\nAccept: */*\r\n\r\n"
    ).encode()


async def drive(spec: ClientSpec) -> tuple[list[float], int, float]:
    """Latencies (seconds), errors and elapsed time of one run of the asyncio client."""
    requests = [request_bytes(spec.port, path, spec.api_key) for path in spec.paths]
    connections = [await HttpConnection.open(spec.port) for _ in range(spec.connections)]
    latencies: list[float] = []
    errors = 0
    next_index = 0
    clock = time.perf_counter
    started = clock()
    deadline = started + spec.duration

    async def worker(connection: HttpConnection) -> None:
        nonlocal errors, next_index
        while True:
            if spec.rate is None:
                scheduled = clock()
                if scheduled >= deadline:
                    return
            else:
                # Open loop: request i is due at started + i / rate, whoever sends it, and its
                # latency counts from then (queueing included, as wrk2 does).
                scheduled = started + next_index / spec.rate
                next_index += 1
                if scheduled >= deadline:
                    return
                delay = scheduled - clock()
                if delay > 0:
                    await asyncio.sleep(delay)
            request = random.choice(requests)
            if await connection.get(request) != 200:
                errors += 1
            latencies.append(clock() - scheduled)

    try:
        await asyncio.gather(*(worker(c) for c in connections))
    finally:
        for connection in connections:
            connection.close()
    return latencies, errors, clock() - started


def client_process(spec: ClientSpec, results: Queue[Result]) -> None:
    """The asyncio client's process: runs `spec` and sends back a summary."""
    latencies, errors, elapsed = asyncio.run(drive(spec))
    latencies.sort()
    results.put(
        Result(
            requests=len(latencies),
            seconds=elapsed,
            p50_ms=percentile(latencies, 0.50) * 1000,
            p99_ms=percentile(latencies, 0.99) * 1000,
            errors=errors,
            generator="asyncio client" if spec.rate is None else "asyncio client, rate-limited",
            target_rate=spec.rate,
        )
    )


def run_client(spec: ClientSpec, served: Served) -> Result:
    context = multiprocessing.get_context("spawn")
    results: Queue[Result] = context.Queue()
    process = context.Process(target=client_process, args=(spec, results), daemon=True)
    with watch_cpu(served.pid) as cpu:
        process.start()
        result = results.get(timeout=spec.duration + 120)
        process.join(timeout=30)
    result.cpu = cpu[0]
    return result


WRK_SCRIPT = """
local ids = {%(ids)s}
wrk.headers["Authorization"] = "Bearer %(key)s"
local counter = 0

function setup(thread)
  counter = counter + 1
  thread:set("thread_number", counter)
end

function init(args)
  math.randomseed(os.time() * 100 + (thread_number or 0))
end

function request()
  return wrk.format("GET", "/v1/connections/" .. ids[math.random(#ids)] .. "/token")
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("BENCH-RESULT %%d %%d %%d %%d %%d %%d\\n", summary.requests,
    summary.duration, e.status, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
"""


def write_wrk_script(directory: Path, ids: list[str], api_key: str) -> Path:
    path = directory / "token_read.lua"
    path.write_text(WRK_SCRIPT % {"ids": ",".join(json.dumps(i) for i in ids), "key": api_key})
    return path


def run_wrk(
    wrk: str, script: Path, served: Served, connections: int, threads: int, duration: float
) -> Result:
    command = [
        wrk,
        f"-t{threads}",
        f"-c{connections}",
        f"-d{max(1, round(duration))}s",
        "--timeout",
        "10s",
        "-s",
        str(script),
        served.url,
    ]
    with watch_cpu(served.pid) as cpu:
        completed = subprocess.run(command, capture_output=True, text=True, check=False)
    match = re.search(r"BENCH-RESULT (\d+) (\d+) (\d+) (\d+) (\d+) (\d+)", completed.stdout)
    if completed.returncode != 0 or match is None:
        raise RuntimeError(f"wrk failed ({completed.returncode}): {completed.stderr.strip()}")
    requests, micros, status_errors, socket_errors, p50, p99 = (int(g) for g in match.groups())
    seconds = micros / 1e6
    return Result(
        requests=requests,
        seconds=seconds,
        p50_ms=p50 / 1000,
        p99_ms=p99 / 1000,
        errors=status_errors + socket_errors,
        generator=f"wrk -t{threads} -c{connections}",
        cpu=cpu[0],
    )


def find_wrk(install: bool) -> str | None:
    """wrk's path; as root (and unless told not to) installs Debian's package when it is missing."""
    found = shutil.which("wrk")
    if found or not install:
        return found
    if not hasattr(os, "geteuid") or os.geteuid() != 0 or shutil.which("apt-get") is None:
        print("wrk is not installed (apt-get install wrk as root); using the asyncio client")
        return None
    print("wrk is not installed; running: apt-get install -y wrk", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    command = ["apt-get", "install", "-y", "-q", "wrk"]
    if subprocess.run(command, env=env, capture_output=True, check=False).returncode != 0:
        print("  failed; running: apt-get update, then the install again", flush=True)
        subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True, check=False)
        subprocess.run(command, env=env, capture_output=True, check=False)
    found = shutil.which("wrk")
    print(f"  {'installed ' + found if found else 'not installed: using the asyncio client'}")
    return found


# -- the run --------------------------------------------------------------------------------------


@dataclass
class Options:
    seed_count: int
    batch: int
    connections: int
    threads: int
    duration: float
    warmup: float
    rounds: int
    generator: str
    install: bool
    data_dir: Path | None
    serve_env: dict[str, str]
    log: Path | None


def parse_options(argv: list[str] | None) -> Options:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--seed-count", type=int, default=10_000, help="connections to seed")
    # Sequential is fastest on SQLite: concurrent writers wait in SQLite's busy handler, which
    # sleeps in steps of milliseconds (measured: 215/s alone, 150/s with 4 at once).
    parser.add_argument("--batch", type=int, default=1, help="upserts gathered at once")
    parser.add_argument("--connections", type=int, default=32, help="concurrent HTTP connections")
    parser.add_argument("--threads", type=int, default=1, help="wrk threads (2 cores here)")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per measurement")
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds of warm-up load")
    parser.add_argument(
        "--rounds", type=int, default=3, help="alternating max-throughput rounds per target"
    )
    parser.add_argument(
        "--generator", choices=("auto", "wrk", "asyncio"), default="auto", help="load generator"
    )
    parser.add_argument(
        "--no-install", action="store_true", help="never apt-get install wrk when it is missing"
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        help="seed here once and reuse it on later runs (default: a fresh temporary directory)",
    )
    parser.add_argument(
        "--serve-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="set for `shopkeys serve`, e.g. SHOPKEYS_LOG_FORMAT=json (repeatable)",
    )
    parser.add_argument(
        "--log", type=Path, help="keep the output of `shopkeys serve` here (default: thrown away)"
    )
    args = parser.parse_args(argv)
    serve_env = {}
    for item in args.serve_env:
        name, separator, value = item.partition("=")
        if not separator:
            parser.error(f"--serve-env takes NAME=VALUE, not {item!r}")
        serve_env[name] = value
    return Options(
        seed_count=args.seed_count,
        batch=args.batch,
        connections=args.connections,
        threads=args.threads,
        duration=args.duration,
        warmup=args.warmup,
        rounds=max(1, args.rounds),
        generator=args.generator,
        install=not args.no_install,
        data_dir=args.data_dir,
        serve_env=serve_env,
        log=args.log,
    )


def describe(name: str, result: Result) -> str:
    parts = [
        f"{name:<22} {result.rate:>9,.0f} req/s   p50 {result.p50_ms:6.2f} ms   "
        f"p99 {result.p99_ms:6.2f} ms"
    ]
    details = [result.generator, f"{result.requests:,} requests in {result.seconds:.1f} s"]
    if result.cpu is not None:
        if result.cpu.server is not None:
            details.append(f"server CPU {result.cpu.server:.0%}")
        details.append(f"load generator CPU {result.cpu.client:.0%}")
        if result.cpu.other is not None:
            details.append(f"other processes {result.cpu.other:.0%}")
    if result.errors:
        details.append(f"{result.errors} ERRORS (non-200 or socket)")
    parts.append("    " + ", ".join(details))
    return "\n".join(parts)


def measure_max(
    options: Options, wrk: str | None, script: Path | None, served: Served, spec: ClientSpec
) -> Result:
    """A warm-up run, then the measured run, with wrk or the asyncio client."""
    for duration in (options.warmup, options.duration):
        if duration <= 0:
            continue
        if wrk is not None and script is not None:
            result = run_wrk(wrk, script, served, options.connections, options.threads, duration)
        else:
            timed = ClientSpec(**{**spec.__dict__, "duration": duration, "rate": None})
            result = run_client(timed, served)
    return result


def measure_at(rate: float, options: Options, served: Served, spec: ClientSpec) -> Result:
    timed = ClientSpec(**{**spec.__dict__, "duration": options.duration, "rate": rate})
    return run_client(timed, served)


def sweep(port: int, paths: list[str], api_key: str, connections: int) -> Result:
    """Every path once, in order: fills the token cache before the warm-up."""
    spec = ClientSpec(
        port=port,
        paths=paths,
        api_key=api_key,
        connections=connections,
        duration=0,
    )
    latencies, errors, elapsed = asyncio.run(_sweep(spec))
    latencies.sort()
    return Result(len(latencies), elapsed, percentile(latencies, 0.5) * 1000, 0.0, errors)


async def _sweep(spec: ClientSpec) -> tuple[list[float], int, float]:
    requests = [request_bytes(spec.port, path, spec.api_key) for path in spec.paths]
    connections = [await HttpConnection.open(spec.port) for _ in range(spec.connections)]
    latencies: list[float] = []
    errors = 0
    pending = iter(requests)
    started = time.perf_counter()

    async def worker(connection: HttpConnection) -> None:
        nonlocal errors
        for request in pending:
            sent = time.perf_counter()
            if await connection.get(request) != 200:
                errors += 1
            latencies.append(time.perf_counter() - sent)

    await asyncio.gather(*(worker(c) for c in connections))
    for connection in connections:
        connection.close()
    return latencies, errors, time.perf_counter() - started


def shipped_server_settings() -> str:
    """The uvicorn settings `shopkeys serve` runs with, as it reports them."""
    from shopkeys.cli.serve import uvicorn_options

    options = uvicorn_options(HOST, 0)
    shown = ("loop", "http", "access_log", "log_config")
    return ", ".join(f"{name}={options.get(name, 'auto')}" for name in shown)


def main(argv: list[str] | None = None) -> int:
    options = parse_options(argv)
    wrk = None if options.generator == "asyncio" else find_wrk(options.install)
    if options.generator == "wrk" and wrk is None:
        print("wrk was asked for and is not available")
        return 2
    with tempfile.TemporaryDirectory(prefix="shopkeys-bench-") as tmp:
        data_dir = options.data_dir or Path(tmp) / "data"
        seeded = load_seeded(data_dir, options.seed_count)
        if seeded is None:
            print(f"Seeding {options.seed_count:,} connections into SQLite ({data_dir}) ...")
            seeded = asyncio.run(seed(data_dir, options.seed_count, options.batch))
            if options.data_dir is not None:
                save_seeded(seeded)
        else:
            print(f"Reusing {len(seeded.ids):,} connections seeded in {data_dir}")
        paths = [TOKEN_PATH.format(connection_id=i) for i in seeded.ids]
        headers = {"Authorization": f"Bearer {seeded.api_key}"}
        script = write_wrk_script(Path(tmp), seeded.ids, seeded.api_key) if wrk else None
        generator = f"wrk ({wrk})" if wrk else "asyncio client (wrk not available)"
        print(f"Load generator: {generator}; {options.connections} connections, 127.0.0.1 only")

        def client_spec(port: int) -> ClientSpec:
            return ClientSpec(
                port=port,
                paths=paths,
                api_key=seeded.api_key,
                connections=options.connections,
                duration=options.duration,
            )

        log_path = (options.log or Path(tmp) / "serve.log").absolute()
        env = product_environment(seeded, options.serve_env)
        command = shopkeys_command()
        print(f"Token endpoint: `{' '.join([*command, 'serve'])}` ({shipped_server_settings()})")
        if options.serve_env:
            print(f"  with {' '.join(f'{k}={v}' for k, v in options.serve_env.items())}")
        product_port = free_port()
        with serve_product(product_port, env, log_path, paths[0], headers) as product:
            import httpx2

            body = httpx2.get(product.url + paths[0], headers=headers).content
            filled_at = time.monotonic()
            filled = sweep(product.port, paths, seeded.api_key, options.connections)
            print(
                f"  cache filled: {filled.requests:,} tokens in {filled.seconds:.1f} s "
                f"({filled.rate:,.0f}/s, {filled.errors} errors)",
                flush=True,
            )
            # A constant JSON body of the same number of bytes as a real token response.
            bare_body = json.dumps({"access_token": "", "padding": ""}).encode()
            bare_body = json.dumps(
                {"access_token": "", "padding": "p" * max(0, len(body) - len(bare_body))}
            ).encode()
            print(
                f"Bare Starlette endpoint ({len(bare_body)}-byte body, token's is {len(body)}; "
                f"uvicorn {', '.join(f'{k}={v}' for k, v in BARE_UVICORN.items() if k != 'host')})"
            )
            with serve_bare(free_port(), bare_body, paths[0]) as bare_server:
                # Both servers stay up and the rounds alternate between them, so a noisy
                # neighbour on a shared machine hits both alike; the medians are compared.
                tokens: list[Result] = []
                bares: list[Result] = []
                for round_number in range(1, options.rounds + 1):
                    tokens.append(
                        measure_max(options, wrk, script, product, client_spec(product.port))
                    )
                    print(describe(f"token, max (round {round_number})", tokens[-1]), flush=True)
                    bares.append(
                        measure_max(
                            options, wrk, script, bare_server, client_spec(bare_server.port)
                        )
                    )
                    print(describe(f"bare, max (round {round_number})", bares[-1]), flush=True)
                token = median_result(tokens)
                bare = median_result(bares)
                token_half = measure_at(token.rate / 2, options, product, client_spec(product.port))
                print(describe("token, half load", token_half), flush=True)
                bare_half = measure_at(
                    token.rate / 2, options, bare_server, client_spec(bare_server.port)
                )
                print(describe("bare, same rate", bare_half), flush=True)
            since_filled = time.monotonic() - filled_at
        # Read once the server has stopped, so everything it wrote is in the file.
        logged = read_product_log(log_path)

    report(token, token_half, bare, bare_half)
    sent = sum(r.requests for r in (*tokens, token_half)) + filled.requests
    print(
        f"product log: {logged.lines:,} lines, {logged.request_lines:,} of them token requests "
        f"(at least {sent:,} were measured)"
    )
    if logged.sample:
        print(f"  e.g. {logged.sample}")
    else:
        print("  WARNING: no request line: the product did not log its requests")
    cache_ttl = cache_ttl_seconds()
    if cache_ttl is not None and since_filled < cache_ttl:
        print(
            f"note: the token cache trusts an entry for {cache_ttl:.0f} s (refresh.CACHE_TTL) and "
            f"every token run ended {since_filled:.0f} s after the cache was filled, so no entry "
            f"expired: this is the all-hits figure. `--warmup {cache_ttl * 1.5:.0f}` measures "
            "the steady state, where entries expire and are read again from the vault."
        )
    return 0


def median_result(results: list[Result]) -> Result:
    """The round with the median throughput."""
    return sorted(results, key=lambda r: r.rate)[len(results) // 2]


def cache_ttl_seconds() -> float | None:
    from shopkeys import refresh

    ttl = getattr(refresh, "CACHE_TTL", None)
    return ttl.total_seconds() if isinstance(ttl, timedelta) else None


def report(token: Result, token_half: Result, bare: Result, bare_half: Result) -> None:
    ratio = token.rate / bare.rate if bare.rate else 0.0
    print()
    print(f"{'':<22} {'req/s':>9}   {'p50 ms':>6}   {'p99 ms':>6}")
    for name, result in (
        ("bare Starlette", bare),
        ("shopkeys serve, token", token),
        (f"token @ {token_half.target_rate or 0:,.0f}/s", token_half),
        (f"bare @ {bare_half.target_rate or 0:,.0f}/s", bare_half),
    ):
        print(f"{name:<22} {result.rate:>9,.0f}   {result.p50_ms:6.2f}   {result.p99_ms:6.2f}")
    print()
    print(
        f"ratio token/bare: {ratio:.1%}  (target >= {TARGET_RATIO:.0%}): "
        f"{'PASS' if ratio >= TARGET_RATIO else 'MISS'}"
    )
    print(
        f"p99 at half load: {token_half.p99_ms:.2f} ms  (target < {TARGET_P99_MS:.0f} ms): "
        f"{'PASS' if token_half.p99_ms < TARGET_P99_MS else 'MISS'}"
    )
    if token_half.target_rate and token_half.rate < 0.95 * token_half.target_rate:
        print(
            f"note: the rate-limited client reached {token_half.rate:,.0f}/s of "
            f"{token_half.target_rate:,.0f}/s asked"
        )
    busy = [r.cpu.other for r in (token, token_half, bare, bare_half) if r.cpu and r.cpu.other]
    if busy and max(busy) > BUSY_MACHINE:
        print(
            f"WARNING: other processes used up to {max(busy):.0%} of a core during the runs; "
            "on a small machine that skews every figure. Run it again on a quiet machine."
        )
    failed = [r for r in (token, token_half, bare, bare_half) if r.errors]
    if failed:
        print("note: some requests failed (see ERRORS above); the figures are not trustworthy")


if __name__ == "__main__":
    sys.exit(main())
