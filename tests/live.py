"""Serve an ASGI app with uvicorn on a real loopback socket, in a background thread."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn
from starlette.types import ASGIApp


def reserve_socket(host: str = "127.0.0.1") -> socket.socket:
    """A listening-ready socket on a free port, so a URL can be known before the app is built."""
    # Named as TCP so asyncio turns Nagle's algorithm off on the accepted connections, as it
    # does for sockets it creates itself; otherwise each keep-alive request waits ~40 ms.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, 0))
    return sock


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://{host}:{port}"


@contextmanager
def serve(app: ASGIApp, sock: socket.socket | None = None) -> Iterator[str]:
    """Run `app` until the block ends; yields its base URL."""
    sock = sock or reserve_socket()
    config = uvicorn.Config(app, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    # Waiting for start-up is not timing a test: the loop ends as soon as the server listens.
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.005)
    try:
        yield url_of(sock)
    finally:
        server.should_exit = True
        thread.join(timeout=20)
        sock.close()
