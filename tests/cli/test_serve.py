"""`shopkeys serve --sandbox` (what `make run` runs) as a new user meets it: a real process, a fresh
data directory, no configuration. The printed curl line returns a token after a connection."""

from __future__ import annotations

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


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    sock = reserve_socket()
    port = sock.getsockname()[1]
    sock.close()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHOPKEYS_")}
    command = [sys.executable, "-c", "from shopkeys.cli import main; main()"]
    process = subprocess.Popen(
        [*command, "serve", "--sandbox", "--port", str(port)],
        cwd=tmp_path,
        env={**env, "COLUMNS": "200"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    # Waiting for start-up, not timing: the loop ends as soon as the server answers.
    while True:
        try:
            if httpx2.get(f"{url}/healthz").status_code == 200:
                break
        except httpx2.TransportError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"shopkeys serve did not start:\n{process.communicate()[0]}")
        time.sleep(0.05)
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
        home = await http.get(f"{url}/")
        assert home.status_code == 200
        assert home.text.count(">Connect</button>") == 4
        started = await http.post(f"{url}/connect/start/tiktok_shop")
        assert started.status_code == 303
        callback = await press(
            http,
            f"{url}{started.headers['location']}"
            if started.headers["location"].startswith("/")
            else started.headers["location"],
        )
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
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHOPKEYS_")}
    sock = reserve_socket()
    port = sock.getsockname()[1]
    sock.close()
    restarted = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from shopkeys.cli import main; main()",
            "serve",
            "--sandbox",
            "--port",
            str(port),
        ],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        token_url = match.group(2).replace(url, f"http://127.0.0.1:{port}")
        deadline = time.monotonic() + 30
        while True:
            try:
                answer = httpx2.get(token_url, headers={"Authorization": f"Bearer {api_key}"})
                break
            except httpx2.TransportError:
                if restarted.poll() is not None or time.monotonic() > deadline:
                    pytest.fail("shopkeys serve did not restart")
                time.sleep(0.05)
        assert answer.status_code == 200, answer.text
        assert answer.json()["provider"] == "tiktok_shop"
        assert answer.json()["access_token"]
    finally:
        restarted.terminate()
        restarted.wait(timeout=20)
