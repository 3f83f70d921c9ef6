"""AES-256-GCM with a key ring: every ciphertext names its key, new writes use the primary key.

A ciphertext is `v1.{key_id}.{base64url(nonce || ciphertext || tag)}`. The associated data binds it
to one row and field (`connections:{id}:access_token`), so a token copied into another row or
column fails to decrypt instead of silently serving the wrong store.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from shopkeys.errors import ConfigurationError, ShopkeysError

_VERSION = "v1"
_NONCE_BYTES = 12
_KEY_ID = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
KEY_FILE_NAME = "encryption-keys"


class DecryptionError(ShopkeysError):
    """A ciphertext is damaged, bound to another row or field, or names a key we do not have."""


@dataclass(frozen=True, slots=True)
class Key:
    """One 256-bit key and the id that ciphertexts carry to name it."""

    id: str
    secret: bytes = field(repr=False)

    def encoded(self) -> str:
        return f"{self.id}:{base64.urlsafe_b64encode(self.secret).decode()}"


class KeyRing:
    """The keys that can decrypt, the first of which (the primary) encrypts."""

    def __init__(self, keys: Iterable[Key], *, reload: Callable[[], KeyRing] | None = None) -> None:
        self._keys = list(keys)
        if not self._keys:
            raise ConfigurationError("the key ring needs at least one key")
        ids = [k.id for k in self._keys]
        if len(set(ids)) != len(ids):
            raise ConfigurationError("two encryption keys share one id")
        self._by_id = {k.id: AESGCM(k.secret) for k in self._keys}
        self.primary = self._keys[0]
        # Where a newer ring may be found (the key file): `shopkeys keys rotate` in another
        # process re-encrypts rows under a key a running service has never seen.
        self._reload = reload

    def _aead(self, key_id: str) -> AESGCM | None:
        aead = self._by_id.get(key_id)
        if aead is None and self._reload is not None:
            try:
                fresh = self._reload()
            except (OSError, ConfigurationError):
                return None
            # Only a ring that still holds every key we know may replace ours.
            if key_id in fresh._by_id and set(self._by_id) <= set(fresh._by_id):
                self._keys, self._by_id, self.primary = fresh._keys, fresh._by_id, fresh.primary
            aead = self._by_id.get(key_id)
        return aead

    def __repr__(self) -> str:
        return f"<KeyRing primary={self.primary.id!r} keys={[k.id for k in self._keys]}>"

    @property
    def keys(self) -> list[Key]:
        return list(self._keys)

    @classmethod
    def parse(cls, text: str) -> KeyRing:
        """Read `id:base64key` entries separated by commas or newlines, the primary first."""
        keys = []
        for entry in re.split(r"[,\s]+", text.strip()):
            if not entry:
                continue
            key_id, sep, encoded = entry.partition(":")
            if not sep or not _KEY_ID.match(key_id):
                raise ConfigurationError(
                    "an encryption key must look like ID:BASE64 (ID of letters, digits, - or _)"
                )
            try:
                secret = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
            except ValueError:
                raise ConfigurationError(f"encryption key {key_id!r} is not base64") from None
            if len(secret) != 32:
                raise ConfigurationError(f"encryption key {key_id!r} must be 32 bytes (AES-256)")
            keys.append(Key(key_id, secret))
        return cls(keys)

    def serialize(self) -> str:
        """The ring in the format `parse` reads, one key a line, the primary first."""
        return "\n".join(k.encoded() for k in self._keys) + "\n"

    def with_new_primary(self) -> KeyRing:
        """A ring with a fresh random key in front; the old keys still decrypt."""
        taken = {k.id for k in self._keys}
        number = len(self._keys) + 1
        while f"k{number}" in taken:
            number += 1
        return KeyRing(
            [Key(f"k{number}", secrets.token_bytes(32)), *self._keys], reload=self._reload
        )

    def encrypt(self, plaintext: str, associated: str) -> str:
        """Encrypt with the primary key, bound to `associated` (row and field)."""
        nonce = os.urandom(_NONCE_BYTES)
        sealed = self._by_id[self.primary.id].encrypt(
            nonce, plaintext.encode(), associated.encode()
        )
        body = base64.urlsafe_b64encode(nonce + sealed).decode().rstrip("=")
        return f"{_VERSION}.{self.primary.id}.{body}"

    def decrypt(self, ciphertext: str, associated: str) -> str:
        """Decrypt with whichever key the ciphertext names; `DecryptionError` if it cannot."""
        version, key_id, body = _split(ciphertext)
        # Nothing from the value itself is echoed unless it is a well-formed key id: a plain
        # token stored by mistake (a JWT has dots too) must not reach a message.
        if version != _VERSION or not _KEY_ID.match(key_id):
            raise DecryptionError("not a shopkeys ciphertext (unknown format version)")
        aead = self._aead(key_id)
        if aead is None:
            raise DecryptionError(
                f"no encryption key with id {key_id!r} in the key ring "
                f"(it has {', '.join(k.id for k in self._keys)})"
            )
        try:
            raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
            plain = aead.decrypt(raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], associated.encode())
        except (InvalidTag, ValueError):
            raise DecryptionError(
                "ciphertext does not decrypt: damaged, or bound to another row or field"
            ) from None
        return plain.decode()

    def is_current(self, ciphertext: str) -> bool:
        """Whether `ciphertext` is already under the primary key."""
        return _split(ciphertext)[1] == self.primary.id


def _split(ciphertext: str) -> tuple[str, str, str]:
    parts = ciphertext.split(".", 2)
    if len(parts) != 3:
        raise DecryptionError("not a shopkeys ciphertext")
    return parts[0], parts[1], parts[2]


def generate_key_ring() -> KeyRing:
    """A ring with one fresh random key."""
    return KeyRing([Key("k1", secrets.token_bytes(32))])


@dataclass(frozen=True, slots=True)
class LoadedKeys:
    """The key ring and where it came from, so the CLI can say where a rotated ring goes."""

    ring: KeyRing
    source: str  # "environment" or "file"
    path: Path | None
    created: bool


def load_key_ring(configured: str | None, data_dir: Path) -> LoadedKeys:
    """The configured keys, else the key file in `data_dir`, created (mode 0600) if missing."""
    if configured:
        return LoadedKeys(KeyRing.parse(configured), "environment", None, created=False)
    path = data_dir / KEY_FILE_NAME

    def reload() -> KeyRing:
        return KeyRing.parse(path.read_text())

    if path.exists():
        ring = KeyRing(reload().keys, reload=reload)
        return LoadedKeys(ring, "file", path, created=False)
    ring = KeyRing(generate_key_ring().keys, reload=reload)
    write_key_file(path, ring)
    return LoadedKeys(ring, "file", path, created=True)


def write_key_file(path: Path, ring: KeyRing) -> None:
    """Write the ring to `path` readable by its owner only, replacing it atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    # A leftover temporary file keeps its old mode through O_CREAT: set it explicitly.
    os.fchmod(descriptor, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(ring.serialize())
    os.replace(temporary, path)


def fingerprint(value: str) -> str:
    """SHA-256 hex of a high-entropy secret (state, API key), what the database stores instead."""
    return hashlib.sha256(value.encode()).hexdigest()
