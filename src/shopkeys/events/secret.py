"""The webhook signing secret: `SHOPKEYS_WEBHOOK_SECRET`, else a file in the data directory.

A secret is `whsec_` and the base64 of 24 to 64 random bytes, as Standard Webhooks serializes
symmetric keys. Generated, it is written once to `<data_dir>/webhook-secret` (mode 0600) so that
every process sharing the data directory signs with the same key and the operator can hand it to
the app. Nothing here puts the secret in a message: errors name the setting or the file only.
"""

from __future__ import annotations

import base64
import binascii
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from shopkeys.errors import ConfigurationError
from shopkeys.private_files import create_once

PREFIX = "whsec_"
SECRET_FILE_NAME = "webhook-secret"
#: Standard Webhooks asks for at least 24 bytes (192 bits) and at most 64 (512 bits).
MIN_KEY_BYTES = 24
MAX_KEY_BYTES = 64
GENERATED_KEY_BYTES = 24
#: How many characters of the secret after `whsec_` operators are shown to recognise it.
HINT_LENGTH = 4


@dataclass(frozen=True, slots=True)
class WebhookSecret:
    """The signing secret, its key bytes, and where it came from."""

    value: str = field(repr=False)
    key: bytes = field(repr=False)
    #: "environment" (SHOPKEYS_WEBHOOK_SECRET) or "file".
    source: str
    path: Path | None
    #: True when this process generated the file just now.
    created: bool = False

    @property
    def hint(self) -> str:
        """`whsec_` and the first few characters: enough to recognise, far too few to use."""
        return hint(self.value)


def hint(value: str) -> str:
    """`whsec_abcd…` for a secret `value`."""
    rest = value.removeprefix(PREFIX)
    return f"{PREFIX}{rest[:HINT_LENGTH]}…"


def generate_secret() -> str:
    """A fresh secret: `whsec_` and base64 of 24 random bytes."""
    return PREFIX + base64.b64encode(secrets.token_bytes(GENERATED_KEY_BYTES)).decode("ascii")


def parse_secret(value: str, where: str) -> bytes:
    """The key bytes a `whsec_` secret encodes; `ConfigurationError` naming `where` if malformed.

    The message never repeats the value.
    """
    text = value.strip()
    if not text.startswith(PREFIX):
        raise ConfigurationError(f"{where}: a webhook secret starts with {PREFIX}")
    encoded = text[len(PREFIX) :]
    try:
        # Unpadded base64 is accepted, as the receivers' libraries accept it.
        key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ConfigurationError(
            f"{where}: a webhook secret is {PREFIX} and base64 (A-Z, a-z, 0-9, + and /)"
        ) from None
    if not MIN_KEY_BYTES <= len(key) <= MAX_KEY_BYTES:
        raise ConfigurationError(
            f"{where}: a webhook secret's key must be {MIN_KEY_BYTES} to {MAX_KEY_BYTES} bytes "
            f'(this one has {len(key)}); generate one with: python -c "import base64, secrets; '
            f"print('{PREFIX}' + base64.b64encode(secrets.token_bytes(24)).decode())\""
        )
    return key


def load_webhook_secret(configured: str | None, data_dir: Path) -> WebhookSecret:
    """The configured secret, else the one in `data_dir`'s secret file, created if missing."""
    if configured:
        value = configured.strip()
        key = parse_secret(value, "SHOPKEYS_WEBHOOK_SECRET")
        return WebhookSecret(value, key, "environment", None)
    path = data_dir / SECRET_FILE_NAME
    created = not path.exists() and _create_secret_file(path)
    value = path.read_text().strip()
    return WebhookSecret(value, parse_secret(value, str(path)), "file", path, created=created)


def read_webhook_secret(configured: str | None, data_dir: Path) -> WebhookSecret | None:
    """As `load_webhook_secret`, but None instead of creating the file (for `doctor`)."""
    if configured or (data_dir / SECRET_FILE_NAME).exists():
        return load_webhook_secret(configured, data_dir)
    return None


def _create_secret_file(path: Path) -> bool:
    """Write a fresh secret to `path` unless it exists; True when this process wrote it."""
    return create_once(path, generate_secret() + "\n")
