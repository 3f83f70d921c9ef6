"""Serve an ASGI app with uvicorn on a real loopback socket, in a background thread."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn
from starlette.types import ASGIApp

#: How long a server may take to start or to stop before the test fails.
DEADLINE_SECONDS = 20


def reserve_socket(host: str = "127.0.0.1") -> socket.socket:
    """A listening-ready socket on a free port, so a URL can be known before the app is built.

    Every connection accepted on it has Nagle's algorithm off. uvicorn writes an answer's head and
    its body separately; with Nagle on, the body waits for the client's delayed ACK of the head,
    about 40 ms a request on a kept-alive connection. Two things see to it: the option set on the
    listening socket (Linux copies it to each accepted connection), and the socket named as TCP,
    for which asyncio sets it on every connection it accepts (as it does for sockets it creates).
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((host, 0))
    return sock


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://{host}:{port}"


class _Server(uvicorn.Server):
    """uvicorn's server, stopped as soon as it is told to.

    uvicorn looks for the stop flag every 0.1 s, then sleeps another 0.1 s after asking open
    connections to close, and waits for them in steps of 0.1 s: about 0.2 s for every live test.
    Here the flag wakes the loop, and the wait for connections and requests to finish ends the
    moment they have. What happens on the way out is uvicorn's: listeners closed, connections asked
    to close once their answer is sent, running requests finished, then the lifespan shutdown.
    """

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake = asyncio.Event()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        self._loop = asyncio.get_running_loop()
        await super().startup(sockets=sockets)
        self.ready.set()

    async def main_loop(self) -> None:
        counter = 0
        # `on_tick` keeps uvicorn's once-a-second Date header and answers whether to stop.
        while not await self.on_tick(counter):
            counter = (counter + 1) % 864_000
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), 0.1)

    def stop(self) -> None:
        """From any thread."""
        self.should_exit = True
        if self._loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop has already ended
                self._loop.call_soon_threadsafe(self._wake.set)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        for server in self.servers:
            server.close()
        for connection in list(self.server_state.connections):
            connection.shutdown()
        while self.server_state.connections or self.server_state.tasks:
            await asyncio.sleep(0.001)
        for server in self.servers:
            await server.wait_closed()
        await self.lifespan.shutdown()


@contextmanager
def serve(app: ASGIApp, sock: socket.socket | None = None) -> Iterator[str]:
    """Run `app` until the block ends; yields its base URL."""
    sock = sock or reserve_socket()
    # No `log_config` and no `log_level`: uvicorn would otherwise reconfigure the process's logging
    # (its own handlers, its loggers made non-propagating, their levels) every time a test serves
    # something, and a later test that configures logging as `shopkeys serve` does would find
    # uvicorn's records going elsewhere.
    config = uvicorn.Config(app, lifespan="on", log_config=None, log_level=None)
    server = _Server(config)

    def run() -> None:
        try:
            server.run(sockets=[sock])
        finally:
            server.ready.set()  # a server that failed to start ends the wait below too

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    if not server.ready.wait(DEADLINE_SECONDS) or not server.started:
        server.stop()
        thread.join(DEADLINE_SECONDS)
        sock.close()
        raise RuntimeError("uvicorn did not start")
    try:
        yield url_of(sock)
    finally:
        server.stop()
        thread.join(DEADLINE_SECONDS)
        sock.close()
        if thread.is_alive():
            raise RuntimeError(f"uvicorn did not stop within {DEADLINE_SECONDS} s")
