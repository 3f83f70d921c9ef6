"""The simulators' shared machinery: mounting, controls, fault injection, clock, codes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx2
import pytest
from rich.console import Console

from shopkeys.config import Settings
from shopkeys.platform import Platform
from shopkeys.sandbox import DEMO_CREDENTIALS, base_urls, build_sandbox, point_at_sandbox
from shopkeys.sandbox.browser import BrowserError, callback_params, press
from shopkeys.sandbox.core import (
    CodeBook,
    CodeProblem,
    Fault,
    Faults,
    SandboxClock,
    SimAccount,
    with_query,
)
from shopkeys.sandbox.serve import describe
from tests.conftest import LiveSandbox


def test_every_platform_is_mounted_under_its_name() -> None:
    sandbox = build_sandbox(Settings(_env_file=None))
    mounts = sorted(route.path for route in sandbox.app.routes)  # type: ignore[attr-defined]
    assert mounts == sorted(f"/sandbox/{name}" for name in Platform)
    assert base_urls("http://h:1/")["ecwid"] == "http://h:1/sandbox/ecwid"


def test_simulated_apps_accept_configured_credentials_else_demo_ones() -> None:
    settings = Settings(
        _env_file=None,
        public_url="https://keys.example.com",
        shopline_client_id="mine",
        shopline_client_secret="my-secret",
    )
    sandbox = build_sandbox(settings)
    shopline = sandbox.simulators["shopline"].app
    assert (shopline.client_id, shopline.client_secret) == ("mine", "my-secret")
    assert shopline.redirect_uri == "https://keys.example.com/oauth/callback/shopline"
    ecwid = sandbox.simulators["ecwid"].app
    assert (ecwid.client_id, ecwid.client_secret) == DEMO_CREDENTIALS["ecwid"][:2]
    assert sandbox.simulators["tiktok_shop"].app.service_id == DEMO_CREDENTIALS["tiktok_shop"][2]


def test_sandbox_lifetime_settings_override_the_platforms() -> None:
    settings = Settings(_env_file=None, sandbox_access_ttl=5, sandbox_code_ttl=7)
    sandbox = build_sandbox(settings)
    assert sandbox.simulators["shopline"].lifetimes.access == 5
    assert sandbox.simulators["aliexpress"].lifetimes.code == 7
    # A platform whose tokens never expire keeps them that way.
    assert sandbox.simulators["ecwid"].lifetimes.access is None


def test_point_at_sandbox_configures_every_platform() -> None:
    settings = point_at_sandbox(Settings(_env_file=None, public_url="http://127.0.0.1:9000"))
    for name in Platform:
        assert settings.platform(name).credentials is not None
        assert settings.platform(name).base_url == f"http://127.0.0.1:9000/sandbox/{name}"
    assert (
        settings.platform("tiktok_shop").credentials.service_id
        == DEMO_CREDENTIALS["tiktok_shop"][2]
    )  # type: ignore[union-attr]


def test_describe_prints_base_urls_and_credentials() -> None:
    console = Console(record=True, width=200)
    sandbox = build_sandbox(Settings(_env_file=None))
    describe(sandbox, "http://127.0.0.1:8000", console)
    text = console.export_text()
    for name in Platform:
        assert f"http://127.0.0.1:8000/sandbox/{name}" in text
        assert DEMO_CREDENTIALS[name][0] in text


def test_faults_fire_the_given_number_of_times() -> None:
    faults = Faults()
    faults.set("token", Fault(status=503, times=2))
    assert faults.take("token") is not None
    assert faults.take("token") is not None
    assert faults.take("token") is None
    assert faults.take("other") is None


def test_fault_rate_is_deterministic_for_a_seed() -> None:
    def pattern() -> list[bool]:
        faults = Faults(seed=7)
        faults.set("token", Fault(status=500, rate=0.5))
        return [faults.take("token") is not None for _ in range(40)]

    first = pattern()
    assert first == pattern()
    assert 5 < sum(first) < 35


def test_fault_from_json_rejects_unknown_settings() -> None:
    assert Fault.from_json({"status": 502}).status == 502
    with pytest.raises(ValueError, match="unknown fault settings: typo"):
        Fault.from_json({"typo": 1})


def test_code_book_codes_are_single_use_and_expire() -> None:
    clock = SandboxClock(lambda: datetime(2026, 1, 1, tzinfo=UTC))
    book = CodeBook(clock)
    account = SimAccount("store")
    book.issue("a", account, 60)
    book.issue("b", account, 60)
    assert book.redeem("a").account == account
    with pytest.raises(CodeProblem) as used:
        book.redeem("a")
    assert used.value.reason == "used"
    clock.advance(61)
    with pytest.raises(CodeProblem) as expired:
        book.redeem("b")
    assert expired.value.reason == "expired"
    with pytest.raises(CodeProblem) as unknown:
        book.redeem("zzz")
    assert unknown.value.reason == "unknown"


def test_sandbox_clock_moves_and_resets() -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    clock = SandboxClock(lambda: start)
    clock.advance(3600)
    assert clock() == start + timedelta(hours=1)
    clock.reset()
    assert clock() == start


def test_accounts_are_stable_per_login() -> None:
    assert SimAccount("a").digits(10) == SimAccount("a").digits(10)
    assert SimAccount("a").digits(10) != SimAccount("b").digits(10)
    assert len(SimAccount("a").digits(12)) == 12
    assert SimAccount("a").hex(24) == SimAccount("a").hex(24)
    assert SimAccount("my-store").display_name == "My Store"


def test_with_query_keeps_existing_parameters() -> None:
    assert with_query("https://x/cb?a=1", {"code": "c d"}) == "https://x/cb?a=1&code=c+d"


async def test_control_routes_over_http(
    live_sandbox: LiveSandbox, http: httpx2.AsyncClient
) -> None:
    base = live_sandbox.base_url("shopline")
    simulator = live_sandbox.simulator("shopline")
    described = (await http.get(f"{base}/_sandbox")).json()
    assert described["platform"] == "shopline"
    assert described["faults"] == {}

    set_fault = await http.put(f"{base}/_sandbox/faults/token", json={"status": 503, "times": 1})
    assert set_fault.status_code == 200
    assert simulator.faults.active()["token"].status == 503
    assert (await http.put(f"{base}/_sandbox/faults/token", json={"nope": 1})).status_code == 400
    assert (await http.delete(f"{base}/_sandbox/faults/token")).json() == {"cleared": "token"}
    await http.put(f"{base}/_sandbox/faults/token", json={"status": 503})
    assert (await http.delete(f"{base}/_sandbox/faults")).json() == {"cleared": "all"}
    assert simulator.faults.active() == {}

    before = simulator.clock()
    moved = await http.post(f"{base}/_sandbox/clock", json={"advance": 86_400})
    assert moved.status_code == 200
    assert simulator.clock() - before >= timedelta(days=1)
    assert (await http.post(f"{base}/_sandbox/clock", json={"reset": True})).status_code == 200
    assert simulator.clock() - before < timedelta(hours=1)
    assert (await http.post(f"{base}/_sandbox/clock", json={})).status_code == 400

    lifetimes = await http.put(f"{base}/_sandbox/lifetimes", json={"access": 30})
    assert lifetimes.json()["access"] == 30
    assert simulator.lifetimes.access == 30
    bad = await http.put(f"{base}/_sandbox/lifetimes", json={"access": "soon"})
    assert bad.status_code == 400
    assert (await http.put(f"{base}/_sandbox/lifetimes", json={"other": 1})).status_code == 400


async def test_reset_restores_lifetimes(live_sandbox: LiveSandbox) -> None:
    simulator = live_sandbox.simulator("aliexpress")
    original = simulator.lifetimes.access
    simulator.lifetimes.access = 1
    simulator.reset()
    assert simulator.lifetimes.access == original


@pytest.mark.parametrize(
    ("fault", "check"),
    [
        ({"status": 502}, lambda r: r.status_code == 502),
        ({"status": 429, "retry_after": 12}, lambda r: r.headers["retry-after"] == "12"),
        ({"malformed": True}, lambda r: r.status_code == 200 and r.text.startswith("<html>")),
    ],
)
async def test_http_faults_apply_to_the_named_endpoint(
    live_sandbox: LiveSandbox, http: httpx2.AsyncClient, fault: dict[str, object], check: object
) -> None:
    base = live_sandbox.base_url("shopline")
    await http.put(f"{base}/_sandbox/faults/token_info", json=fault)
    answer = await http.get(f"{base}/oauth/token/info", headers={"Authorization": "Bearer x"})
    assert check(answer)  # type: ignore[operator]


async def test_dropped_connection_is_a_transport_error(
    live_sandbox: LiveSandbox, http: httpx2.AsyncClient
) -> None:
    base = live_sandbox.base_url("shopline")
    await http.put(f"{base}/_sandbox/faults/token_info", json={"drop": True, "times": 1})
    with pytest.raises(httpx2.TransportError):
        await http.get(f"{base}/oauth/token/info", headers={"Authorization": "Bearer x"})
    # Only once: the next request is answered normally (401 for a made-up token).
    again = await http.get(f"{base}/oauth/token/info", headers={"Authorization": "Bearer x"})
    assert again.status_code == 401


async def test_webhook_control_refuses_platforms_that_do_not_sign(
    live_sandbox: LiveSandbox, http: httpx2.AsyncClient
) -> None:
    base = live_sandbox.base_url("aliexpress")
    answer = await http.post(
        f"{base}/_sandbox/webhooks", json={"url": "http://127.0.0.1:9/x", "payload": {}}
    )
    assert answer.status_code == 404
    assert (await http.post(f"{base}/_sandbox/webhooks", json={})).status_code == 400


async def test_browser_reports_a_page_without_the_button(
    live_sandbox: LiveSandbox, http: httpx2.AsyncClient
) -> None:
    with pytest.raises(BrowserError, match="HTTP 404"):
        await press(http, f"{live_sandbox.url}/sandbox/nowhere")
    page_url = f"{live_sandbox.base_url('shopline')}/_sandbox"
    with pytest.raises(BrowserError, match="no 'Authorize' button"):
        await press(http, page_url)
    assert callback_params("https://x/cb?code=1&state=") == {"code": "1", "state": ""}
