"""shopkeys: OAuth connections to AliExpress, TikTok Shop, SHOPLINE and Ecwid, kept valid."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from shopkeys.version import __version__

if TYPE_CHECKING:
    from shopkeys.client import Client, SyncClient

__all__ = ["Client", "SyncClient", "__version__"]


def __getattr__(name: str) -> Any:
    # The client is imported on first use, so `import shopkeys` (and every command of the
    # service) does not pay for httpx2 unless it asks for `shopkeys.Client`.
    if name in ("Client", "SyncClient"):
        from shopkeys import client

        return getattr(client, name)
    raise AttributeError(f"module 'shopkeys' has no attribute {name!r}")
