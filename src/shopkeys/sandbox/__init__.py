"""Offline simulators of AliExpress, TikTok Shop, SHOPLINE and Ecwid, as strict as they are."""

from shopkeys.sandbox.app import (
    DEMO_CREDENTIALS,
    MOUNT_PREFIX,
    Sandbox,
    base_urls,
    build_sandbox,
    point_at_sandbox,
)

__all__ = [
    "DEMO_CREDENTIALS",
    "MOUNT_PREFIX",
    "Sandbox",
    "base_urls",
    "build_sandbox",
    "point_at_sandbox",
]
