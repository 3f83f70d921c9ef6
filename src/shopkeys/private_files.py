"""Files only their owner may read (keys, secrets), created once even when processes race."""

from __future__ import annotations

import os
import secrets
from pathlib import Path


def create_once(path: Path, text: str) -> bool:
    """Write `text` to a new file at `path` (mode 0600, its folder 0700) unless one exists;
    True when this process wrote it.

    Processes starting at once on a fresh data directory must agree on one file: it is written
    aside, synced, and linked into place only if absent, so the loser reads the winner's.
    """
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    temporary = path.with_name(f"{path.name}.{secrets.token_hex(4)}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.link(temporary, path)
        return True
    except FileExistsError:
        return False
    finally:
        temporary.unlink(missing_ok=True)
