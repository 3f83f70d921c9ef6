"""All four simulators behind one ASGI app, each under `/sandbox/{provider}`."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import import_module
from typing import Any

from pydantic import SecretStr
from starlette.applications import Starlette
from starlette.routing import Mount

from shopkeys.config import Settings
from shopkeys.providers import NAMES
from shopkeys.sandbox.core import Lifetimes, SandboxClock, SimulatedApp, Simulator

MOUNT_PREFIX = "/sandbox"

# The credentials each simulated app accepts when shopkeys is not configured with its own.
DEMO_CREDENTIALS: dict[str, tuple[str, str, str | None]] = {
    "aliexpress": ("501234", "sandbox-aliexpress-app-secret", None),
    "tiktok_shop": ("6a1b2c3d4e5f6", "sandbox-tiktok-shop-app-secret", "7301234567890123456"),
    "shopline": ("sandbox-shopline-client-id", "sandbox-shopline-client-secret", None),
    "ecwid": ("sandbox-ecwid-client", "sandbox-ecwid-client-secret", None),
}

_CLASSES = {
    "aliexpress": "AliExpressSimulator",
    "tiktok_shop": "TikTokShopSimulator",
    "shopline": "ShoplineSimulator",
    "ecwid": "EcwidSimulator",
}


def simulator_class(provider: str) -> type[Simulator]:
    """The simulator class for `provider`."""
    cls: type[Simulator] = getattr(
        import_module(f"shopkeys.sandbox.{provider}"), _CLASSES[provider]
    )
    return cls


def simulated_app(settings: Settings, provider: str) -> SimulatedApp:
    """The app a simulator accepts: shopkeys' configured credentials, else the demo ones."""
    configured = settings.credentials(provider)
    demo_id, demo_secret, demo_service = DEMO_CREDENTIALS[provider]
    if configured is not None:
        client_id, secret = configured.client_id, configured.client_secret
        service_id = configured.service_id or demo_service
    else:
        client_id, secret, service_id = demo_id, demo_secret, demo_service
    return SimulatedApp(
        client_id=client_id,
        client_secret=secret,
        redirect_uri=settings.redirect_uri(provider),
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


def build_sandbox(settings: Settings | None = None, *, seed: int = 0) -> Sandbox:
    """One simulator per platform, mounted under `/sandbox/{provider}` of one Starlette app."""
    settings = settings or Settings()
    simulators: dict[str, Simulator] = {}
    for provider in NAMES:
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
    return {name: f"{root}{MOUNT_PREFIX}/{name}" for name in NAMES}


def point_at_sandbox(settings: Settings) -> Settings:
    """`settings` with every platform served by the sandbox under its own public URL.

    Platforms without credentials get the demo ones; every platform's base URL becomes its
    simulator's mount, so the real provider code talks to the simulators over HTTP.
    """
    updates: dict[str, Any] = {}
    urls = base_urls(settings.public_url)
    for name in NAMES:
        updates[f"{name}_base_url"] = urls[name]
        if settings.credentials(name) is not None:
            continue
        client_id, secret, service_id = DEMO_CREDENTIALS[name]
        id_field, secret_field = (
            ("app_key", "app_secret")
            if name in ("aliexpress", "tiktok_shop")
            else ("client_id", "client_secret")
        )
        updates[f"{name}_{id_field}"] = client_id
        updates[f"{name}_{secret_field}"] = SecretStr(secret)
        if service_id:
            updates[f"{name}_service_id"] = service_id
    return settings.model_copy(update=updates)
