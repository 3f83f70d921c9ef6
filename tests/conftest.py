"""Fixtures shared by the whole suite: one live sandbox for the session, reset for every test."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import httpx2
import pytest

from shopkeys.config import Settings
from shopkeys.providers import AppCredentials, Provider, get
from shopkeys.sandbox import Sandbox, build_sandbox
from shopkeys.sandbox.core import Simulator
from tests.live import serve

# The simulated apps' registered redirect URIs point here; tests read redirects, never follow them.
TEST_PUBLIC_URL = "http://shopkeys.test"


@dataclass
class LiveSandbox:
    """The four simulators served on a loopback socket."""

    url: str
    sandbox: Sandbox
    settings: Settings

    def base_url(self, provider: str) -> str:
        return f"{self.url}/sandbox/{provider}"

    def simulator(self, provider: str) -> Simulator:
        return self.sandbox.simulators[provider]

    def redirect_uri(self, provider: str) -> str:
        return self.settings.redirect_uri(provider)

    def provider(self, name: str) -> Provider:
        """The real provider client, pointed at its simulator and sharing the simulator's clock."""
        simulator = self.simulator(name)
        app = simulator.app
        credentials = AppCredentials(app.client_id, app.client_secret, service_id=app.service_id)
        return get(name)(credentials, base_url=self.base_url(name), clock=simulator.clock)


@pytest.fixture(scope="session")
def live_sandbox_server() -> Iterator[LiveSandbox]:
    settings = Settings(_env_file=None, public_url=TEST_PUBLIC_URL)  # type: ignore[call-arg]
    sandbox = build_sandbox(settings)
    with serve(sandbox.app) as url:
        yield LiveSandbox(url=url, sandbox=sandbox, settings=settings)


@pytest.fixture
def live_sandbox(live_sandbox_server: LiveSandbox) -> Iterator[LiveSandbox]:
    """The session's sandbox with no faults and the real time, as every test expects to find it."""
    live_sandbox_server.sandbox.reset()
    yield live_sandbox_server
    live_sandbox_server.sandbox.reset()


@pytest.fixture
async def http() -> AsyncIterator[httpx2.AsyncClient]:
    async with httpx2.AsyncClient(timeout=10) as client:
        yield client
