"""`shopkeys serve --sandbox` (what `make run` runs) as a new user meets it: a real process, a fresh
data directory, no configuration. The printed curl line returns a token after a connection."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest

from shopkeys.sandbox.browser import press
from tests.live import reserve_socket
from tests.pages.operator import OperatorClient

SERVE = [sys.executable, "-c", "from shopkeys.cli import main; main()", "serve"]


def _start(tmp_path: Path, *args: str, **popen: object) -> tuple[str, subprocess.Popen[str]]:
    """`shopkeys serve ARGS` in its own process, in `tmp_path`, with no SHOPKEYS_ settings of
    the developer's (`env` adds some); returns its URL once it answers."""
    sock = reserve_socket()
    port = sock.getsockname()[1]
    sock.close()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHOPKEYS_")}
    extra = popen.pop("env", {})
    assert isinstance(extra, dict)
    process: subprocess.Popen[str] = subprocess.Popen(  # type: ignore[call-overload]
        [*SERVE, *args, "--port", str(port)],
        cwd=tmp_path,
        env={**env, **extra},
        text=True,
        **popen,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    # Waiting for start-up, not timing: the loop ends as soon as the server answers.
    while True:
        try:
            if httpx2.get(f"{url}/healthz").status_code == 200:
                return url, process
        except httpx2.TransportError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            output = "".join(part or "" for part in process.communicate())
            pytest.fail(f"shopkeys serve did not start:\n{output}")
        time.sleep(0.05)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    url, process = _start(
        tmp_path,
        "--sandbox",
        env={"COLUMNS": "200"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        yield url, process
    finally:
        process.terminate()
        process.wait(timeout=20)


async def test_printed_curl_line_returns_a_token_after_connecting(
    served: tuple[str, subprocess.Popen[str]], tmp_path: Path
) -> None:
    url, process = served
    api_key = (tmp_path / ".shopkeys" / "sandbox-api-key").read_text().strip()
    async with httpx2.AsyncClient(timeout=10) as http:
        # As the printed steps say: sign in with the key, make a link with the form's
        # suggested end user, open it and authorize.
        operator = OperatorClient(http, url)
        assert (await operator.sign_in(api_key)).status_code == 303
        home = await operator.get("/")
        assert home.status_code == 200 and "Sandbox:" in home.text
        suggested = re.search(r'name="end_user_id" value="([^"]*)"', home.text)
        assert suggested
        link = await operator.connect_link("tiktok_shop", suggested.group(1))
        callback = await press(http, link)
        connected = await http.get(callback)
        assert connected.status_code == 200, connected.text
        assert "Store connected" in connected.text

        process.terminate()
        printed = process.communicate(timeout=20)[0]
        assert api_key in printed
        match = re.search(r"^curl -H 'Authorization: Bearer (\S+)' '(\S+)'$", printed, re.M)
        assert match, printed
        assert match.group(1) == api_key
        assert "/oauth/callback" in printed  # access log line, with the code redacted
        assert "code=[redacted]" in printed
        assert (tmp_path / ".shopkeys" / "encryption-keys").stat().st_mode & 0o777 == 0o600
    # The same data directory serves the token after a restart, through the printed line.
    restarted_url, restarted = _start(
        tmp_path, "--sandbox", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        token_url = match.group(2).replace(url, restarted_url)
        answer = httpx2.get(token_url, headers={"Authorization": f"Bearer {api_key}"})
        assert answer.status_code == 200, answer.text
        assert answer.json()["provider"] == "tiktok_shop"
        assert answer.json()["access_token"]
    finally:
        restarted.terminate()
        restarted.wait(timeout=20)


def test_json_log_format_makes_every_line_of_the_service_a_json_object(tmp_path: Path) -> None:
    """`SHOPKEYS_LOG_FORMAT=json shopkeys serve`: start-up, warnings, request lines and shutdown
    are one JSON object per line on stderr, ready for a log stack."""
    url, process = _start(
        tmp_path,
        env={"SHOPKEYS_LOG_FORMAT": "json"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        refused = httpx2.get(
            f"{url}/v1/connections/con_AbCdEfGhIjKlMnOp/token?access_token=SECRETVALUE",
            headers={"Authorization": "Bearer sk_SECRETVALUE"},
        )
        assert refused.status_code == 401
    finally:
        process.terminate()
        stdout, stderr = process.communicate(timeout=20)

    assert stdout == ""
    entries = [json.loads(line) for line in stderr.splitlines()]
    assert {"ts", "level", "logger", "msg"} <= set(entries[0])
    loggers = {entry["logger"] for entry in entries}
    assert {"shopkeys", "uvicorn.error", "shopkeys.access"} <= loggers
    requests = [entry for entry in entries if entry["logger"] == "shopkeys.access"]
    token = requests[-1]
    assert token["method"] == "GET"
    assert token["path"] == "/v1/connections/con_AbCdEfGhIjKlMnOp/token?access_token=[redacted]"
    assert token["status"] == 401
    assert token["connection_id"] == "con_AbCdEfGhIjKlMnOp"
    assert token["client"].startswith("127.0.0.1:")
    assert "SECRETVALUE" not in stderr
    # uvicorn's own access log is off: ours is the only request line.
    assert not any('HTTP/1.1" 401' in entry["msg"] for entry in entries)


def test_the_sandbox_key_goes_in_a_data_directory_only_its_owner_can_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import stat

    from shopkeys.cli.serve import sandbox_api_key
    from shopkeys.config import Settings

    monkeypatch.delenv("SHOPKEYS_SANDBOX_API_KEY", raising=False)
    old = os.umask(0o022)
    try:
        key = sandbox_api_key(Settings(data_dir=tmp_path / "data"))
    finally:
        os.umask(old)
    # The first run creates the directory here, before the runtime would: it must not be 0755,
    # or the runtime warns a new user about a directory it made itself.
    assert stat.S_IMODE((tmp_path / "data").stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "data" / "sandbox-api-key").stat().st_mode) == 0o600
    assert key.startswith("sk_sandbox_")
