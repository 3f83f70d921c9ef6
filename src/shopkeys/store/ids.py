"""Public ids of stored things: a prefix naming the kind, then random characters."""

from __future__ import annotations

import secrets


def new_id(prefix: str) -> str:
    """A random public id such as `con_3kTm...`."""
    return f"{prefix}_{secrets.token_urlsafe(12)}"
