"""The signing secret: from the settings, else generated once into the data directory."""

from __future__ import annotations

import base64
import stat
import threading
from pathlib import Path

import pytest
from standardwebhooks import Webhook

from shopkeys.errors import ConfigurationError
from shopkeys.events.secret import (
    SECRET_FILE_NAME,
    generate_secret,
    hint,
    load_webhook_secret,
    parse_secret,
    read_webhook_secret,
)
from tests.events.conftest import SECRET_VALUE


def test_a_generated_secret_is_whsec_and_24_random_bytes() -> None:
    value = generate_secret()
    assert value.startswith("whsec_")
    assert len(base64.b64decode(value.removeprefix("whsec_"), validate=True)) == 24
    assert parse_secret(value, "x") == base64.b64decode(value.removeprefix("whsec_"))
    assert generate_secret() != value
    Webhook(value)  # the reference library takes it as is


def test_the_configured_secret_wins_and_no_file_is_written(tmp_path: Path) -> None:
    secret = load_webhook_secret(f" {SECRET_VALUE}\n", tmp_path / "data")
    assert (secret.value, secret.source, secret.path, secret.created) == (
        SECRET_VALUE,
        "environment",
        None,
        False,
    )
    assert secret.key == base64.b64decode(SECRET_VALUE.removeprefix("whsec_"))
    assert not (tmp_path / "data").exists()


def test_without_one_a_secret_file_is_created_once_for_the_owner_alone(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    first = load_webhook_secret(None, data_dir)
    path = data_dir / SECRET_FILE_NAME
    assert (first.source, first.path, first.created) == ("file", path, True)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700
    assert path.read_text().strip() == first.value
    again = load_webhook_secret(None, data_dir)
    assert (again.value, again.created) == (first.value, False)
    assert list(data_dir.iterdir()) == [path]  # no temporary file left behind


def test_processes_starting_at_once_agree_on_one_secret(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    values: list[str] = []
    start = threading.Barrier(8)

    def load() -> None:
        start.wait()
        values.append(load_webhook_secret(None, data_dir).value)

    threads = [threading.Thread(target=load) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(values) == 8 and len(set(values)) == 1


def test_read_for_doctor_creates_nothing(tmp_path: Path) -> None:
    assert read_webhook_secret(None, tmp_path) is None
    assert not (tmp_path / SECRET_FILE_NAME).exists()
    created = load_webhook_secret(None, tmp_path)
    read = read_webhook_secret(None, tmp_path)
    assert read is not None and read.value == created.value


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "starts with whsec_"),
        ("whsec_not base64!!", "base64"),
        ("whsec_" + base64.b64encode(b"k" * 16).decode(), "24 to 64 bytes (this one has 16)"),
        ("whsec_" + base64.b64encode(b"k" * 65).decode(), "24 to 64 bytes (this one has 65)"),
        ("whsec_", "24 to 64 bytes (this one has 0)"),
    ],
)
def test_a_malformed_secret_is_a_clear_configuration_error(
    value: str, problem: str, tmp_path: Path
) -> None:
    with pytest.raises(ConfigurationError) as raised:
        load_webhook_secret(value, tmp_path)
    message = str(raised.value)
    assert message.startswith("SHOPKEYS_WEBHOOK_SECRET: ")
    assert problem in message
    secret_part = value.removeprefix("whsec_")
    if secret_part:  # the message never repeats the value
        assert secret_part not in message


def test_a_malformed_secret_file_names_the_file(tmp_path: Path) -> None:
    (tmp_path / SECRET_FILE_NAME).write_text("whsec_tooshort\n")
    with pytest.raises(ConfigurationError, match=str(tmp_path / SECRET_FILE_NAME)) as raised:
        load_webhook_secret(None, tmp_path)
    assert "tooshort" not in str(raised.value)


def test_unpadded_base64_is_accepted() -> None:
    padded = "whsec_" + base64.b64encode(b"k" * 25).decode()
    assert padded.endswith("=")
    assert parse_secret(padded.rstrip("="), "x") == b"k" * 25


def test_the_hint_shows_four_characters() -> None:
    assert hint(SECRET_VALUE) == "whsec_MfKQ…"
    assert repr(load_webhook_secret(SECRET_VALUE, Path("."))).count("MfKQ9r8") == 0
