"""The request log of `shopkeys serve`: what a line holds, as text and as JSON, and that no secret a
request carries, in any place it can carry one, reaches a log line (uvicorn's included)."""

from __future__ import annotations

import base64
import io
import json
import logging
import re
import secrets
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2
import pytest
import uvicorn
from starlette.requests import Request
from starlette.types import Message, Receive, Scope, Send

from shopkeys.cli.serve import service_app, uvicorn_options
from shopkeys.config import Settings
from shopkeys.redact import REDACTED, RedactingFilter
from shopkeys.sandbox.browser import callback_params, press
from shopkeys.web.request_log import (
    ACCESS_LOGGER,
    LogFormat,
    RequestLog,
    RequestRecord,
    configure_logging,
    loggable_client,
    loggable_path,
)
from tests.live import reserve_socket, url_of
from tests.pages.operator import OperatorClient

CONNECTION = "con_AbCdEfGhIjKlMnOp"
TEXT_REQUEST = re.compile(
    r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (?P<level>[A-Z]+) shopkeys\.access "
    r"(?P<method>[A-Z]+) (?P<path>\S+) (?P<status>\d{3}) (?P<ms>\d+\.\d\d)ms"
    r"(?: client=(?P<client>\S+))?(?: connection_id=(?P<connection>\S+))?$"
)


@pytest.fixture
def capture() -> Iterator[Callable[[LogFormat], io.StringIO]]:
    """Install the serve command's logging into a string; undone afterwards."""
    root = logging.getLogger()
    names = ("shopkeys", "uvicorn", "uvicorn.error", "uvicorn.access")
    touched = [root, *(logging.getLogger(n) for n in names)]
    saved = [(logger, logger.level, logger.propagate, logger.handlers[:]) for logger in touched]
    handlers: list[logging.Handler] = []

    def install(log_format: LogFormat) -> io.StringIO:
        stream = io.StringIO()
        handlers.append(configure_logging(log_format, stream))
        return stream

    yield install
    for handler in handlers:
        root.removeHandler(handler)
    for logger, level, propagate, previous in saved:
        logger.setLevel(level)
        logger.propagate = propagate
        if logger is not root:  # pytest's own handlers come and go on the root logger
            logger.handlers[:] = previous


async def call(
    app: Any,
    path: str,
    *,
    method: str = "GET",
    query: bytes = b"",
    client: tuple[str, int] | None = ("203.0.113.7", 50123),
) -> list[Message]:
    """One request through an ASGI app, as uvicorn would make it; what the app sent."""
    scope: Scope = {
        "type": "http",
        "method": method,
        "path": path,
        "raw_path": path.encode(),
        "query_string": query,
        "headers": [],
        "client": client,
    }
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return sent


def answering(status: int) -> Any:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    return app


# -- what a line holds ----------------------------------------------------------------------------


async def test_a_text_line_holds_method_path_status_duration_client_and_connection(
    capture: Callable[[LogFormat], io.StringIO],
) -> None:
    output = capture("text")
    await call(RequestLog(answering(200)), f"/v1/connections/{CONNECTION}/token")

    line = output.getvalue().rstrip("\n")
    assert "\n" not in line
    match = TEXT_REQUEST.match(line)
    assert match, line
    assert match["level"] == "INFO"
    assert match["method"] == "GET"
    assert match["path"] == f"/v1/connections/{CONNECTION}/token"
    assert match["status"] == "200"
    assert float(match["ms"]) >= 0
    assert match["client"] == "203.0.113.7:50123"
    assert match["connection"] == CONNECTION


async def test_a_json_line_holds_the_same_fields(
    capture: Callable[[LogFormat], io.StringIO],
) -> None:
    output = capture("json")
    await call(RequestLog(answering(404)), f"/v1/connections/{CONNECTION}", method="DELETE")

    entry = json.loads(output.getvalue())
    assert entry["level"] == "info"
    assert entry["logger"] == ACCESS_LOGGER
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", entry["ts"])
    assert entry["msg"].startswith(f"DELETE /v1/connections/{CONNECTION} 404 ")
    assert entry["method"] == "DELETE"
    assert entry["path"] == f"/v1/connections/{CONNECTION}"
    assert entry["status"] == 404
    assert isinstance(entry["duration_ms"], float)
    assert entry["client"] == "203.0.113.7:50123"
    assert entry["connection_id"] == CONNECTION


async def test_paths_without_a_connection_or_client_leave_those_fields_out(
    capture: Callable[[LogFormat], io.StringIO],
) -> None:
    text, as_json = capture("text"), capture("json")
    await call(RequestLog(answering(200)), "/healthz", client=None)
    await call(RequestLog(answering(201)), "/v1/connections/import", method="POST")

    health, imported = text.getvalue().splitlines()
    assert "client=" not in health
    assert "connection_id=" not in health
    assert "connection_id=" not in imported
    entries = [json.loads(line) for line in as_json.getvalue().splitlines()]
    assert entries[0]["client"] is None
    assert [e["connection_id"] for e in entries] == [None, None]


async def test_a_failing_app_is_logged_as_a_500_warning(
    capture: Callable[[LogFormat], io.StringIO],
) -> None:
    output = capture("json")

    async def failing(scope: Scope, receive: Receive, send: Send) -> None:
        raise RuntimeError("unforeseen")

    with pytest.raises(RuntimeError):
        await call(RequestLog(failing), "/v1/connections")
    entry = json.loads(output.getvalue())
    assert (entry["status"], entry["level"]) == (500, "warning")


async def test_nothing_is_logged_below_the_loggers_level() -> None:
    records: list[logging.LogRecord] = []
    logger = logging.getLogger("tests.request_log.quiet")
    logger.setLevel(logging.ERROR)
    logger.addHandler(handler := _Collect(records))
    try:
        await call(RequestLog(answering(200), logger), "/healthz")
        await call(RequestLog(answering(502), logger), "/healthz")
    finally:
        logger.removeHandler(handler)
    assert records == []


class _Collect(logging.Handler):
    def __init__(self, records: list[logging.LogRecord]) -> None:
        super().__init__()
        self.records = records

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_other_records_take_the_same_format_tracebacks_included(
    capture: Callable[[LogFormat], io.StringIO],
) -> None:
    text, as_json = capture("text"), capture("json")
    logging.getLogger("uvicorn.error").info("Started server process [%d]", 42)
    try:
        raise ValueError("while fetching https://x.test/cb?code=SECRETVALUE0123456789")
    except ValueError:
        logging.getLogger("uvicorn.error").exception("Exception in ASGI application")

    started, failed = (json.loads(line) for line in as_json.getvalue().splitlines())
    assert started["logger"] == "uvicorn.error"
    assert started["msg"] == "Started server process [42]"
    assert failed["level"] == "error"
    assert "Traceback" in failed["exc"]
    assert "ValueError" in failed["exc"]
    lines = text.getvalue().splitlines()
    assert lines[0].endswith(" INFO uvicorn.error Started server process [42]")
    assert lines[1].endswith(" ERROR uvicorn.error Exception in ASGI application")
    assert lines[2] == "Traceback (most recent call last):"
    assert "SECRETVALUE" not in text.getvalue() + as_json.getvalue()


# -- what a line leaves out -----------------------------------------------------------------------


def test_the_hot_path_is_logged_as_it_is() -> None:
    path = f"/v1/connections/{CONNECTION}/token"
    assert loggable_path(path, b"") == path


@pytest.mark.parametrize(
    ("path", "query", "hidden"),
    [
        ("/v1/token", b"end_user_id=alice&access_token=SECRETVALUE", "SECRETVALUE"),
        ("/x", b"access%5Ftoken=SECRETVALUE", "SECRETVALUE"),  # the name spelled with escapes
        ("/oauth/callback/shopline", b"code=SECRETVALUE&state=SECRETVALUE", "SECRETVALUE"),
        ("/v1/connections/sk_" + "K" * 43 + "/token", b"", "K" * 43),  # an API key
        ("/v1/connections/" + "T" * 48 + "/token", b"", "T" * 48),  # a token-sized segment
        ("/v1/x/refresh_token=SECRETVALUE", b"", "SECRETVALUE"),
    ],
)
def test_secrets_in_paths_and_queries_are_redacted(path: str, query: bytes, hidden: str) -> None:
    logged = loggable_path(path, query)
    assert hidden not in logged
    assert REDACTED in logged


@pytest.mark.parametrize(
    ("client", "logged"),
    [
        (("203.0.113.7", 50123), "203.0.113.7:50123"),
        (("2001:db8::1", 443), "2001:db8::1:443"),
        (("sk_" + "K" * 43, 0), "[redacted]:0"),  # from X-Forwarded-For, as a proxy passed it on
        (("unknown", 0), "[redacted]:0"),
        (None, None),
    ],
)
def test_the_client_is_logged_only_as_an_address(
    client: tuple[str, int] | None, logged: str | None
) -> None:
    assert loggable_client(client) == logged


def test_a_decoded_line_break_cannot_forge_a_line() -> None:
    logged = loggable_path("/x\n2026-01-01T00:00:00.000Z INFO shopkeys.access GET /", b"a=%0Ab")
    assert "\n" not in logged
    assert logged.isprintable()


def test_the_filter_passes_request_records_untouched_and_redacts_all_others() -> None:
    safe = RequestRecord(ACCESS_LOGGER, logging.INFO, __file__, 0, "GET /x=1 200", None, None)
    plain = logging.LogRecord("x", logging.INFO, __file__, 0, "GET /x?code=SECRET 200", None, None)
    redacting = RedactingFilter()

    assert redacting.filter(safe)
    assert redacting.filter(plain)
    assert safe.msg == "GET /x=1 200"
    assert "SECRET" not in plain.getMessage()


# -- no secret in any log line, the real service over a socket ------------------------------------


@dataclass
class Service:
    url: str
    api_key: str
    settings: Settings
    log: io.StringIO
    secrets: set[str] = field(default_factory=set)


async def _boom(request: Request) -> None:
    # An unforeseen failure whose message carries the request's URL, as a library's might.
    raise RuntimeError(f"failed on {request.url}")


@pytest.fixture(params=["text", "json"])
def service(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    capture: Callable[[LogFormat], io.StringIO],
) -> Iterator[Service]:
    """`shopkeys serve --sandbox` in-process: its app, its uvicorn options, its logging."""
    log = capture(request.param)
    sock = reserve_socket()
    # Listening before the server runs: the first request waits in the backlog for start-up.
    sock.listen(64)
    api_key = "sk_sandbox_" + secrets.token_urlsafe(24)
    settings = Settings(_env_file=None, public_url=url_of(sock), data_dir=tmp_path / "data")
    app = service_app(settings, sandbox=True, sandbox_api_key=api_key)
    app.add_route("/boom", _boom)
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, **uvicorn_options("127.0.0.1", port)))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        yield Service(url_of(sock), api_key, app.state.settings, log, {api_key})
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()


async def connect(http: httpx2.AsyncClient, service: Service, platform: str) -> dict[str, str]:
    """Connect a store through the sandbox as a merchant would; the callback's parameters."""
    started = await http.post(
        f"{service.url}/v1/connect-sessions",
        json={"provider": platform, "end_user_id": "merchant-1"},
        headers={"Authorization": f"Bearer {service.api_key}"},
    )
    assert started.status_code == 201, started.text
    link = started.json()["url"]
    service.secrets.add(callback_params(link)["session"])
    callback = await press(http, link)
    connected = await http.get(callback)
    assert connected.status_code == 200, connected.text
    return callback_params(callback)


def secret_params(**values: str) -> str:
    return "&".join(f"{name}={value}" for name, value in values.items())


async def test_no_secret_a_request_carries_reaches_the_log(service: Service) -> None:
    url, found = service.url, service.secrets
    admin = {"Authorization": f"Bearer {service.api_key}"}

    def made(kind: str) -> str:
        value = f"{kind}{secrets.token_urlsafe(24)}"
        found.add(value)
        return value

    async with httpx2.AsyncClient(timeout=30) as http:
        # The OAuth callbacks, for real: codes, states, client secrets and the tokens the
        # platforms issue travel between shopkeys and the simulators mounted in this server.
        for platform in ("aliexpress", "tiktok_shop", "shopline", "ecwid"):
            params = await connect(http, service, platform)
            found.update(params[name] for name in ("code", "state") if name in params)
            credentials = service.settings.platform(platform).credentials
            assert credentials is not None
            found.add(credentials.client_secret)
            # The same callback again: refused, and the refusal is logged.
            assert (await http.get(f"{url}/oauth/callback/{platform}?state=x")).status_code >= 400
        listed = await http.get(f"{url}/v1/connections", headers=admin)
        assert listed.status_code == 200, listed.text
        ids = [c["id"] for c in listed.json()["data"]]
        assert len(ids) == 4
        for connection_id in ids:
            token = await http.get(f"{url}/v1/connections/{connection_id}/token", headers=admin)
            assert token.status_code == 200, token.text
            issued = token.json()
            found.update(v for v in (issued["access_token"], issued.get("public_token")) if v)
            # A refresh sends the refresh token (in TikTok Shop's case, in the query string).
            await http.post(f"{url}/v1/connections/{connection_id}/refresh", headers=admin)
            again = await http.get(f"{url}/v1/connections/{connection_id}/token", headers=admin)
            if again.status_code == 200:
                found.add(again.json()["access_token"])

        api_key, access, refresh = made("sk_"), made("at"), made("rt")
        code, state, client_secret = made("code"), made("state"), made("cs")
        everything = secret_params(
            api_key=api_key,
            access_token=access,
            refresh_token=refresh,
            code=code,
            state=state,
            client_secret=client_secret,
            token=access,
            password=client_secret,
        )
        # The path, a 404's path, the query string.
        for path in (
            f"/v1/connections/{access}/token",
            f"/v1/connections/{api_key}",
            f"/{refresh}",
            f"/oauth/callback/{code}",
            f"/sandbox/tiktok_shop/api/v2/token/get?{everything}",
            f"/v1/connections?{everything}",
            f"/nowhere?{everything}",
        ):
            await http.get(url + path, headers=admin)
        # The OAuth callback URL with a code and state it never issued.
        await http.get(f"{url}/oauth/callback/tiktok_shop?code={code}&state={state}")
        # Headers and cookies.
        basic = base64.b64encode(f"client:{client_secret}".encode()).decode()
        for authorization in (f"Bearer {api_key}", f"Basic {basic}", api_key):
            await http.get(f"{url}/v1/connections", headers={"Authorization": authorization})
        await http.get(
            f"{url}/",
            headers={
                "X-Api-Key": api_key,
                "X-Access-Token": access,
                "Referer": f"https://shop.example/?code={code}&state={state}",
                "User-Agent": f"app/1 token={refresh}",
                "Cookie": f"shopkeys_browser={state}; session={refresh}",
            },
        )
        # Operators sign in with an API key in a form body, and then carry a session cookie.
        operator = OperatorClient(http, url)
        assert (await operator.sign_in(api_key)).status_code == 401
        assert (await operator.sign_in(service.api_key)).status_code == 303
        found.add(http.cookies["shopkeys_operator"])
        await operator.get("/settings")
        # Trusted from 127.0.0.1 (a proxy on the same host): it names the client.
        await http.get(f"{url}/healthz", headers={"X-Forwarded-For": access})
        # A form body and JSON bodies, a 422 among them.
        await http.post(
            f"{url}/connect/confirm",
            data={"session": state, "decision": "connect", "client_secret": client_secret},
        )
        await http.post(
            f"{url}/v1/connections/import",
            headers=admin,
            json={"provider": "shopline", "access_token": access, "refresh_token": refresh},
        )
        invalid = await http.post(
            f"{url}/v1/connect-sessions",
            headers=admin,
            json={"provider": access, "end_user_id": {"refresh_token": refresh}, "code": code},
        )
        assert invalid.status_code == 422
        # An unforeseen exception whose message holds the URL: uvicorn logs its traceback.
        assert (await http.get(f"{url}/boom?{everything}")).status_code == 500

    # A request the server cannot parse, secrets in its request line and headers.
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as raw:
        raw.sendall(
            f"GET /x?code={code} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {api_key}\r\n"
            "Bad Header Line\r\n\r\n".encode()
        )
        raw.recv(4096)

    text = service.log.getvalue()
    assert text.count("shopkeys.access") > 40, text[:2000]
    assert "Exception in ASGI application" in text
    assert "RuntimeError" in text
    # Counted, never shown: a failing assertion must not print the secrets it found.
    leaked = sorted(len(value) for value in found if value in text)
    assert leaked == [], f"{len(leaked)} secret(s) in the log"
    unredacted = re.findall(
        r"(?i)(?:access_token|refresh_token|app_secret|client_secret|auth_code|api_key"
        r"|[?&](?:code|state|sign|token|session))=(?!\[redacted\])",
        text,
    )
    assert unredacted == [], f"{len(unredacted)} secret parameter(s) left in the log"
    if '"logger":' in text:
        for line in text.splitlines():
            json.loads(line)
