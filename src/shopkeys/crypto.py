"""AES-256-GCM with a key ring: every ciphertext names its key, new writes use the primary key.

A ciphertext is `v1.{key_id}.{base64url(nonce || ciphertext || tag)}`. The associated data binds it
to one row and field (`connections:{id}:access_token`), so a token copied into another row or
column fails to decrypt instead of silently serving the wrong store.

A ring read from the key file follows that file: `shopkeys keys rotate` in another process
rewrites it, and every running process must then encrypt with the new primary, or an operator who
retires the old key would lose what they keep writing with it.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import os
import re
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from shopkeys.errors import ConfigurationError, ShopkeysError
from shopkeys.private_files import create_once

_VERSION = "v1"
_NONCE_BYTES = 12
_KEY_ID = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
_NUMBERED = re.compile(r"^k(\d{1,9})$")
KEY_FILE_NAME = "encryption-keys"
#: A ring from the key file looks at the file at most this often when it encrypts (one stat);
#: the service also looks every other such interval in the background (`keep_following`).
FOLLOW_EVERY = 1.0

log = logging.getLogger("shopkeys")


class DecryptionError(ShopkeysError):
    """A ciphertext is damaged, bound to another row or field, or names a key we do not have."""


@dataclass(frozen=True, slots=True)
class Key:
    """One 256-bit key and the id that ciphertexts carry to name it."""

    id: str
    secret: bytes = field(repr=False)

    def encoded(self) -> str:
        return f"{self.id}:{base64.urlsafe_b64encode(self.secret).decode()}"


FileVersion = tuple[int, int, int]


@dataclass(frozen=True, slots=True)
class KeyFile:
    """Where a ring was read from, so that it can tell cheaply when another process rewrote it."""

    path: Path

    def version(self) -> FileVersion | None:
        """(inode, size, mtime): one stat; None when the file cannot be looked at.

        `write_key_file` replaces the file, so a rewrite changes the inode even where the
        file system's clock is coarse.
        """
        try:
            found = self.path.stat()
        except OSError:
            return None
        return (found.st_ino, found.st_size, found.st_mtime_ns)


class KeyRing:
    """The keys that can decrypt, the first of which (the primary) encrypts."""

    def __init__(
        self,
        keys: Iterable[Key],
        *,
        source: KeyFile | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._keys = list(keys)
        if not self._keys:
            raise ConfigurationError("the key ring needs at least one key")
        ids = [k.id for k in self._keys]
        if len(set(ids)) != len(ids):
            raise ConfigurationError("two encryption keys share one id")
        self._by_id = {k.id: AESGCM(k.secret) for k in self._keys}
        # Keys the key file dropped (`shopkeys keys retire`) while this process ran: they still
        # decrypt here, for anything written with them before the retirement was seen.
        self._retired: dict[str, Key] = {}
        self._source = source
        self._monotonic = monotonic
        # The file version these keys came from; whoever reads the file sets it (None: take
        # whatever the file holds at the first look).
        self._seen: FileVersion | None = None
        self._looked_at = monotonic()

    @property
    def primary(self) -> Key:
        """The key new ciphertexts use: the key file's first, once it was rewritten elsewhere."""
        if self._source is not None and self._monotonic() - self._looked_at >= FOLLOW_EVERY:
            self.follow()
        return self._keys[0]

    def follow(self) -> bool:
        """Take the key file's keys now if the file changed; True when the ring changed.

        A changed file is taken only if it continues this ring: it holds the primary, and no id
        we know names another secret. Anything else (an unrelated or damaged file) is ignored,
        and this process goes on with the keys it has.
        """
        if self._source is None:
            return False
        self._looked_at = self._monotonic()
        version = self._source.version()
        if version is None or version == self._seen:
            return False
        try:
            fresh = KeyRing.parse(self._source.path.read_text())
        except (OSError, ConfigurationError):
            return False  # read again next time: a file being restored may be readable then
        self._seen = version
        return self._adopt(fresh)

    async def keep_following(self, every: float | None = None) -> None:
        """Look at the key file every `every` seconds (default: twice `FOLLOW_EVERY`), forever
        (the service runs this as a task).

        A process that writes nothing still switches to a rotated primary within seconds, so
        `shopkeys keys retire` can count on every running process having switched.
        """
        interval = every if every is not None else 2 * FOLLOW_EVERY
        while True:
            await asyncio.sleep(interval)
            self.follow()  # never raises: an unreadable file is skipped until it is readable

    def _adopt(self, fresh: KeyRing) -> bool:
        mine = {k.id: k.secret for k in self._keys}
        theirs = {k.id: k.secret for k in fresh._keys}
        primary = self._keys[0]
        if theirs.get(primary.id) != primary.secret or any(
            mine.get(key_id, secret) != secret for key_id, secret in theirs.items()
        ):
            log.warning(
                "the key file %s changed but does not hold this process's keys (its primary %s "
                "is missing or differs): ignored; restart to use the file's keys",
                self._source.path if self._source else "",
                primary.id,
            )
            return False
        if fresh._keys == self._keys:
            return False
        for key in self._keys:
            if key.id not in theirs:
                self._retired[key.id] = key
        for key_id in theirs:
            self._retired.pop(key_id, None)
        self._keys = list(fresh._keys)
        self._by_id = {k.id: AESGCM(k.secret) for k in [*self._retired.values(), *self._keys]}
        return True

    def _aead(self, key_id: str) -> AESGCM | None:
        aead = self._by_id.get(key_id)
        if aead is None and self.follow():
            # A key we have never seen: `keys rotate` elsewhere may have re-encrypted with it.
            aead = self._by_id.get(key_id)
        return aead

    def __repr__(self) -> str:
        return f"<KeyRing primary={self._keys[0].id!r} keys={[k.id for k in self._keys]}>"

    @property
    def keys(self) -> list[Key]:
        """The ring's keys, the primary first (without keys retired while this process ran)."""
        return list(self._keys)

    def derived_secrets(self, purpose: str) -> list[bytes]:
        """A 256-bit secret for `purpose` from each key, the primary's last.

        For signing what is not stored (the operators' session cookies): every instance that
        shares the key ring derives the same secrets, and after a rotation what was signed with
        the old primary still verifies while that key is in the ring. HKDF keeps a derived
        secret from revealing anything about the encryption key.
        """
        return [
            HKDF(algorithm=SHA256(), length=32, salt=None, info=purpose.encode()).derive(k.secret)
            for k in reversed(self.keys)
        ]

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
        # Above every numbered id: a retired `k1` must never come back with another secret,
        # or a backup's ciphertexts under the old `k1` would read as damaged.
        numbers = [int(m.group(1)) for k in self._keys if (m := _NUMBERED.match(k.id))]
        number = max([len(self._keys), *numbers]) + 1
        while f"k{number}" in taken:
            number += 1
        return self._successor([Key(f"k{number}", secrets.token_bytes(32)), *self._keys])

    def without(self, key_id: str) -> KeyRing:
        """The ring without the non-primary key `key_id` (what `shopkeys keys retire` writes)."""
        ids = [k.id for k in self._keys]
        if key_id not in ids:
            raise ConfigurationError(
                f"no encryption key {key_id!r} in the key ring (it has {', '.join(ids)})"
            )
        if key_id == ids[0]:
            raise ConfigurationError(f"{key_id!r} is the primary key, which encrypts new tokens")
        return self._successor([k for k in self._keys if k.id != key_id])

    def _successor(self, keys: list[Key]) -> KeyRing:
        """A ring of `keys` that follows the same key file as this one."""
        ring = KeyRing(keys, source=self._source, monotonic=self._monotonic)
        # It has not read the file: it must take the next version it finds there.
        ring._seen = self._seen
        return ring

    def encrypt(self, plaintext: str, associated: str) -> str:
        """Encrypt with the primary key, bound to `associated` (row and field)."""
        nonce = os.urandom(_NONCE_BYTES)
        primary = self.primary
        sealed = self._by_id[primary.id].encrypt(nonce, plaintext.encode(), associated.encode())
        body = base64.urlsafe_b64encode(nonce + sealed).decode().rstrip("=")
        return f"{_VERSION}.{primary.id}.{body}"

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

    @staticmethod
    def key_id_of(ciphertext: str) -> str | None:
        """The id of the key a ciphertext names, or None when it is not a shopkeys ciphertext.

        Only a well-formed id is returned: nothing of a token stored by mistake may be shown.
        """
        parts = ciphertext.split(".", 2)
        if len(parts) != 3 or parts[0] != _VERSION or not _KEY_ID.match(parts[1]):
            return None
        return parts[1]

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


def load_key_ring(
    configured: str | None,
    data_dir: Path,
    *,
    monotonic: Callable[[], float] = time.monotonic,
) -> LoadedKeys:
    """The configured keys, else the key file in `data_dir`, created (mode 0600) if missing.

    A ring from the key file follows the file (see `KeyRing.follow`); configured keys are read
    once, so changing them takes a restart.
    """
    if configured:
        return LoadedKeys(KeyRing.parse(configured), "environment", None, created=False)
    path = data_dir / KEY_FILE_NAME
    created = not path.exists() and _create_key_file(path)
    source = KeyFile(path)
    # The version is taken before the read: a rewrite in between is read again next time.
    version = source.version()
    ring = KeyRing(KeyRing.parse(path.read_text()).keys, source=source, monotonic=monotonic)
    ring._seen = version
    return LoadedKeys(ring, "file", path, created=created)


def _create_key_file(path: Path) -> bool:
    """Write a fresh ring to `path` unless it exists; True when this process wrote it.

    Two processes starting at once on a fresh data directory must not each keep a key of their
    own: both then read the one that won.
    """
    return create_once(path, generate_key_ring().serialize())


def write_key_file(path: Path, ring: KeyRing) -> None:
    """Write the ring to `path` readable by its owner only, replacing it atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    # A leftover temporary file keeps its old mode through O_CREAT: set it explicitly.
    os.fchmod(descriptor, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(ring.serialize())
        # On disk before any row is encrypted under a key it names: a crash must not leave rows
        # under a key that the file, after a reboot, does not hold.
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)  # the rename itself
    finally:
        os.close(directory)


def fingerprint(value: str) -> str:
    """SHA-256 hex of a high-entropy secret (state, API key), what the database stores instead."""
    return hashlib.sha256(value.encode()).hexdigest()
