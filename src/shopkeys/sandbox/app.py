"""All four simulators behind one ASGI app, each under `/sandbox/{provider}`."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import import_module

from starlette.applications import Starlette
from starlette.routing import Mount

from shopkeys.config import Settings
from shopkeys.credentials import AppCredentials
from shopkeys.platform import Platform
from shopkeys.sandbox.core import Lifetimes, SandboxClock, SimulatedApp, Simulator

MOUNT_PREFIX = "/sandbox"

# The credentials each simulated app accepts when shopkeys is not configured with its own.
DEMO_CREDENTIALS: dict[str, tuple[str, str, str | None]] = {
    "aliexpress": ("501234", "sandbox-aliexpress-app-secret", None),
    "tiktok_shop": ("6a1b2c3d4e5f6", "sandbox-tiktok-shop-app-secret", "7301234567890123456"),
    "shopline": ("sandbox-shopline-client-id", "sandbox-shopline-client-secret", None),
    "ecwid": ("sandbox-ecwid-client", "sandbox-ecwid-client-secret", None),
}


def simulator_class(provider: str) -> type[Simulator]:
    """The simulator class for `provider`: each platform's module names its own."""
    cls: type[Simulator] = import_module(f"shopkeys.sandbox.{Platform.parse(provider)}").SIMULATOR
    return cls


def simulated_app(settings: Settings, provider: str) -> SimulatedApp:
    """The app a simulator accepts: shopkeys' configured credentials, else the demo ones."""
    config = settings.platform(provider)
    configured = config.credentials
    demo_id, demo_secret, demo_service = DEMO_CREDENTIALS[provider]
    if configured is not None:
        client_id, secret = configured.client_id, configured.client_secret
        service_id = configured.service_id or demo_service
    else:
        client_id, secret, service_id = demo_id, demo_secret, demo_service
    return SimulatedApp(
        client_id=client_id,
        client_secret=secret,
        redirect_uri=config.redirect_uri,
        service_id=service_id,
    )


@dataclass
class Sandbox:
    """The simulators and the app that serves them."""

    simulators: dict[str, Simulator]
    app: Starlette

    def reset(self) -> None:
        for simulator in self.simulators.values():
            simulator.reset()

    def app_market_paths(self) -> dict[str, str]:
        """Platform name to the path of its simulated app market, where it has one."""
        return {
            name: f"{MOUNT_PREFIX}/{name}{path}"
            for name, simulator in self.simulators.items()
            if (path := simulator.app_market_path)
        }


def build_sandbox(settings: Settings | None = None, *, seed: int = 0) -> Sandbox:
    """One simulator per platform, mounted under `/sandbox/{provider}` of one Starlette app."""
    settings = settings or Settings()
    simulators: dict[str, Simulator] = {}
    for provider in Platform:
        cls = simulator_class(provider)
        simulators[provider] = cls(
            simulated_app(settings, provider),
            lifetimes=_lifetimes(settings, cls.default_lifetimes()),
            clock=SandboxClock(),
            seed=seed,
        )
    routes = [Mount(f"{MOUNT_PREFIX}/{name}", app=sim.asgi()) for name, sim in simulators.items()]
    app = Starlette(routes=routes)
    app.state.sandbox = simulators
    return Sandbox(simulators=simulators, app=app)


def _lifetimes(settings: Settings, real: Lifetimes) -> Lifetimes:
    return Lifetimes(
        code=settings.sandbox_code_ttl if settings.sandbox_code_ttl is not None else real.code,
        access=settings.sandbox_access_ttl
        if settings.sandbox_access_ttl is not None and real.access is not None
        else real.access,
        refresh=settings.sandbox_refresh_ttl
        if settings.sandbox_refresh_ttl is not None and real.refresh is not None
        else real.refresh,
    )


def base_urls(public_url: str) -> dict[str, str]:
    """Where each simulator is served below `public_url`."""
    root = public_url.rstrip("/")
    return {name: f"{root}{MOUNT_PREFIX}/{name}" for name in Platform}


def point_at_sandbox(settings: Settings) -> Settings:
    """`settings` with every platform served by the sandbox under its own public URL.

    Platforms without credentials get the demo ones; every platform's base URL becomes its
    simulator's mount, so the real provider code talks to the simulators over HTTP.
    """
    urls = base_urls(settings.public_url)
    for name in Platform:
        demo = None
        if not settings.platform(name).configured:
            client_id, secret, service_id = DEMO_CREDENTIALS[name]
            demo = AppCredentials(client_id, secret, service_id=service_id)
        settings = settings.with_platform(name, base_url=urls[name], credentials=demo)
    return settings
