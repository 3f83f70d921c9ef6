"""The `shopkeys` command: output for people and scripts, one clear line for every mistake."""

from __future__ import annotations

import json
import re
import stat
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import Result
from sqlalchemy import select

from shopkeys.api_keys import ApiKeys
from shopkeys.cli import connections as connections_cli
from shopkeys.crypto import KEY_FILE_NAME, KeyRing
from shopkeys.grant import Account, Grant
from shopkeys.runtime import open_runtime
from shopkeys.store.records import Connection, Event
from shopkeys.store.tables import AuthSessionRow, ConnectionRow
from tests.cli.conftest import Cli
from tests.conftest import LiveSandbox

COMMANDS = [
    "serve",
    "sandbox",
    "connect",
    "list",
    "show",
    "token",
    "refresh",
    "claim",
    "disconnect",
    "import",
    "keys",
    "apikey",
    "db",
    "doctor",
]


def one_clear_error(result: Result, *needles: str) -> str:
    """Exit non-zero, nothing on stdout, one `error:` line on stderr, no traceback."""
    assert result.exit_code != 0, result.stdout
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), lines
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def test_help_lists_every_command(cli: Cli) -> None:
    result = cli("--help")
    assert result.exit_code == 0
    for command in COMMANDS:
        assert re.search(rf"^\W*{command}\b", result.stdout, re.MULTILINE), command
    for group, subcommands in (
        ("keys", ["rotate"]),
        ("apikey", ["create", "list", "revoke"]),
        ("db", ["upgrade"]),
    ):
        shown = cli(group, "--help")
        assert shown.exit_code == 0
        for sub in subcommands:
            assert sub in shown.stdout


# -- API keys ------------------------------------------------------------------------------------


def test_apikey_create_prints_the_key_alone_and_it_works(db_cli: Cli) -> None:
    result = db_cli("apikey", "create", "ci-bot", "--scope", "read")
    assert result.exit_code == 0, result.stderr
    value = result.stdout.strip()
    assert result.stdout == value + "\n"  # the key alone, so `$(shopkeys apikey create x)` works
    assert re.fullmatch(r"sk_[A-Za-z0-9_-]{40,}", value)
    assert value not in result.stderr and "read" in result.stderr

    async def check() -> tuple[str | None, str | None]:
        rt = await open_runtime(db_cli.settings())
        try:
            fresh = ApiKeys(rt.vault)  # nothing in memory: it must come from the database
            found = await fresh.check(value)
            wrong = await fresh.check(value + "x")
            return (found.scope if found else None), (wrong.scope if wrong else None)
        finally:
            await rt.close()

    assert db_cli.run(check()) == ("read", None)

    listed = db_cli("apikey", "list")
    assert listed.exit_code == 0
    assert "ci-bot" in listed.stdout and value[:10] in listed.stdout
    assert value not in listed.stdout and value not in listed.stderr

    key_id = re.search(r"key_[A-Za-z0-9_-]+", listed.stdout)
    assert key_id is not None
    revoked = db_cli("apikey", "revoke", key_id.group(0))
    assert revoked.exit_code == 0 and "revoked" in revoked.stdout

    async def check_revoked() -> bool:
        rt = await open_runtime(db_cli.settings())
        try:
            return await ApiKeys(rt.vault).check(value) is None
        finally:
            await rt.close()

    assert db_cli.run(check_revoked())
    one_clear_error(db_cli("apikey", "revoke", "key_nope"), "no API key key_nope")


def test_apikey_list_when_empty(cli: Cli) -> None:
    result = cli("apikey", "list")
    assert result.exit_code == 0 and "No API keys" in result.stdout


def test_apikey_bad_scope(cli: Cli) -> None:
    one_clear_error(cli("apikey", "create", "x", "--scope", "superuser"), "scope", "admin")


# -- connections ---------------------------------------------------------------------------------


@pytest.fixture
def shopline(db_cli: Cli, live_sandbox: LiveSandbox) -> tuple[Cli, str]:
    db_cli.point_at(live_sandbox, "shopline")
    connection = db_cli.connect_via_sandbox("shopline")
    return db_cli, connection.id


def stored_tokens(cli: Cli, connection_id: str) -> tuple[str, str | None, int]:
    async def read() -> tuple[str, str | None, int]:
        rt = await open_runtime(cli.settings())
        try:
            stored = await rt.vault.connections.tokens(connection_id)
            assert stored is not None
            return stored.access_token, stored.refresh_token, stored.connection.version
        finally:
            await rt.close()

    result: tuple[str, str | None, int] = cli.run(read())
    return result


def test_list_show_and_token(shopline: tuple[Cli, str]) -> None:
    cli, connection_id = shopline
    access, refresh, _ = stored_tokens(cli, connection_id)

    listed = cli("list")
    assert listed.exit_code == 0, listed.stderr
    header = listed.stdout.splitlines()[1]
    for column in ("id", "platform", "account", "status", "access expires", "refresh expires"):
        assert column in header
    [line] = [row for row in listed.stdout.splitlines() if connection_id in row]
    assert "shopline" in line and "active" in line and " in " in line
    assert access not in listed.stdout
    assert "No connections" in cli("list", "--provider", "ecwid").stdout
    assert connection_id in cli("list", "--status", "active").stdout
    assert connection_id not in cli("list", "--status", "needs_reauth").stdout

    shown = cli("show", connection_id)
    assert shown.exit_code == 0, shown.stderr
    assert connection_id in shown.stdout and "connected" in shown.stdout
    for secret in (access, refresh or "-"):
        assert secret not in shown.stdout and secret not in shown.stderr

    raw = cli("token", connection_id)
    assert raw.exit_code == 0, raw.stderr
    assert raw.stdout == access + "\n"

    as_json = cli("token", connection_id, "--format", "json")
    document = json.loads(as_json.stdout)
    assert document["access_token"] == access
    assert document["provider"] == "shopline"
    assert document["connection_id"] == connection_id
    assert document["expires_at"]

    as_env = cli("token", connection_id, "--format", "env")
    assert as_env.stdout == f"SHOPLINE_ACCESS_TOKEN={access}\n"

    # Typer's own usage error: exit status 2, a message naming the option, no traceback.
    usage = cli("token", connection_id, "--format", "yaml")
    assert usage.exit_code == 2 and "--format" in usage.stderr
    assert "Traceback" not in usage.stderr


def test_refresh_against_the_sandbox(shopline: tuple[Cli, str]) -> None:
    cli, connection_id = shopline
    access, refresh, version = stored_tokens(cli, connection_id)
    result = cli("refresh", connection_id)
    assert result.exit_code == 0, result.stderr
    assert f"{connection_id}: refreshed" in result.stdout
    new_access, new_refresh, new_version = stored_tokens(cli, connection_id)
    assert new_access != access and new_refresh != refresh and new_version == version + 1
    assert new_access not in result.stdout

    everything = cli("refresh", "--all")
    assert everything.exit_code == 0, everything.stderr
    assert stored_tokens(cli, connection_id)[0] != new_access

    one_clear_error(cli("refresh"), "--all")
    one_clear_error(cli("refresh", "con_nope"), "no connection con_nope")


def test_refresh_of_a_revoked_grant_fails_clearly(
    shopline: tuple[Cli, str], live_sandbox: LiveSandbox
) -> None:
    cli, connection_id = shopline
    _, refresh, _ = stored_tokens(cli, connection_id)
    # A refresh elsewhere (another copy of the token) rotates it: ours is now dead.
    import asyncio

    import httpx2

    async def use_elsewhere() -> None:
        async with httpx2.AsyncClient(timeout=10) as http:
            await live_sandbox.provider("shopline").refresh(http, refresh or "")

    asyncio.run(use_elsewhere())
    result = cli("refresh", connection_id)
    line = one_clear_error(result, connection_id)
    assert refresh not in line
    assert "needs_reauth" in cli("show", connection_id).stdout
    one_clear_error(cli("token", connection_id), "needs_reauth")


def test_disconnect(shopline: tuple[Cli, str]) -> None:
    cli, connection_id = shopline
    declined = cli("disconnect", connection_id, input="n\n")
    assert declined.exit_code != 0
    assert connection_id in cli("list").stdout
    result = cli("disconnect", connection_id, "--yes")
    assert result.exit_code == 0 and f"deleted {connection_id}" in result.stdout
    assert connection_id not in cli("list").stdout
    one_clear_error(cli("show", connection_id), "no connection")
    one_clear_error(cli("disconnect", connection_id, "--yes"), "no connection")


def test_import_a_token_obtained_elsewhere(db_cli: Cli, live_sandbox: LiveSandbox) -> None:
    db_cli.point_at(live_sandbox, "shopline")
    # A token issued by the platform to this app, outside shopkeys.
    import asyncio

    import httpx2

    from shopkeys.sandbox.browser import callback_params, press

    async def obtain() -> tuple[str, str]:
        provider = live_sandbox.provider("shopline")
        redirect = live_sandbox.redirect_uri("shopline")
        async with httpx2.AsyncClient(timeout=10) as http:
            callback = await press(http, provider.authorization_url("s" * 32, redirect))
            params = callback_params(callback)
            grant = await provider.exchange_code(
                http,
                params.pop("code"),
                redirect,
                **{k: v for k, v in params.items() if k != "state"},
            )
        return grant.access_token, grant.refresh_token or ""

    access, refresh = asyncio.run(obtain())
    result = db_cli(
        "import",
        "shopline",
        "--end-user",
        "u7",
        "--access-expires-at",
        "2099-01-01T00:00:00",
        SHOPKEYS_IMPORT_ACCESS_TOKEN=access,
        SHOPKEYS_IMPORT_REFRESH_TOKEN=refresh,
    )
    assert result.exit_code == 0, result.stderr
    assert access not in result.stdout + result.stderr
    match = re.search(r"imported (con_\S+)", result.stdout)
    assert match is not None, result.stdout
    assert db_cli("token", match.group(1)).stdout == access + "\n"
    again = db_cli(
        "import", "shopline", SHOPKEYS_IMPORT_ACCESS_TOKEN=access, SHOPKEYS_IMPORT_REFRESH_TOKEN=""
    )
    assert again.exit_code == 0, again.stderr
    assert f"updated {match.group(1)}" in again.stdout

    one_clear_error(
        db_cli("import", "shopify", SHOPKEYS_IMPORT_ACCESS_TOKEN="x"), "unknown platform"
    )
    one_clear_error(
        db_cli("import", "ecwid", SHOPKEYS_IMPORT_ACCESS_TOKEN="x"), "ecwid is not configured"
    )


def test_user_mistakes_are_one_line(cli: Cli) -> None:
    one_clear_error(cli("show", "con_nope"), "no connection con_nope")
    one_clear_error(cli("token", "con_nope"), "no connection con_nope")
    one_clear_error(cli("connect", "shopify"), "unknown platform 'shopify'", "aliexpress")
    one_clear_error(cli("list", "--provider", "shopify"), "unknown platform")
    one_clear_error(cli("list", "--status", "sleeping"), "unknown status")
    one_clear_error(cli("connect", "ecwid", "--no-browser"), "not configured")
    bad_keys = cli("list", SHOPKEYS_ENCRYPTION_KEYS="k1:tooshort")
    line = one_clear_error(bad_keys, "32 bytes")
    assert "tooshort" not in line


def test_connect_prints_the_link_and_gives_up_after_the_wait(
    cli: Cli, live_sandbox: LiveSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(connections_cli, "POLL_INTERVAL", 0.05)
    cli.point_at(live_sandbox, "ecwid")
    result = cli("connect", "ecwid", "--no-browser", "--wait", "1", "--end-user", "u1")
    assert "Open this link" in result.stdout
    assert re.search(r"http://shopkeys\.test/connect[/?][=A-Za-z0-9_-]{40,}", result.stdout)
    one_clear_error(result, "no callback within 1 s", "http://shopkeys.test")


def test_connect_waits_for_the_callback(
    cli: Cli, live_sandbox: LiveSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While the command waits, the merchant authorizes (the service completes the callback)."""
    monkeypatch.setattr(connections_cli, "POLL_INTERVAL", 0.05)
    cli.point_at(live_sandbox, "ecwid")
    original = connections_cli._pause
    finished: list[str] = []

    async def merchant_acts_while_we_wait(delay: float) -> None:
        if not finished:
            finished.append("yes")
            await _complete_latest_session(cli)
        await original(delay)

    monkeypatch.setattr(connections_cli, "_pause", merchant_acts_while_we_wait)
    result = cli("connect", "ecwid", "--no-browser", "--wait", "5")
    assert result.exit_code == 0, result.stderr
    assert "connected" in result.stdout and re.search(r"as con_\S+", result.stdout)
    assert finished == ["yes"]


async def _complete_latest_session(cli: Cli) -> None:
    """Act as the service: the link's session gets a state, the merchant authorizes."""
    import httpx2

    from shopkeys.sandbox.browser import callback_params, press
    from shopkeys.store.tables import AuthSessionRow

    rt = await open_runtime(cli.settings())
    try:
        async with rt.engine.connect() as connection:
            session_id = await connection.scalar(select(AuthSessionRow.id))
        # The link's token is only in the command's output; issue a state for the session
        # directly, as `/connect/{token}` would.
        from datetime import timedelta

        from shopkeys.crypto import fingerprint

        state = "st-" + "x" * 40
        browser = "the-merchants-browser"
        await rt.vault.sessions.issue_state(
            session_id,
            fingerprint(state),
            rt.clock() + timedelta(minutes=10),
            browser_hash=fingerprint(browser),
        )
        provider = rt.providers["ecwid"]
        url = provider.authorization_url(state, rt.settings.platform("ecwid").redirect_uri)
        async with httpx2.AsyncClient(timeout=10) as http:
            callback = await press(http, url)
        await rt.connect.complete("ecwid", callback_params(callback), browser=browser)
    finally:
        await rt.close()


# -- claim, refreshes that cannot happen, public tokens ------------------------------------------


def ecwid_grant(store_id: str, *, public_token: str | None = None) -> Grant:
    """An Ecwid grant as the platform issues it: no expiry, no refresh token."""
    return Grant(
        provider="ecwid",
        access_token=f"secret_{store_id}_access",
        refresh_token=None,
        access_expires_at=None,
        refresh_expires_at=None,
        scopes=["read_store_profile"],
        account_id=store_id,
        public_token=public_token,
    )


def store_connection(cli: Cli, grant: Grant, *, end_user: str | None = None) -> str:
    """Store `grant` through the vault (as an App Market install would, with no end user)."""

    async def write() -> str:
        rt = await open_runtime(cli.settings())
        try:
            account = Account(account_id=grant.account_id, name=f"Store {grant.account_id}")
            connection, created = await rt.vault.connections.upsert(
                grant, account, end_user_id=end_user
            )
            assert created
            return connection.id
        finally:
            await rt.close()

    result: str = cli.run(write())
    return result


def read_connection(cli: Cli, connection_id: str) -> tuple[Connection, list[Event]]:
    """The connection as stored, and its events (newest first)."""

    async def read() -> tuple[Connection, list[Event]]:
        rt = await open_runtime(cli.settings())
        try:
            connection = await rt.vault.connections.get(connection_id)
            assert connection is not None
            return connection, await rt.vault.events.recent(connection_id)
        finally:
            await rt.close()

    result: tuple[Connection, list[Event]] = cli.run(read())
    return result


def end_user_changes(events: list[Event]) -> list[dict[str, object]]:
    """The `end_user_changed` events' details, oldest first."""
    return [e.detail for e in reversed(events) if e.kind == "end_user_changed"]


def test_claim_gives_a_connection_to_an_end_user_and_release_takes_it_back(db_cli: Cli) -> None:
    connection_id = store_connection(db_cli, ecwid_grant("1001"))
    assert read_connection(db_cli, connection_id)[0].end_user_id is None

    claimed = db_cli("claim", connection_id, "merchant-9")
    assert claimed.exit_code == 0, claimed.stderr
    assert f"{connection_id} (1001) now belongs to merchant-9" in claimed.stdout
    connection, events = read_connection(db_cli, connection_id)
    assert connection.end_user_id == "merchant-9"
    assert end_user_changes(events) == [{"from": None, "to": "merchant-9"}]
    shown = db_cli("show", connection_id)
    assert re.search(r"end user\s*│\s*merchant-9\b", shown.stdout), shown.stdout
    assert "end_user_changed" in shown.stdout
    assert connection_id in db_cli("list", "--end-user", "merchant-9").stdout

    # The same end user again changes nothing and records nothing.
    again = db_cli("claim", connection_id, "merchant-9")
    assert again.exit_code == 0, again.stderr
    assert end_user_changes(read_connection(db_cli, connection_id)[1]) == [
        {"from": None, "to": "merchant-9"}
    ]

    # Taking a claimed store from its end user is deliberate: --replace.
    one_clear_error(db_cli("claim", connection_id, "merchant-10"), "--replace")
    assert read_connection(db_cli, connection_id)[0].end_user_id == "merchant-9"
    moved = db_cli("claim", connection_id, "merchant-10", "--replace")
    assert moved.exit_code == 0, moved.stderr
    connection, events = read_connection(db_cli, connection_id)
    assert connection.end_user_id == "merchant-10"
    assert end_user_changes(events)[-1] == {"from": "merchant-9", "to": "merchant-10"}

    released = db_cli("claim", connection_id, "--release")
    assert released.exit_code == 0, released.stderr
    assert f"{connection_id} (1001) now belongs to no end user" in released.stdout
    connection, events = read_connection(db_cli, connection_id)
    assert connection.end_user_id is None
    assert end_user_changes(events) == [
        {"from": None, "to": "merchant-9"},
        {"from": "merchant-9", "to": "merchant-10"},
        {"from": "merchant-10", "to": None},
    ]
    assert connection_id not in db_cli("list", "--end-user", "merchant-10").stdout
    # The tokens are untouched by a change of owner.
    assert db_cli("token", connection_id).stdout == "secret_1001_access\n"


def test_claim_mistakes_are_one_line_and_change_nothing(db_cli: Cli) -> None:
    connection_id = store_connection(db_cli, ecwid_grant("1001"), end_user="u1")
    one_clear_error(db_cli("claim", connection_id), "end user", "--release")
    one_clear_error(db_cli("claim", connection_id, "u2", "--release"), "end user", "--release")
    one_clear_error(db_cli("claim", "con_nope", "u2"), "no connection con_nope")
    one_clear_error(db_cli("claim", "con_nope", "--release"), "no connection con_nope")
    one_clear_error(db_cli("claim", connection_id, "x" * 256), "255")
    one_clear_error(db_cli("claim", connection_id, ""), "255")
    connection, events = read_connection(db_cli, connection_id)
    assert connection.end_user_id == "u1"
    assert end_user_changes(events) == []

    # 255 characters is the limit, not beyond it.
    longest = db_cli("claim", connection_id, "y" * 255, "--replace")
    assert longest.exit_code == 0, longest.stderr
    assert read_connection(db_cli, connection_id)[0].end_user_id == "y" * 255


def _assert_untouched(cli: Cli, connection_id: str, before: tuple[str, str | None, int]) -> None:
    """No refresh happened and none was recorded as failing."""
    assert stored_tokens(cli, connection_id) == before
    connection, events = read_connection(cli, connection_id)
    assert connection.status == "active"
    assert (connection.refresh_failures, connection.last_error) == (0, None)
    assert [e.kind for e in events] == ["connected"]
    assert cli("token", connection_id).stdout == before[0] + "\n"


def test_refresh_of_tokens_that_never_expire_is_refused(
    db_cli: Cli, live_sandbox: LiveSandbox
) -> None:
    db_cli.point_at(live_sandbox, "ecwid")
    connection_id = db_cli.connect_via_sandbox("ecwid").id
    before = stored_tokens(db_cli, connection_id)
    result = db_cli("refresh", connection_id)
    line = one_clear_error(result, connection_id, "not refreshable", "do not expire")
    assert before[0] not in line
    assert "refreshed" not in result.stdout
    _assert_untouched(db_cli, connection_id, before)


def test_refresh_of_a_grant_without_a_refresh_token_is_refused(db_cli: Cli) -> None:
    # AliExpress is refreshable in general; this imported grant came without a refresh token.
    db_cli.env["SHOPKEYS_ALIEXPRESS_APP_KEY"] = "ae-key"
    db_cli.env["SHOPKEYS_ALIEXPRESS_APP_SECRET"] = "ae-secret"
    imported = db_cli(
        "import",
        "aliexpress",
        "--account-id",
        "2001234567",
        "--access-expires-at",
        "2099-01-01T00:00:00",
        SHOPKEYS_IMPORT_ACCESS_TOKEN="ae-imported-access",
        SHOPKEYS_IMPORT_REFRESH_TOKEN="",
    )
    assert imported.exit_code == 0, imported.stderr
    match = re.search(r"imported (con_\S+)", imported.stdout)
    assert match is not None, imported.stdout
    connection_id = match.group(1)
    before = stored_tokens(db_cli, connection_id)
    assert before[1] is None

    result = db_cli("refresh", connection_id)
    one_clear_error(result, connection_id, "not refreshable", "no refresh token")
    assert "refreshed" not in result.stdout
    _assert_untouched(db_cli, connection_id, before)


def test_refresh_all_skips_what_cannot_be_refreshed(db_cli: Cli, live_sandbox: LiveSandbox) -> None:
    db_cli.point_at(live_sandbox, "shopline", "ecwid", "aliexpress")
    shopline_id = db_cli.connect_via_sandbox("shopline").id
    ecwid_id = db_cli.connect_via_sandbox("ecwid").id
    aliexpress_id = store_connection(
        db_cli,
        Grant(
            provider="aliexpress",
            access_token="ae-access",
            refresh_token=None,
            access_expires_at=datetime(2099, 1, 1, tzinfo=UTC),
            refresh_expires_at=None,
            scopes=[],
            account_id="2001234567",
        ),
    )
    ecwid_before = stored_tokens(db_cli, ecwid_id)
    aliexpress_before = stored_tokens(db_cli, aliexpress_id)
    shopline_access = stored_tokens(db_cli, shopline_id)[0]

    result = db_cli("refresh", "--all")
    assert result.exit_code == 0, result.stdout + result.stderr
    assert "error" not in result.stderr

    def line_of(connection_id: str, output: str) -> str:
        [line] = [row for row in output.splitlines() if row.startswith(connection_id)]
        return line

    assert "skipped" in line_of(ecwid_id, result.stdout)
    assert "do not expire" in line_of(ecwid_id, result.stdout)
    assert "skipped" in line_of(aliexpress_id, result.stdout)
    assert "no refresh token" in line_of(aliexpress_id, result.stdout)
    assert "refreshed" in line_of(shopline_id, result.stdout)
    assert stored_tokens(db_cli, shopline_id)[0] != shopline_access
    _assert_untouched(db_cli, ecwid_id, ecwid_before)
    _assert_untouched(db_cli, aliexpress_id, aliexpress_before)

    # A real failure still fails the run; the skipped ones are still only skipped.
    import httpx2

    async def use_elsewhere(refresh_token: str) -> None:
        async with httpx2.AsyncClient(timeout=10) as http:
            await live_sandbox.provider("shopline").refresh(http, refresh_token)

    db_cli.run(use_elsewhere(stored_tokens(db_cli, shopline_id)[1] or ""))
    failed = db_cli("refresh", "--all")
    assert failed.exit_code == 1
    assert "skipped" in line_of(ecwid_id, failed.stdout)
    assert "skipped" in line_of(aliexpress_id, failed.stdout)
    errors = [row for row in failed.stderr.splitlines() if row.startswith("error:")]
    assert len(errors) == 1 and shopline_id in errors[0], failed.stderr


def test_token_json_carries_the_public_token_only_where_there_is_one(db_cli: Cli) -> None:
    with_public = store_connection(db_cli, ecwid_grant("1001", public_token="public_x"))
    without = store_connection(db_cli, ecwid_grant("1002"))

    document = json.loads(db_cli("token", with_public, "--format", "json").stdout)
    assert document == {
        "access_token": "secret_1001_access",
        "expires_at": None,
        "provider": "ecwid",
        "account_id": "1001",
        "connection_id": with_public,
        "public_token": "public_x",
    }
    plain = json.loads(db_cli("token", without, "--format", "json").stdout)
    assert "public_token" not in plain
    assert plain["access_token"] == "secret_1002_access"

    # The other formats and `show` print the access token alone, never the public token.
    assert db_cli("token", with_public).stdout == "secret_1001_access\n"
    env = db_cli("token", with_public, "--format", "env")
    assert env.stdout == "ECWID_ACCESS_TOKEN=secret_1001_access\n"
    shown = db_cli("show", with_public)
    assert shown.exit_code == 0 and "public_x" not in shown.stdout + shown.stderr


# -- keys, database, doctor ----------------------------------------------------------------------


def _ciphertext_key_ids(cli: Cli) -> set[str]:
    async def read() -> set[str]:
        rt = await open_runtime(cli.settings())
        try:
            async with rt.engine.connect() as connection:
                rows = await connection.execute(
                    select(ConnectionRow.access_token, ConnectionRow.refresh_token)
                )
                return {v.split(".")[1] for row in rows for v in row if v}
        finally:
            await rt.close()

    result: set[str] = cli.run(read())
    return result


def test_keys_rotate_with_the_key_file(db_cli: Cli, live_sandbox: LiveSandbox) -> None:
    del db_cli.env["SHOPKEYS_ENCRYPTION_KEYS"]
    db_cli.point_at(live_sandbox, "shopline", "ecwid")
    first = db_cli("list")
    assert first.exit_code == 0
    key_file = db_cli.data_dir / KEY_FILE_NAME
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert "back it up" in first.stderr
    assert "back it up" not in db_cli("list").stderr  # the warning is for the first run only
    ids = [db_cli.connect_via_sandbox(p).id for p in ("shopline", "ecwid")]
    tokens = {i: stored_tokens(db_cli, i)[0] for i in ids}
    [old_id] = _ciphertext_key_ids(db_cli)

    result = db_cli("keys", "rotate")
    assert result.exit_code == 0, result.stderr
    assert "re-encrypted 2 connection(s)" in result.stdout
    assert "re-encrypting tokens" in result.stderr and "100%" in result.stderr
    assert str(key_file) in result.stderr
    ring = KeyRing.parse(key_file.read_text())
    assert [k.id for k in ring.keys][1:] == [old_id]
    assert ring.primary.id != old_id
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    for key in ring.keys:  # no key material on the terminal
        assert key.encoded().split(":", 1)[1] not in result.stdout + result.stderr
    assert _ciphertext_key_ids(db_cli) == {ring.primary.id}
    for connection_id, access in tokens.items():
        assert db_cli("token", connection_id).stdout == access + "\n"


def test_keys_rotate_with_keys_from_the_environment(shopline: tuple[Cli, str]) -> None:
    cli, connection_id = shopline
    access = stored_tokens(cli, connection_id)[0]
    result = cli("keys", "rotate")
    assert result.exit_code == 0, result.stderr
    assert "SHOPKEYS_ENCRYPTION_KEYS" in result.stderr
    [value] = [line for line in result.stdout.splitlines() if ",ktest:" in line]
    ring = KeyRing.parse(value)
    assert [k.id for k in ring.keys][1] == "ktest"
    assert not (cli.data_dir / KEY_FILE_NAME).exists()
    # Nothing is re-encrypted under a key that only this process knew: services running with
    # the old value go on reading every row until they are restarted with the new one.
    assert _ciphertext_key_ids_with(cli, value) == {"ktest"}
    assert cli("token", connection_id).stdout == access + "\n"
    assert "--reencrypt-only" in result.stderr
    # With the new value set, --reencrypt-only moves the rows to the new primary.
    cli.env["SHOPKEYS_ENCRYPTION_KEYS"] = value
    assert cli("keys", "rotate", "--reencrypt-only").exit_code == 0
    assert _ciphertext_key_ids(cli) == {ring.primary.id}
    assert cli("token", connection_id).stdout == access + "\n"


def _ciphertext_key_ids_with(cli: Cli, keys: str) -> set[str]:
    saved = cli.env["SHOPKEYS_ENCRYPTION_KEYS"]
    cli.env["SHOPKEYS_ENCRYPTION_KEYS"] = keys
    try:
        return _ciphertext_key_ids(cli)
    finally:
        cli.env["SHOPKEYS_ENCRYPTION_KEYS"] = saved


def test_db_upgrade_then_doctor(db_cli: Cli) -> None:
    upgraded = db_cli("db", "upgrade")
    assert upgraded.exit_code == 0, upgraded.stderr
    assert "applied 6 migration(s)" in upgraded.stdout or "up to date" in upgraded.stdout
    again = db_cli("db", "upgrade")
    assert again.exit_code == 0 and "up to date" in again.stdout
    doctor = db_cli("doctor")
    assert doctor.exit_code == 0, doctor.stdout + doctor.stderr
    assert "current" in doctor.stdout
    assert "not configured" in doctor.stdout
    assert "SHOPKEYS_SHOPLINE_CLIENT_ID" in doctor.stdout


def test_doctor_shows_redirect_uris_for_configured_platforms(
    cli: Cli, live_sandbox: LiveSandbox
) -> None:
    cli.point_at(live_sandbox, "tiktok_shop")
    assert cli("db", "upgrade").exit_code == 0
    doctor = cli("doctor")
    assert doctor.exit_code == 0, doctor.stdout
    assert "http://shopkeys.test/oauth/callback/tiktok_shop" in doctor.stdout


def _tiktok_shop_row(doctor: Result) -> str:
    [row] = [line for line in doctor.stdout.splitlines() if re.match(r"^\W*TikTok Shop\b", line)]
    return row


@pytest.fixture
def tiktok_shop_app(cli: Cli) -> Cli:
    """TikTok Shop credentials without a service id, and a migrated database."""
    cli.env["SHOPKEYS_TIKTOK_SHOP_APP_KEY"] = "tt-key"
    cli.env["SHOPKEYS_TIKTOK_SHOP_APP_SECRET"] = "tt-secret"
    assert cli("db", "upgrade").exit_code == 0
    return cli


def test_doctor_names_the_missing_tiktok_shop_service_id(tiktok_shop_app: Cli) -> None:
    doctor = tiktok_shop_app("doctor")
    assert doctor.exit_code != 0, doctor.stdout
    row = _tiktok_shop_row(doctor)
    assert "fix" in row and "cannot connect stores" in row
    assert "service id" in row and "SHOPKEYS_TIKTOK_SHOP_SERVICE_ID" in row
    assert "tt-secret" not in doctor.stdout + doctor.stderr
    assert "1 problem(s)" in doctor.stderr


def test_doctor_names_an_unknown_tiktok_shop_region(tiktok_shop_app: Cli) -> None:
    tiktok_shop_app.env["SHOPKEYS_TIKTOK_SHOP_SERVICE_ID"] = "7123456789"
    doctor = tiktok_shop_app("doctor", SHOPKEYS_TIKTOK_SHOP_REGION="eu")
    assert doctor.exit_code != 0, doctor.stdout
    row = _tiktok_shop_row(doctor)
    assert "fix" in row and "region 'eu'" in row and "us" in row
    assert "SHOPKEYS_TIKTOK_SHOP_" in row
    assert "1 problem(s)" in doctor.stderr


@pytest.mark.parametrize("region", ["us", " US "])
def test_doctor_accepts_tiktok_shop_with_a_service_id_in_the_us(
    tiktok_shop_app: Cli, region: str
) -> None:
    tiktok_shop_app.env["SHOPKEYS_TIKTOK_SHOP_SERVICE_ID"] = "7123456789"
    doctor = tiktok_shop_app("doctor", SHOPKEYS_TIKTOK_SHOP_REGION=region)
    assert doctor.exit_code == 0, doctor.stdout + doctor.stderr
    row = _tiktok_shop_row(doctor)
    assert "ok configured" in row
    assert "http://shopkeys.test/oauth/callback/tiktok_shop" in row


def test_connect_tiktok_shop_without_a_service_id_says_so(tiktok_shop_app: Cli) -> None:
    result = tiktok_shop_app("connect", "tiktok_shop", "--no-browser", "--wait", "1")
    one_clear_error(result, "service id", "SHOPKEYS_TIKTOK_SHOP_SERVICE_ID")
    assert "Open this link" not in result.stdout

    async def sessions() -> int:
        rt = await open_runtime(tiktok_shop_app.settings())
        try:
            async with rt.engine.connect() as connection:
                return len((await connection.execute(select(AuthSessionRow.id))).all())
        finally:
            await rt.close()

    assert tiktok_shop_app.run(sessions()) == 0  # no link was made that could not work


def test_doctor_fails_when_the_database_is_unreachable(cli: Cli) -> None:
    url = "postgresql://someone:hunter2secret@127.0.0.1:1/nowhere"
    result = cli("doctor", SHOPKEYS_DATABASE_URL=url)
    assert result.exit_code != 0
    assert "Traceback" not in result.stdout + result.stderr
    assert "hunter2secret" not in result.stdout + result.stderr
    assert "error: database unreachable" in result.stderr
    # Other commands say the same in one line.
    line = one_clear_error(cli("list", SHOPKEYS_DATABASE_URL=url), "cannot open the database")
    assert "hunter2secret" not in line


def test_doctor_flags_pending_migrations_and_bad_keys(cli: Cli) -> None:
    pending = cli("doctor")
    assert pending.exit_code != 0 and "6 pending" in pending.stdout
    assert "shopkeys db upgrade" in pending.stdout
    cli("db", "upgrade")
    bad = cli("doctor", SHOPKEYS_ENCRYPTION_KEYS="k1:" + "Z" * 10)
    assert bad.exit_code != 0 and "32 bytes" in bad.stdout
    assert "Z" * 10 not in bad.stdout


def test_bad_database_url_is_one_line_without_the_password(cli: Cli) -> None:
    url = "postgresql://someone:hunter2secret@host:notaport/db"
    line = one_clear_error(cli("list", SHOPKEYS_DATABASE_URL=url), "SHOPKEYS_DATABASE_URL")
    assert "hunter2secret" not in line


def test_key_file_is_created_once(cli: Cli, tmp_path: Path) -> None:
    del cli.env["SHOPKEYS_ENCRYPTION_KEYS"]
    assert cli("list").exit_code == 0
    content = (cli.data_dir / KEY_FILE_NAME).read_text()
    assert cli("list").exit_code == 0
    assert (cli.data_dir / KEY_FILE_NAME).read_text() == content


def test_end_user_ids_longer_than_the_column_are_refused_everywhere(db_cli: Cli) -> None:
    too_long = "x" * 256
    connect = db_cli("connect", "ecwid", "--no-browser", "--wait", "0", "--end-user", too_long)
    one_clear_error(connect, "1 to 255 characters")
    imported = db_cli(
        "import",
        "aliexpress",
        "--account-id",
        "4000000001",
        "--end-user",
        too_long,
        SHOPKEYS_IMPORT_ACCESS_TOKEN="50000sometoken",
    )
    one_clear_error(imported, "1 to 255 characters")
    assert "4000000001" not in db_cli("list").stdout


# -- which keys stored tokens use: doctor, retire, rotate --------------------------------------


def _seed_under(cli: Cli, ring: KeyRing | None, account_id: str, *, refresh: bool = True) -> str:
    """A connection written as a process holding `ring` (None: the configured keys) writes it."""

    async def seed() -> str:
        rt = await open_runtime(cli.settings())
        try:
            if ring is not None:
                rt.vault.keys = ring
            grant = Grant(
                provider="aliexpress",
                access_token=f"50000access{account_id}",
                refresh_token=f"50001refresh{account_id}" if refresh else None,
                access_expires_at=None,
                refresh_expires_at=None,
                scopes=[],
                account_id=account_id,
            )
            account = Account(account_id=account_id, name="Shop")
            connection, _ = await rt.vault.connections.import_grant(
                grant, account, end_user_id=None
            )
            return connection.id
        finally:
            await rt.close()

    result: str = cli.run(seed())
    return result


def _row(result: Result, check: str) -> str:
    [row] = [line for line in result.stdout.splitlines() if check in line]
    return row


def _backdate(path: Path) -> None:
    """Make the key file look long settled, as it is when an operator retires a key for real."""
    import os
    import time

    an_hour_ago = time.time() - 3600
    os.utime(path, (an_hour_ago, an_hour_ago))


def test_doctor_lists_the_key_ids_stored_tokens_use(db_cli: Cli) -> None:
    configured = KeyRing.parse(db_cli.env["SHOPKEYS_ENCRYPTION_KEYS"])
    rotated = configured.with_new_primary()
    _seed_under(db_cli, None, "4000000001")  # access and refresh token under ktest
    _seed_under(db_cli, rotated, "4000000002", refresh=False)  # an access token under k2
    both = ",".join(key.encoded() for key in rotated.keys)

    doctor = db_cli("doctor", SHOPKEYS_ENCRYPTION_KEYS=both)
    assert doctor.exit_code == 0, doctor.stdout + doctor.stderr
    row = _row(doctor, "keys in use")
    assert f"{rotated.primary.id} (primary): 1 token(s)" in row
    assert "ktest: 2 token(s)" in row
    assert "keys rotate --reencrypt-only" in row  # tokens under an old key remain
    for key in rotated.keys:
        assert key.encoded().split(":", 1)[1] not in doctor.stdout + doctor.stderr

    # Without k2 in the ring, a token can no longer be read: a problem to fix.
    missing = db_cli("doctor")
    assert missing.exit_code != 0
    row = _row(missing, "keys in use")
    assert f"{rotated.primary.id}: 1 token(s)" in row and "not in the key ring" in row

    # Everything under the primary: the old key is unused and can go.
    reencrypted = db_cli("keys", "rotate", "--reencrypt-only", SHOPKEYS_ENCRYPTION_KEYS=both)
    assert reencrypted.exit_code == 0, reencrypted.stderr
    current = db_cli("doctor", SHOPKEYS_ENCRYPTION_KEYS=both)
    assert current.exit_code == 0
    assert f"{rotated.primary.id} (primary): 3 token(s)" in _row(current, "keys in use")
    assert "ktest: unused" in _row(current, "keys in use")
    assert "keys retire ktest" in _row(current, "keys in use")


def test_keys_retire_refuses_the_primary_and_unknown_keys(db_cli: Cli) -> None:
    del db_cli.env["SHOPKEYS_ENCRYPTION_KEYS"]
    _seed_under(db_cli, None, "4000000001")
    key_file = db_cli.data_dir / KEY_FILE_NAME
    before = key_file.read_text()
    [primary] = [key.id for key in KeyRing.parse(before).keys]
    _backdate(key_file)
    one_clear_error(db_cli("keys", "retire", primary), "primary", "keys rotate")
    one_clear_error(db_cli("keys", "retire", "k9"), "k9")
    assert key_file.read_text() == before
    assert "retire" in db_cli("keys", "--help").stdout


def test_keys_retire_only_once_no_stored_token_uses_the_key(db_cli: Cli) -> None:
    del db_cli.env["SHOPKEYS_ENCRYPTION_KEYS"]
    first = _seed_under(db_cli, None, "4000000001")
    key_file = db_cli.data_dir / KEY_FILE_NAME
    old = KeyRing.parse(key_file.read_text())
    rotate = db_cli("keys", "rotate")
    assert rotate.exit_code == 0, rotate.stderr
    assert "switch to" in rotate.stderr  # running services follow the key file
    new = KeyRing.parse(key_file.read_text())

    # Right after a rotation a running service may not have switched yet: too early to tell.
    one_clear_error(db_cli("keys", "retire", old.primary.id), "retry in")
    _backdate(key_file)
    # A service that had not switched yet wrote a connection under the old key.
    stale = _seed_under(db_cli, old, "4000000002")
    refused = db_cli("keys", "retire", old.primary.id)
    one_clear_error(refused, "2 stored token(s)", old.primary.id, "keys rotate --reencrypt-only")
    assert KeyRing.parse(key_file.read_text()).keys == new.keys

    again = db_cli("keys", "rotate", "--reencrypt-only")
    assert again.exit_code == 0, again.stderr
    assert "re-encrypted 1 connection(s)" in again.stdout
    assert [key.id for key in KeyRing.parse(key_file.read_text()).keys] == [
        key.id for key in new.keys
    ]
    retired = db_cli("keys", "retire", old.primary.id)
    assert retired.exit_code == 0, retired.stderr
    assert f"retired key {old.primary.id}" in retired.stdout
    assert [key.id for key in KeyRing.parse(key_file.read_text()).keys] == [new.primary.id]
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    for key in new.keys + old.keys:
        assert key.encoded().split(":", 1)[1] not in retired.stdout + retired.stderr
    for connection_id, account in ((first, "4000000001"), (stale, "4000000002")):
        assert db_cli("token", connection_id).stdout == f"50000access{account}\n"


def test_keys_retire_with_keys_from_the_environment(db_cli: Cli) -> None:
    from tests.conftest import TEST_KEYS

    _seed_under(db_cli, None, "4000000001")
    rotate = db_cli("keys", "rotate")
    assert rotate.exit_code == 0, rotate.stderr
    assert "restart" in rotate.stderr  # a running service reads the environment once
    [value] = [line for line in rotate.stdout.splitlines() if ",ktest:" in line]
    db_cli.env["SHOPKEYS_ENCRYPTION_KEYS"] = value
    new_id = KeyRing.parse(value).primary.id
    assert db_cli("keys", "rotate", "--reencrypt-only").exit_code == 0
    # A service still running with the old value wrote under ktest meanwhile.
    _seed_under(db_cli, KeyRing.parse(TEST_KEYS), "4000000002", refresh=False)
    one_clear_error(db_cli("keys", "retire", "ktest"), "1 stored token(s)", "ktest")
    assert db_cli("keys", "rotate", "--reencrypt-only").exit_code == 0
    retired = db_cli("keys", "retire", "ktest")
    assert retired.exit_code == 0, retired.stderr
    assert "SHOPKEYS_ENCRYPTION_KEYS" in retired.stderr and "restart" in retired.stderr
    [remaining] = [line for line in retired.stdout.splitlines() if line.startswith(f"{new_id}:")]
    assert [key.id for key in KeyRing.parse(remaining).keys] == [new_id]
    assert "ktest" not in remaining
