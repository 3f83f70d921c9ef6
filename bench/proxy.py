"""Benchmark of the signed API proxy: the latency `ANY /v1/proxy/{connection_id}/{path}` adds
to a platform call, against the same call sent to the platform directly.

    .venv/bin/python bench/proxy.py [--requests 1500] [--warmup 200] [--concurrency 8]

What it does, all on 127.0.0.1:
1. creates a fresh data directory (SQLite and the key file, shopkeys' defaults; or the database
   of `--postgres`, dropped and created) with one API key of scope admin;
2. runs the real command, `shopkeys serve --sandbox --host 127.0.0.1 --port P`, from the bench's
   virtualenv, with nothing configured but SHOPKEYS_DATA_DIR (and SHOPKEYS_DATABASE_URL),
   SHOPKEYS_SCHEDULER=false (no refresh sweep while it measures) and SHOPKEYS_PROXY_PACING=false
   (the proxy would hold Ecwid calls to 540 a minute, which measures the queue, not the proxy).
   Its default logging writes a request line per request to a file;
3. connects one store per platform measured as a merchant does: a connect session, the
   simulator's consent page pressed through (`shopkeys.sandbox.browser.press`), the callback;
   then reads each connection's token from `GET /v1/connections/{id}/token`;
4. sends, one at a time over one keep-alive httpx2 connection, each platform's call directly to
   its simulator (Ecwid: `GET /api/v3/{store}/profile` with the Bearer token; TikTok Shop:
   `GET /authorization/202309/shops` signed with the provider's `auth()`, prepared before the
   clock starts) and the same call through the proxy, in blocks of 50 of one path then 50 of
   the other (which comes first alternates), each block after one call that is not counted:
   `--warmup` calls of each path, then `--requests` measured ones. Both paths reach the same
   simulator in the same process, which does the same work for both (the answers are compared
   first). Ecwid's simulator allows 600 calls a minute per token, and shopkeys has no setting
   to raise it: the bench moves that simulator's clock a minute forward (`POST
   /sandbox/ecwid/_sandbox/clock`) every 500 Ecwid calls, outside the timings, so its window
   never fills;
5. with `--concurrency C` (default 8, 0 for none), the same on TikTok Shop with C connections
   at once, each sending direct and proxied calls in turn;
6. prints p50, p90 and p99 of each, the latency the proxy adds (proxy - direct) at p50 and p99,
   the server time of each from the product's request lines (the proxy's, and the simulator's
   own for both paths), the server's CPU per call, and PASS or MISS: under 2 ms added at p50. It
   exits 0 either way: a benchmark, not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
import os
import re
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from support import (
    Database,
    Served,
    bench_settings,
    cpu_seconds,
    machine_busy_seconds,
    percentile,
    recreate_postgres,
    request_lines,
    serve_product,
    shopkeys_command,
)

TARGET_ADDED_P50_MS = 2.0
#: Ecwid calls between two moves of its simulator's clock (it allows 600 a minute per token).
ECWID_CALLS_PER_WINDOW = 500
#: Calls of one path in a row (after one that is not counted).
BLOCK = 50
#: Cores used by other processes during a run above which the report warns.
BUSY_MACHINE = 0.15
PLATFORMS = ("ecwid", "tiktok_shop")
#: Each platform's call: its API path as an app names it through the proxy.
CALLS = {"ecwid": "/profile", "tiktok_shop": "/authorization/202309/shops"}


# -- setting up -----------------------------------------------------------------------------------


async def create_api_key(database: Database) -> str:
    """The fresh database, migrated, with one admin API key."""
    from shopkeys.runtime import open_runtime

    runtime = await open_runtime(bench_settings(database.data_dir, database.configured_url))
    try:
        _, api_key = await runtime.api_keys.create("bench-proxy", "admin")
    finally:
        await runtime.close()
    return api_key


@dataclass(frozen=True)
class Connected:
    provider: str
    connection_id: str
    account_id: str
    access_token: str


async def connect(url: str, api_key: str, provider: str) -> Connected:
    """One store connected as a merchant connects it, and its token as an app reads it."""
    import httpx2

    from shopkeys.sandbox.browser import press

    headers = {"Authorization": f"Bearer {api_key}"}
    async with httpx2.AsyncClient(base_url=url, timeout=30) as http:
        created = await http.post(
            "/v1/connect-sessions",
            json={"provider": provider, "end_user_id": f"bench-{provider}"},
            headers=headers,
        )
        if created.status_code != 201:
            raise RuntimeError(f"connect session for {provider}: {created.text}")
        callback = await press(http, created.json()["url"], login=f"bench-{provider}")
        done = await http.get(callback)
        found = re.search(r"<code>(con_[A-Za-z0-9_-]+)</code>", done.text)
        if done.status_code != 200 or found is None:
            raise RuntimeError(f"the {provider} callback answered {done.status_code}")
        token = await http.get(f"/v1/connections/{found.group(1)}/token", headers=headers)
        body = token.json()
    return Connected(provider, body["connection_id"], body["account_id"], body["access_token"])


def sandbox_provider(url: str, name: str) -> Any:
    """The provider client `shopkeys serve --sandbox` at `url` uses for `name`: the app's own
    signer for the direct calls."""
    from shopkeys.runtime import build_providers
    from shopkeys.sandbox import point_at_sandbox

    settings = bench_settings(Path(tempfile.gettempdir())).model_copy(update={"public_url": url})
    return build_providers(point_at_sandbox(settings))[name]


# -- the calls ------------------------------------------------------------------------------------


@dataclass
class Way:
    """One way of making a platform's call: its samples and how to prepare a request."""

    name: str
    prepare: Callable[[], Any]
    #: Whether an answer is the platform's success (TikTok Shop answers errors with HTTP 200).
    succeeded: Callable[[Any], bool]
    latencies_ms: list[float] = field(default_factory=list)
    server_cpu: float = 0.0
    errors: int = 0

    def p(self, q: float) -> float:
        return percentile(sorted(self.latencies_ms), q)


@dataclass
class PlatformCalls:
    connected: Connected
    direct: Way
    proxied: Way
    #: The path of the direct call and of the proxied one as the request log shows them.
    direct_prefix: str
    proxy_prefix: str


def platform_paths(client: Any, url: str, api_key: str, connected: Connected) -> PlatformCalls:
    from shopkeys.sandbox import base_urls

    provider = sandbox_provider(url, connected.provider)
    base = base_urls(url)[connected.provider]
    proxy_url = f"{url}/v1/proxy/{connected.connection_id}{CALLS[connected.provider]}"
    app_key = {"Authorization": f"Bearer {api_key}"}
    if connected.provider == "ecwid":
        direct_url = f"{base}/api/v3/{connected.account_id}/profile"
        bearer = {"Authorization": f"Bearer {connected.access_token}"}

        def direct() -> Any:
            return client.build_request("GET", direct_url, headers=bearer)

        def succeeded(response: Any) -> bool:
            return bool(response.status_code == 200)
    else:
        direct_url = f"{base}{CALLS[connected.provider]}"
        auth = provider.auth(connected.access_token)

        def direct() -> Any:
            # Signed before the clock starts: the proxy's signing is all the bench compares.
            return next(auth.auth_flow(client.build_request("GET", direct_url)))

        def succeeded(response: Any) -> bool:
            return bool(response.status_code == 200 and response.json().get("code") == 0)

    def proxied() -> Any:
        return client.build_request("GET", proxy_url, headers=app_key)

    return PlatformCalls(
        connected,
        Way("direct", direct, succeeded),
        Way("proxy", proxied, succeeded),
        direct_prefix=direct_url.removeprefix(url),
        proxy_prefix=f"/v1/proxy/{connected.connection_id}",
    )


def send(client: Any, path: Way, pid: int, record: bool) -> Any:
    """One call, timed from just before it is sent to the last byte of its answer."""
    request = path.prepare()
    before = cpu_seconds(pid)
    started = time.perf_counter()
    response = client.send(request)
    response.read()
    elapsed = time.perf_counter() - started
    if record:
        path.server_cpu += cpu_seconds(pid) - before
        path.latencies_ms.append(elapsed * 1000)
        path.errors += not path.succeeded(response)
    return response


@dataclass
class EcwidWindow:
    """Keeps Ecwid's simulator under its 600 calls a minute by moving its clock a minute on."""

    client: Any
    url: str
    calls: int = 0
    moves: int = 0

    def count(self) -> None:
        self.calls += 1
        if self.calls >= ECWID_CALLS_PER_WINDOW:
            moved = self.client.post(
                f"{self.url}/sandbox/ecwid/_sandbox/clock", json={"advance": 61}
            )
            moved.raise_for_status()
            self.calls = 0
            self.moves += 1


def check_same_answer(client: Any, platform: PlatformCalls, pid: int) -> None:
    """Both paths reach the same simulator endpoint, which answers both alike."""
    direct = send(client, platform.direct, pid, record=False)
    proxied = send(client, platform.proxied, pid, record=False)
    if direct.status_code != 200 or _comparable(direct.json()) != _comparable(proxied.json()):
        raise RuntimeError(
            f"{platform.connected.provider}: direct and proxied answers differ:\n"
            f"  {direct.status_code} {direct.text[:300]}\n  {proxied.status_code} "
            f"{proxied.text[:300]}"
        )


def _comparable(answer: Any) -> Any:
    """An answer without what differs from one call to the next (TikTok Shop's request id)."""
    return {k: v for k, v in answer.items() if k != "request_id"}


def measure_sequential(
    client: Any, served: Served, platforms: list[PlatformCalls], options: Options
) -> tuple[float, int, int]:
    """Warm-up calls, then measured ones, in blocks: `BLOCK` direct calls of a platform, then
    `BLOCK` proxied ones (the first of the two alternating from one block to the next), so a
    machine that speeds up or slows down does so for both alike. Each block starts with one call
    that is not counted: the proxy goes on working for a moment after its answer's last byte
    (closing the upstream answer, logging), and that work delays the next call, which counts
    for the proxy within its block, not for the direct calls after it. Returns the cores other
    processes used meanwhile, the log offset where the measured calls start, and how often
    Ecwid's clock was moved."""
    window = EcwidWindow(client, served.url)

    def rounds(count: int, record: bool) -> None:
        for number, start in enumerate(range(0, count, BLOCK)):
            size = min(BLOCK, count - start)
            for platform in platforms:
                pair = (platform.direct, platform.proxied)
                for path in pair if number % 2 == 0 else reversed(pair):
                    for index in range(size + 1):
                        send(client, path, served.pid, record and index > 0)
                        if platform.connected.provider == "ecwid":
                            window.count()

    rounds(options.warmup, record=False)
    time.sleep(0.2)
    _, offset = request_lines(served.log_path, 0)
    busy, own, server = machine_busy_seconds(), own_seconds(), cpu_seconds(served.pid)
    started = time.perf_counter()
    rounds(options.requests, record=True)
    wall = time.perf_counter() - started
    used = (own_seconds() - own) + (cpu_seconds(served.pid) - server)
    other = max(0.0, machine_busy_seconds() - busy - used) / wall
    return other, offset, window.moves


def own_seconds() -> float:
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@dataclass
class ServerTimes:
    """Server time (ms) from the product's request lines: the proxied calls', and the
    simulator's for the direct calls and for the proxy's own calls to it."""

    proxy: list[float] = field(default_factory=list)
    simulator: list[float] = field(default_factory=list)


def server_times(
    served: Served, offset: int, platforms: list[PlatformCalls]
) -> dict[str, ServerTimes]:
    time.sleep(0.3)
    lines, _ = request_lines(served.log_path, offset)
    times = {p.connected.provider: ServerTimes() for p in platforms}
    for line in lines:
        for platform in platforms:
            found = times[platform.connected.provider]
            if line.path.startswith(platform.proxy_prefix):
                found.proxy.append(line.ms)
            elif line.path.split("?")[0] == platform.direct_prefix:
                found.simulator.append(line.ms)
    return times


async def measure_concurrent(
    url: str, api_key: str, connected: Connected, concurrency: int, requests: int
) -> tuple[list[float], list[float], int]:
    """TikTok Shop's call, direct and proxied in turn, from `concurrency` connections at once:
    `requests` of each in all, after a warm-up of a tenth of that."""
    import httpx2

    from shopkeys.sandbox import base_urls

    provider = sandbox_provider(url, connected.provider)
    direct_url = f"{base_urls(url)[connected.provider]}{CALLS[connected.provider]}"
    proxy_url = f"{url}/v1/proxy/{connected.connection_id}{CALLS[connected.provider]}"
    auth = provider.auth(connected.access_token)
    limits = httpx2.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    direct: list[float] = []
    proxied: list[float] = []
    errors = 0
    async with httpx2.AsyncClient(timeout=30, limits=limits) as http:

        async def worker(share: int, record: bool) -> None:
            nonlocal errors
            for number in range(share):
                for kind in (0, 1) if number % 2 == 0 else (1, 0):
                    if kind == 0:
                        request = next(auth.auth_flow(http.build_request("GET", direct_url)))
                    else:
                        request = http.build_request(
                            "GET", proxy_url, headers={"Authorization": f"Bearer {api_key}"}
                        )
                    started = time.perf_counter()
                    response = await http.send(request)
                    await response.aread()
                    elapsed = (time.perf_counter() - started) * 1000
                    if record:
                        (direct if kind == 0 else proxied).append(elapsed)
                        errors += response.status_code != 200 or response.json().get("code") != 0

        share = max(1, requests // concurrency)
        await asyncio.gather(*(worker(max(1, share // 10), False) for _ in range(concurrency)))
        await asyncio.gather(*(worker(share, True) for _ in range(concurrency)))
    return direct, proxied, errors


# -- the run --------------------------------------------------------------------------------------


@dataclass
class Options:
    requests: int
    warmup: int
    concurrency: int
    platforms: list[str]
    postgres: str | None
    log: Path | None


def parse_options(argv: list[str] | None) -> Options:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument(
        "--requests", type=int, default=1500, help="measured calls of each path per platform"
    )
    parser.add_argument(
        "--warmup", type=int, default=200, help="calls of each path per platform before those"
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        default=8,
        help="connections at once for the concurrent run on TikTok Shop (0: none)",
    )
    parser.add_argument(
        "--platforms", default=",".join(PLATFORMS), help=f"among {', '.join(PLATFORMS)}"
    )
    parser.add_argument(
        "--postgres",
        metavar="URL",
        help="run on this PostgreSQL database instead of SQLite; it is dropped and created, "
        "and its name must contain 'bench'",
    )
    parser.add_argument("--log", type=Path, help="keep the output of `shopkeys serve` here")
    args = parser.parse_args(argv)
    platforms = [p.strip() for p in args.platforms.split(",") if p.strip()]
    unknown = set(platforms) - set(PLATFORMS)
    if unknown or not platforms:
        parser.error(f"--platforms takes {', '.join(PLATFORMS)}")
    return Options(
        requests=max(1, args.requests),
        warmup=max(0, args.warmup),
        concurrency=max(0, args.concurrency),
        platforms=platforms,
        postgres=args.postgres,
        log=args.log,
    )


def row(name: str, values: list[float], cpu_ms: float | None = None, errors: int = 0) -> str:
    ordered = sorted(values)
    line = (
        f"  {name:<42} {percentile(ordered, 0.5):7.2f} {percentile(ordered, 0.9):7.2f} "
        f"{percentile(ordered, 0.99):7.2f}"
    )
    if cpu_ms is not None:
        line += f" {cpu_ms:7.2f}"
    if errors:
        line += f"   {errors} ERRORS"
    return line


def main(argv: list[str] | None = None) -> int:
    import httpx2

    options = parse_options(argv)
    # The note that the fresh data directory got a key file: not news here.
    logging.getLogger("shopkeys").setLevel(logging.ERROR)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="shopkeys-proxy-bench-") as tmp:
        data_dir = Path(tmp) / "data"
        data_dir.mkdir(mode=0o700)
        if options.postgres:
            asyncio.run(recreate_postgres(options.postgres))
        database = Database(
            "PostgreSQL" if options.postgres else "SQLite", options.postgres, data_dir
        )
        api_key = asyncio.run(create_api_key(database))
        log_path = (options.log or Path(tmp) / "serve.log").absolute()
        print(
            f"`{' '.join([*shopkeys_command(), 'serve', '--sandbox'])}` on {database.name}, "
            "SHOPKEYS_SCHEDULER=false, SHOPKEYS_PROXY_PACING=false (no queue for Ecwid's "
            "600 calls a minute); 127.0.0.1 only",
            flush=True,
        )
        with serve_product(
            database, log_path, options=["--sandbox"], settings={"SHOPKEYS_PROXY_PACING": "false"}
        ) as served:
            connected = [
                asyncio.run(connect(served.url, api_key, name)) for name in options.platforms
            ]
            with httpx2.Client(timeout=30) as client:
                platforms = [platform_paths(client, served.url, api_key, c) for c in connected]
                for platform in platforms:
                    check_same_answer(client, platform, served.pid)
                print(
                    f"connected {', '.join(c.provider for c in connected)}; "
                    f"{options.warmup} warm-up calls, then {options.requests} measured calls of "
                    f"each path per platform, in blocks of {BLOCK}, one at a time on one "
                    "keep-alive connection",
                    flush=True,
                )
                other, offset, moves = measure_sequential(client, served, platforms, options)
            times = server_times(served, offset, platforms)
            concurrent = None
            tiktok = next((c for c in connected if c.provider == "tiktok_shop"), None)
            if options.concurrency and tiktok is not None:
                print(f"concurrent run: TikTok Shop, {options.concurrency} connections", flush=True)
                concurrent = asyncio.run(
                    measure_concurrent(
                        served.url, api_key, tiktok, options.concurrency, options.requests
                    )
                )
    report(platforms, times, concurrent, options, other, moves)
    print(f"whole run: {time.perf_counter() - started:.0f} s")
    return 0


def report(
    platforms: list[PlatformCalls],
    times: dict[str, ServerTimes],
    concurrent: tuple[list[float], list[float], int] | None,
    options: Options,
    other: float,
    moves: int,
) -> None:
    print()
    print(f"  {'client latency, ms':<42} {'p50':>7} {'p90':>7} {'p99':>7} {'CPU ms':>7}")
    for platform in platforms:
        name = platform.connected.provider
        for path in (platform.direct, platform.proxied):
            cpu = 1000 * path.server_cpu / len(path.latencies_ms) if path.latencies_ms else math.nan
            print(row(f"{name}, {path.name}", path.latencies_ms, cpu, path.errors))
        found = times[name]
        print(row(f"{name}, proxy, logged server time", found.proxy))
        print(row(f"{name}, simulator, logged server time", found.simulator))
    if concurrent is not None:
        direct, proxied, errors = concurrent
        label = f"tiktok_shop x{options.concurrency}"
        print(row(f"{label}, direct", direct))
        print(row(f"{label}, proxy", proxied, errors=errors))
    print(
        "  client latency: from the request's send to its answer's last byte, over loopback. "
        "CPU ms: `shopkeys serve`'s CPU per call (the simulator's work included). Logged "
        "server time: from the product's request lines, from the request's arrival to the app's "
        "return (for the proxy, after its last byte, once it has closed the upstream answer); "
        "the simulator's counts the direct calls and the proxy's own calls to it."
    )
    print()
    for platform in platforms:
        direct, proxied = platform.direct, platform.proxied
        added_p50 = proxied.p(0.5) - direct.p(0.5)
        added_p99 = proxied.p(0.99) - direct.p(0.99)
        verdict = "PASS" if added_p50 < TARGET_ADDED_P50_MS and not proxied.errors else "MISS"
        print(
            f"{platform.connected.provider}: the proxy adds {added_p50:.2f} ms at p50, "
            f"{added_p99:.2f} ms at p99 (target < {TARGET_ADDED_P50_MS:.0f} ms at p50): {verdict}"
        )
    if concurrent is not None:
        direct_c, proxied_c, _ = concurrent
        added = percentile(sorted(proxied_c), 0.5) - percentile(sorted(direct_c), 0.5)
        added_99 = percentile(sorted(proxied_c), 0.99) - percentile(sorted(direct_c), 0.99)
        print(
            f"tiktok_shop, {options.concurrency} at once: the proxy adds {added:.2f} ms at p50, "
            f"{added_99:.2f} ms at p99"
        )
    if moves:
        print(
            f"Ecwid's simulator clock moved a minute forward {moves} times (every "
            f"{ECWID_CALLS_PER_WINDOW} calls, outside the timings) to stay under its 600 calls a "
            "minute per token"
        )
    if other > BUSY_MACHINE:
        print(
            f"WARNING: other processes used {other:.0%} of a core while the calls were measured; "
            "on a small machine that skews every figure. Run it on a quiet machine."
        )
    if any(p.errors for platform in platforms for p in (platform.direct, platform.proxied)):
        print("note: some calls failed (see ERRORS above): the figures are not trustworthy")
    print(f"machine: {os.cpu_count() or 1} cores; the server and the bench share them")


if __name__ == "__main__":
    sys.exit(main())
