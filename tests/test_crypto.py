"""The key ring: AES-256-GCM bound to row and field, parsing, rotation and the key file."""

from __future__ import annotations

import base64
import stat
from pathlib import Path

import pytest

from shopkeys.crypto import (
    KEY_FILE_NAME,
    DecryptionError,
    Key,
    KeyRing,
    generate_key_ring,
    load_key_ring,
    write_key_file,
)
from shopkeys.errors import ConfigurationError

SECRET = b"\x01" * 32
ENCODED = base64.urlsafe_b64encode(SECRET).decode()
TOKEN = "at_live_0123456789abcdef"
AD = "connections:con_1:access_token"


def ring(*ids: str) -> KeyRing:
    return KeyRing([Key(i, bytes([n + 1]) * 32) for n, i in enumerate(ids)])


def test_round_trip_names_the_primary_key() -> None:
    keys = ring("k1")
    sealed = keys.encrypt(TOKEN, AD)
    assert sealed.startswith("v1.k1.")
    assert TOKEN not in sealed
    assert keys.decrypt(sealed, AD) == TOKEN
    # A fresh nonce each time: the same token never gives the same ciphertext.
    assert keys.encrypt(TOKEN, AD) != sealed


@pytest.mark.parametrize(
    "elsewhere",
    ["connections:con_2:access_token", "connections:con_1:refresh_token", ""],
)
def test_ciphertext_is_bound_to_row_and_field(elsewhere: str) -> None:
    keys = ring("k1")
    sealed = keys.encrypt(TOKEN, AD)
    with pytest.raises(DecryptionError) as caught:
        keys.decrypt(sealed, elsewhere)
    assert TOKEN not in str(caught.value)
    assert sealed not in str(caught.value)


@pytest.mark.parametrize("position", [0, 10, 20, -1])
def test_tampering_fails(position: int) -> None:
    keys = ring("k1")
    sealed = keys.encrypt(TOKEN, AD)
    prefix, body = sealed.rsplit(".", 1)
    raw = bytearray(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    raw[position] ^= 0x01
    forged = prefix + "." + base64.urlsafe_b64encode(bytes(raw)).decode().rstrip("=")
    with pytest.raises(DecryptionError):
        keys.decrypt(forged, AD)


@pytest.mark.parametrize("garbage", ["", "plain-token", "v1.k1.", "v1.k1.!!!", "v1.k1.AAAA"])
def test_garbage_fails_as_decryption_error(garbage: str) -> None:
    with pytest.raises(DecryptionError):
        ring("k1").decrypt(garbage, AD)


def test_a_token_shaped_like_a_ciphertext_is_not_echoed() -> None:
    # A JWT has three dot-separated parts, like a ciphertext; none of it may reach a message.
    jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJlc2VjcmV0"
    with pytest.raises(DecryptionError) as caught:
        ring("k1").decrypt(jwt, AD)
    for part in jwt.split("."):
        assert part not in str(caught.value)


def test_unknown_key_id_fails_clearly() -> None:
    sealed = ring("k9").encrypt(TOKEN, AD)
    with pytest.raises(DecryptionError, match="k9"):
        ring("k1").decrypt(sealed, AD)


def test_with_new_primary_keeps_old_keys_decrypting() -> None:
    old = ring("k1")
    sealed = old.encrypt(TOKEN, AD)
    new = old.with_new_primary()
    assert new.primary.id != "k1"
    assert [k.id for k in new.keys][1:] == ["k1"]
    assert new.decrypt(sealed, AD) == TOKEN
    assert not new.is_current(sealed)
    resealed = new.encrypt(TOKEN, AD)
    assert new.is_current(resealed)
    assert new.decrypt(resealed, AD) == TOKEN
    # The old ring cannot read what the new primary wrote.
    with pytest.raises(DecryptionError):
        old.decrypt(resealed, AD)
    assert len({k.id for k in new.with_new_primary().keys}) == 3


def test_parse_and_serialize_round_trip() -> None:
    other = base64.urlsafe_b64encode(bytes([2]) * 32).decode()
    text = f"k2:{ENCODED}, k1:{other}"
    parsed = KeyRing.parse(text)
    assert parsed.primary.id == "k2"
    assert [k.id for k in parsed.keys] == ["k2", "k1"]
    again = KeyRing.parse(parsed.serialize())
    assert again.decrypt(parsed.encrypt(TOKEN, AD), AD) == TOKEN
    # Unpadded and newline-separated entries are read too.
    assert KeyRing.parse(f"\nk2:{ENCODED.rstrip('=')}\n").primary.secret == SECRET


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("", "at least one key"),
        (ENCODED, "ID:BASE64"),
        (f"bad id:{ENCODED}", "ID:BASE64"),
        (f"k1:{ENCODED[:-8]}", "32 bytes"),
        (f"k1:{base64.urlsafe_b64encode(b'x' * 16).decode()}", "32 bytes"),
        ("k1:A", "base64"),
        (f"k1:{ENCODED},k1:{ENCODED}", "share one id"),
    ],
)
def test_parse_errors_never_show_key_material(text: str, match: str) -> None:
    with pytest.raises(ConfigurationError, match=match) as caught:
        KeyRing.parse(text)
    message = str(caught.value)
    assert ENCODED.rstrip("=")[:8] not in message
    if ":" in text:
        assert text.split(":", 1)[1].split(",")[0] not in message


def test_repr_has_no_key_bytes() -> None:
    keys = KeyRing.parse(f"k1:{ENCODED}")
    for shown in (repr(keys), str(keys), repr(keys.primary), repr(keys.keys)):
        assert ENCODED.rstrip("=") not in shown
        assert repr(SECRET) not in shown
        assert "k1" in shown


def test_key_file_created_private_then_reused(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    first = load_key_ring(None, data_dir)
    path = data_dir / KEY_FILE_NAME
    assert first.created and first.source == "file" and first.path == path
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again = load_key_ring(None, data_dir)
    assert not again.created
    assert again.ring.primary.secret == first.ring.primary.secret
    sealed = first.ring.encrypt(TOKEN, AD)
    assert again.ring.decrypt(sealed, AD) == TOKEN
    assert not list(data_dir.glob("*.tmp"))


def test_configured_keys_win_over_the_file(tmp_path: Path) -> None:
    loaded = load_key_ring(f"env1:{ENCODED}", tmp_path)
    assert loaded.source == "environment" and loaded.path is None
    assert loaded.ring.primary.id == "env1"
    assert not (tmp_path / KEY_FILE_NAME).exists()


def test_a_damaged_key_file_is_a_configuration_error(tmp_path: Path) -> None:
    (tmp_path / KEY_FILE_NAME).write_text(f"k1:{ENCODED[:20]}\n")
    with pytest.raises(ConfigurationError) as caught:
        load_key_ring(None, tmp_path)
    assert ENCODED[:20] not in str(caught.value)


def test_generated_rings_differ() -> None:
    assert generate_key_ring().primary.secret != generate_key_ring().primary.secret


def test_a_ring_from_the_key_file_follows_a_rotation_elsewhere(tmp_path: Path) -> None:
    """`shopkeys keys rotate` in another process must not leave a running service blind."""
    service = load_key_ring(None, tmp_path).ring
    old_sealed = service.encrypt(TOKEN, AD)
    cli = load_key_ring(None, tmp_path)
    rotated = cli.ring.with_new_primary()
    write_key_file(tmp_path / KEY_FILE_NAME, rotated)
    new_sealed = rotated.encrypt(TOKEN, AD)
    assert service.decrypt(new_sealed, AD) == TOKEN
    assert service.primary.id == rotated.primary.id  # it now writes with the new key too
    assert service.decrypt(old_sealed, AD) == TOKEN
    # A key that is nowhere still fails clearly.
    with pytest.raises(DecryptionError, match="k9"):
        service.decrypt(ring("k9").encrypt(TOKEN, AD), AD)


def test_a_reloaded_file_missing_known_keys_is_ignored(tmp_path: Path) -> None:
    service = load_key_ring(None, tmp_path).ring
    sealed = service.encrypt(TOKEN, AD)
    # Someone replaces the file with an unrelated ring: the service keeps its own keys.
    write_key_file(tmp_path / KEY_FILE_NAME, ring("k9"))
    with pytest.raises(DecryptionError):
        service.decrypt(ring("k9").encrypt(TOKEN, AD), AD)
    assert service.decrypt(sealed, AD) == TOKEN


class _Monotonic:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_running_ring_encrypts_with_a_primary_rotated_elsewhere(tmp_path: Path) -> None:
    """A service keeps no old primary once `shopkeys keys rotate` rewrote the key file."""
    from shopkeys.crypto import FOLLOW_EVERY

    monotonic = _Monotonic()
    service = load_key_ring(None, tmp_path, monotonic=monotonic).ring
    old_id = service.primary.id
    rotated = load_key_ring(None, tmp_path).ring.with_new_primary()
    write_key_file(tmp_path / KEY_FILE_NAME, rotated)
    # The file is looked at no more than once a second, whatever the write rate.
    assert service.encrypt(TOKEN, AD).startswith(f"v1.{old_id}.")
    monotonic.now += FOLLOW_EVERY
    sealed = service.encrypt(TOKEN, AD)
    assert sealed.startswith(f"v1.{rotated.primary.id}.")
    assert rotated.decrypt(sealed, AD) == TOKEN
    assert service.is_current(sealed)
    assert [k.id for k in service.keys] == [rotated.primary.id, old_id]


def test_follow_checks_the_key_file_now_and_keeps_retired_keys_in_memory(tmp_path: Path) -> None:
    service = load_key_ring(None, tmp_path, monotonic=_Monotonic()).ring
    assert service.follow() is False  # nothing changed
    old_sealed = service.encrypt(TOKEN, AD)
    path = tmp_path / KEY_FILE_NAME
    rotated = load_key_ring(None, tmp_path).ring.with_new_primary()
    write_key_file(path, rotated)
    assert service.follow() is True
    assert service.primary.id == rotated.primary.id
    # `keys retire` drops the old key from the file: the ring follows the file still...
    write_key_file(path, rotated.without(old_sealed.split(".")[1]))
    assert service.follow() is True
    assert [k.id for k in service.keys] == [rotated.primary.id]
    # ...and a later rotation, while what this process wrote earlier still decrypts here.
    again = KeyRing.parse(path.read_text()).with_new_primary()
    write_key_file(path, again)
    assert service.follow() is True
    assert service.primary.id == again.primary.id
    assert service.decrypt(old_sealed, AD) == TOKEN


@pytest.mark.parametrize("content", ["not a key ring\n", None])
def test_a_broken_or_missing_key_file_leaves_a_running_ring_as_it_is(
    tmp_path: Path, content: str | None
) -> None:
    service = load_key_ring(None, tmp_path).ring
    sealed = service.encrypt(TOKEN, AD)
    path = tmp_path / KEY_FILE_NAME
    if content is None:
        path.unlink()
    else:
        path.write_text(content)
    assert service.follow() is False
    assert service.decrypt(service.encrypt(TOKEN, AD), AD) == TOKEN
    assert service.decrypt(sealed, AD) == TOKEN


def test_a_key_file_with_another_secret_under_a_known_id_is_ignored(tmp_path: Path) -> None:
    service = load_key_ring(None, tmp_path).ring
    primary = service.primary
    # Another `k1` (a fresh data directory's key file copied over ours, say).
    write_key_file(tmp_path / KEY_FILE_NAME, KeyRing([Key("k2", SECRET), Key(primary.id, SECRET)]))
    assert service.follow() is False
    assert service.primary == primary


def test_new_primaries_never_reuse_a_retired_id() -> None:
    keys = ring("k3", "k2").without("k2")
    assert keys.with_new_primary().primary.id == "k4"
    assert ring("ktest").with_new_primary().primary.id == "k2"


def test_without_refuses_the_primary_and_unknown_ids() -> None:
    keys = ring("k2", "k1")
    assert [k.id for k in keys.without("k1").keys] == ["k2"]
    with pytest.raises(ConfigurationError, match="primary"):
        keys.without("k2")
    with pytest.raises(ConfigurationError, match="k9"):
        keys.without("k9")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("v1.k2.AAAA", "k2"),
        ("v1.ktest.AAAA", "ktest"),
        # Never a piece of something that is not a ciphertext (a JWT stored by mistake).
        ("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2ln", None),
        ("v1.bad id.AAAA", None),
        ("plain", None),
    ],
)
def test_key_id_of(value: str, expected: str | None) -> None:
    assert KeyRing.key_id_of(value) == expected


def test_a_key_file_created_by_another_process_first_is_the_one_used(tmp_path: Path) -> None:
    """Two processes starting at once on a fresh data directory end up with the same key."""
    from shopkeys.crypto import _create_key_file

    path = tmp_path / KEY_FILE_NAME
    assert _create_key_file(path) is True
    first = path.read_text()
    # The slower process finds the file there when it links its own: it keeps the first one.
    assert _create_key_file(path) is False
    assert path.read_text() == first
    assert load_key_ring(None, tmp_path).ring.keys == KeyRing.parse(first).keys
    assert not load_key_ring(None, tmp_path).created
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert not list(tmp_path.glob("*.tmp"))
