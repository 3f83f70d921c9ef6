"""The live-socket harness itself (`tests/live.py`): Nagle off, and a stop that loses no answer."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx2
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from tests.live import DEADLINE_SECONDS, reserve_socket, serve


def test_connections_accepted_on_a_reserved_socket_have_nagle_off() -> None:
    """Otherwise every answer on a kept-alive connection waits ~40 ms for a delayed ACK."""
    listener = reserve_socket()
    listener.listen()
    with listener, socket.create_connection(listener.getsockname()[:2]):
        accepted, _ = listener.accept()
        with accepted:
            # Set by the kernel, copied from the listener...
            assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
            # ...and by asyncio, which sets it on accepted sockets named as TCP.
            assert accepted.proto == socket.IPPROTO_TCP


def test_a_request_running_when_the_block_ends_is_answered_before_the_app_shuts_down() -> None:
    entered, release = threading.Event(), threading.Event()
    happened: list[str] = []

    async def slow(request: Request) -> PlainTextResponse:
        entered.set()
        await asyncio.to_thread(release.wait, DEADLINE_SECONDS)
        happened.append("answered")
        return PlainTextResponse("done")

    @asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        yield
        happened.append("shut down")

    app = Starlette(routes=[Route("/slow", slow)], lifespan=lifespan)
    answers: list[httpx2.Response] = []
    with httpx2.Client(timeout=DEADLINE_SECONDS) as idle, serve(app) as url:
        assert idle.get(f"{url}/none").status_code == 404  # a kept-alive connection, left idle
        client = threading.Thread(target=lambda: answers.append(httpx2.get(f"{url}/slow")))
        client.start()
        assert entered.wait(DEADLINE_SECONDS)
        # Most likely the server is on its way out when the request is let go; either order
        # must give the same result.
        threading.Timer(0.05, release.set).start()
    client.join(DEADLINE_SECONDS)
    assert [a.text for a in answers] == ["done"]
    assert happened == ["answered", "shut down"]
