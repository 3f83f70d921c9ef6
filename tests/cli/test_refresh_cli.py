"""`shopkeys refresh` for one, the due and all connections, and `shopkeys list`'s refresh state."""

from __future__ import annotations

import asyncio
import json
import re
from collections import Counter
from datetime import UTC, datetime, timedelta

import httpx2
import pytest
from click.testing import Result
from sqlalchemy import update

from shopkeys.cli import refreshing as refreshing_cli
from shopkeys.grant import Grant
from shopkeys.refresh import FreshToken, TokenService
from shopkeys.refresh.outcomes import Outcome
from shopkeys.runtime import open_runtime
from shopkeys.sandbox.core import Fault
from shopkeys.store.tables import ConnectionRow
from tests.cli.conftest import Cli
from tests.cli.test_cli import (
    ecwid_grant,
    one_clear_error,
    read_connection,
    store_connection,
    stored_tokens,
)
from tests.conftest import LiveSandbox

OUTCOMES = {"refreshed", "joined", "skipped", "temporary_failure", "rate_limited", "needs_reauth"}


# -- helpers -------------------------------------------------------------------------------------


def tokens_of(cli: Cli, *connection_ids: str) -> list[str]:
    """Every stored token of the connections (to check none is ever printed)."""
    found: list[str] = []
    for connection_id in connection_ids:
        access, refresh, _ = stored_tokens(cli, connection_id)
        found += [access] + ([refresh] if refresh else [])
    return found


def assert_no_token(result: Result, tokens: list[str]) -> None:
    for token in tokens:
        assert token not in result.stdout and token not in result.stderr, token


def set_row(cli: Cli, connection_id: str, **values: object) -> None:
    """Change stored columns directly (the scheduler's state, as time would)."""

    async def write() -> None:
        rt = await open_runtime(cli.settings())
        try:
            async with rt.engine.begin() as connection:
                await connection.execute(
                    update(ConnectionRow).where(ConnectionRow.id == connection_id).values(**values)
                )
        finally:
            await rt.close()

    cli.run(write())


def make_due(cli: Cli, connection_id: str) -> None:
    set_row(cli, connection_id, next_refresh_at=datetime.now(UTC) - timedelta(minutes=1))


def use_elsewhere(cli: Cli, live_sandbox: LiveSandbox, connection_id: str) -> None:
    """Refresh with the stored refresh token behind the vault's back: the stored one dies."""
    refresh = stored_tokens(cli, connection_id)[1] or ""

    async def go() -> None:
        async with httpx2.AsyncClient(timeout=10) as http:
            await live_sandbox.provider("shopline").refresh(http, refresh)

    cli.run(go())


def table_row(output: str, label: str) -> list[str]:
    """The cells of the summary table's row `label`."""
    for line in output.splitlines():
        cells = [cell.strip() for cell in re.split(r"[│┃]", line) if cell.strip()]
        if cells and cells[0] == label:
            return cells
    raise AssertionError(f"no row {label!r} in\n{output}")


def line_of(connection_id: str, output: str) -> str:
    [line] = [row for row in output.splitlines() if row.startswith(connection_id)]
    return line


@pytest.fixture
def stores(db_cli: Cli, live_sandbox: LiveSandbox) -> tuple[Cli, list[str]]:
    """Three SHOPLINE stores connected through the sandbox, none due yet."""
    db_cli.point_at(live_sandbox, "shopline")
    ids = [
        db_cli.connect_via_sandbox("shopline", login=f"merchant-{n}", end_user=f"u{n}").id
        for n in (1, 2, 3)
    ]
    assert len(set(ids)) == 3
    return db_cli, ids


# -- refresh --due -------------------------------------------------------------------------------


def test_refresh_due_refreshes_only_the_due_ones_and_prints_a_summary(
    stores: tuple[Cli, list[str]],
) -> None:
    cli, (due, later, _) = stores
    before = {cid: stored_tokens(cli, cid) for cid in stores[1]}
    make_due(cli, due)
    known = tokens_of(cli, *stores[1])

    result = cli("refresh", "--due")
    assert result.exit_code == 0, result.stdout + result.stderr
    assert stored_tokens(cli, due)[0] != before[due][0]
    for cid in stores[1][1:]:
        assert stored_tokens(cli, cid) == before[cid]
    assert "refreshed, access expires in" in line_of(due, result.stdout)
    assert later not in result.stdout
    assert table_row(result.stdout, "refreshed")[1] == "1"
    for label in ("joined", "skipped", "temporary failure", "rate limited", "needs reauth"):
        assert table_row(result.stdout, label)[1] == "0"
    assert table_row(result.stdout, "planned (given a refresh time)")[1] == "0"
    assert table_row(result.stdout, "ended (grant over, now needs_reauth)")[1] == "0"
    assert table_row(result.stdout, "reauth_due notices sent")[1] == "0"
    assert_no_token(result, known + tokens_of(cli, due))
    # No longer due: a second sweep has nothing to do.
    again = cli("refresh", "--due")
    assert again.exit_code == 0 and table_row(again.stdout, "refreshed")[1] == "0"
    assert stored_tokens(cli, due)[2] == before[due][2] + 1


def test_refresh_due_as_json(stores: tuple[Cli, list[str]]) -> None:
    cli, (first, second, third) = stores
    make_due(cli, first)
    make_due(cli, third)
    untouched = stored_tokens(cli, second)
    known = tokens_of(cli, *stores[1])
    result = cli("refresh", "--due", "--format", "json")
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)  # the JSON alone on stdout
    assert summary["mode"] == "due"
    assert summary["outcomes"] == {**dict.fromkeys(OUTCOMES, 0), "refreshed": 2}
    assert (summary["planned"], summary["ended"], summary["reauth_due"]) == (0, 0, 0)
    assert summary["failed"] is False
    assert [c["id"] for c in summary["connections"]] == sorted([first, third])
    for entry in summary["connections"]:
        assert entry["outcome"] == "refreshed"
        assert datetime.fromisoformat(entry["access_expires_at"]) > datetime.now(UTC)
    assert stored_tokens(cli, second) == untouched
    assert_no_token(result, known + tokens_of(cli, first, third))


def test_refresh_due_plans_connections_stored_without_a_refresh_time(
    stores: tuple[Cli, list[str]],
) -> None:
    cli, (unplanned, *_) = stores
    # As a row stored before the refresh engine existed: no next refresh time, and by now due.
    expires = datetime.now(UTC) + timedelta(seconds=30)
    set_row(cli, unplanned, next_refresh_at=None, access_expires_at=expires)
    result = cli("refresh", "--due", "--format", "json")
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["planned"] == 1
    assert summary["outcomes"]["refreshed"] == 1
    assert [c["id"] for c in summary["connections"]] == [unplanned]


# -- failures and the exit code ------------------------------------------------------------------


def test_refresh_due_exits_non_zero_when_one_needs_reauth_or_fails(
    stores: tuple[Cli, list[str]], live_sandbox: LiveSandbox
) -> None:
    cli, (dead, limited, fine) = stores
    known = tokens_of(cli, *stores[1])
    use_elsewhere(cli, live_sandbox, dead)
    for cid in stores[1]:
        make_due(cli, cid)
    result = cli("refresh", "--due")
    assert result.exit_code == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert table_row(result.stdout, "refreshed")[1] == "2"
    assert table_row(result.stdout, "needs reauth")[1] == "1"
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and dead in errors[0] and "needs reauth" in errors[0], result.stderr
    assert read_connection(cli, dead)[0].status == "needs_reauth"
    assert_no_token(result, known + tokens_of(cli, *stores[1]))

    # A platform answering 429 fails the run too; the connection keeps its token meanwhile.
    live_sandbox.simulator("shopline").faults.set("refresh", Fault(status=429, retry_after=60))
    make_due(cli, limited)
    limited_result = cli("refresh", "--due", "--format", "json")
    assert limited_result.exit_code == 1
    summary = json.loads(limited_result.stdout)
    assert summary["failed"] is True
    assert summary["outcomes"]["rate_limited"] == 1
    [entry] = summary["connections"]
    assert entry["id"] == limited and entry["outcome"] == "rate_limited" and entry["detail"]
    connection = read_connection(cli, limited)[0]
    assert connection.status == "active" and connection.last_error_kind == "rate_limited"
    assert fine not in limited_result.stdout


def test_refresh_all_exits_non_zero_on_a_temporary_failure(
    stores: tuple[Cli, list[str]], live_sandbox: LiveSandbox
) -> None:
    cli, ids = stores
    known = tokens_of(cli, *ids)
    live_sandbox.simulator("shopline").faults.set("refresh", Fault(status=503))
    result = cli("refresh", "--all")
    assert result.exit_code == 1, result.stdout + result.stderr
    # The stored tokens still work, so they are handed out: but nothing was refreshed.
    assert table_row(result.stdout, "temporary failure")[1] == "3"
    assert table_row(result.stdout, "refreshed")[1] == "0"
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert sorted(e.split()[1].rstrip(":") for e in errors) == sorted(ids)
    assert tokens_of(cli, *ids) == known
    assert_no_token(result, known)

    # While the failure holds every caller back, a forced refresh gets it again, uncalled.
    live_sandbox.simulator("shopline").faults.clear()
    calls = live_sandbox.simulator("shopline").calls["refresh"]
    set_row(cli, ids[0], blocked_until=datetime.now(UTC) + timedelta(minutes=5))
    held = cli("refresh", ids[0])
    assert held.exit_code == 1
    one_clear_error(held, ids[0], "temporary failure", "503")
    assert live_sandbox.simulator("shopline").calls["refresh"] == calls
    assert tokens_of(cli, *ids) == known


# -- refresh --all -------------------------------------------------------------------------------


def test_refresh_all_refreshes_every_connection(
    stores: tuple[Cli, list[str]], live_sandbox: LiveSandbox
) -> None:
    cli, ids = stores
    cli.point_at(live_sandbox, "shopline", "ecwid")
    ecwid = cli.connect_via_sandbox("ecwid").id
    before = {cid: stored_tokens(cli, cid) for cid in ids}
    known = tokens_of(cli, *ids, ecwid)

    result = cli("refresh", "--all")
    assert result.exit_code == 0, result.stdout + result.stderr
    for cid in ids:
        assert stored_tokens(cli, cid)[0] != before[cid][0]
        assert stored_tokens(cli, cid)[2] == before[cid][2] + 1
        assert "refreshed" in line_of(cid, result.stdout)
    assert "skipped" in line_of(ecwid, result.stdout)
    assert table_row(result.stdout, "refreshed")[1] == "3"
    assert table_row(result.stdout, "skipped")[1] == "1"
    # The scheduler's notices belong to --due alone.
    assert "planned" not in result.stdout
    assert_no_token(result, known + tokens_of(cli, *ids))

    as_json = cli("refresh", "--all", "--format", "json")
    assert as_json.exit_code == 0, as_json.stderr
    summary = json.loads(as_json.stdout)
    assert summary["mode"] == "all" and summary["failed"] is False
    assert summary["outcomes"] == {**dict.fromkeys(OUTCOMES, 0), "refreshed": 3, "skipped": 1}
    assert "planned" not in summary
    outcomes = {c["id"]: c["outcome"] for c in summary["connections"]}
    assert outcomes == {**dict.fromkeys(ids, "refreshed"), ecwid: "skipped"}
    assert_no_token(as_json, known + tokens_of(cli, *ids))


def test_refresh_all_runs_a_bounded_number_at_once_and_each_connection_once(
    db_cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    grants = [
        Grant(
            provider="shopline",
            access_token=f"sl-access-{n}",
            refresh_token=f"sl-refresh-{n}",
            access_expires_at=datetime.now(UTC) + timedelta(hours=5),
            refresh_expires_at=None,
            scopes=[],
            account_id=f"store-{n}",
        )
        for n in range(20)
    ]
    ids = [store_connection(db_cli, grant) for grant in grants]
    running: Counter[str] = Counter()
    calls: Counter[str] = Counter()
    most = 0

    async def fake_refresh(self: TokenService, connection_id: str) -> tuple[FreshToken, Outcome]:
        nonlocal most
        running[connection_id] += 1
        calls[connection_id] += 1
        assert running[connection_id] == 1  # never two at once for one connection
        most = max(most, sum(running.values()))
        await asyncio.sleep(0.02)
        running[connection_id] -= 1
        token = FreshToken(connection_id, "shopline", "x", access_token="x", expires_at=None)
        return token, Outcome.JOINED

    monkeypatch.setattr(TokenService, "refresh_with_outcome", fake_refresh)
    result = db_cli("refresh", "--all", "--format", "json")
    assert result.exit_code == 0, result.stderr
    assert calls == Counter(dict.fromkeys(ids, 1))
    assert 1 < most <= refreshing_cli.ALL_CONCURRENCY
    # The fake says another refresh did the work each time.
    assert json.loads(result.stdout)["outcomes"]["joined"] == 20


# -- one connection, and mistakes ----------------------------------------------------------------


def test_refresh_one_connection_as_json(stores: tuple[Cli, list[str]]) -> None:
    cli, (cid, *_) = stores
    known = tokens_of(cli, cid)
    result = cli("refresh", cid, "--format", "json")
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["mode"] == "id" and summary["outcomes"]["refreshed"] == 1
    assert summary["connections"][0]["id"] == cid
    assert_no_token(result, known + tokens_of(cli, cid))


def test_refresh_wants_exactly_one_of_id_due_and_all(cli: Cli) -> None:
    one_clear_error(cli("refresh"), "give one of", "--due", "--all")
    one_clear_error(cli("refresh", "con_x", "--all"), "only one of")
    one_clear_error(cli("refresh", "con_x", "--due"), "only one of")
    one_clear_error(cli("refresh", "--due", "--all"), "only one of")
    usage = cli("refresh", "--due", "--format", "yaml")
    assert usage.exit_code == 2 and "--format" in usage.stderr


def test_refresh_due_with_nothing_due(cli: Cli) -> None:
    result = cli("refresh", "--due")
    assert result.exit_code == 0, result.stderr
    assert table_row(result.stdout, "refreshed")[1] == "0"


# -- list ----------------------------------------------------------------------------------------


def _mixed_connections(cli: Cli, live_sandbox: LiveSandbox) -> dict[str, str]:
    """A SHOPLINE store whose last refresh was rate limited, an AliExpress grant without a
    refresh token, and an Ecwid store whose token never expires."""
    cli.point_at(live_sandbox, "shopline")
    shopline = cli.connect_via_sandbox("shopline").id
    live_sandbox.simulator("shopline").faults.set("refresh", Fault(status=429, retry_after=60))
    assert cli("refresh", shopline).exit_code == 1
    live_sandbox.simulator("shopline").faults.clear()
    aliexpress = store_connection(
        cli,
        Grant(
            provider="aliexpress",
            access_token="ae-access-token",
            refresh_token=None,
            access_expires_at=datetime.now(UTC) + timedelta(days=3, minutes=1),
            refresh_expires_at=None,
            scopes=[],
            account_id="2001234567",
        ),
    )
    ecwid = store_connection(cli, ecwid_grant("1001"))
    return {"shopline": shopline, "aliexpress": aliexpress, "ecwid": ecwid}


def test_list_shows_the_refresh_state(db_cli: Cli, live_sandbox: LiveSandbox) -> None:
    ids = _mixed_connections(db_cli, live_sandbox)
    known = [*tokens_of(db_cli, *ids.values()), "ae-access-token", "secret_1001_access"]
    listed = db_cli("list")
    assert listed.exit_code == 0, listed.stderr
    header = listed.stdout.splitlines()[1]
    for column in ("access expires", "next refresh", "failures", "refresh expires"):
        assert column in header
    shopline = line_of_table(ids["shopline"], listed.stdout)
    assert "1 rate_limited" in shopline
    # Held back by the Retry-After, then tried again: a time ahead, not "due".
    assert re.search(r"│ in \d+[ms]", shopline) or " in " in shopline
    aliexpress = line_of_table(ids["aliexpress"], listed.stdout)
    assert "in 3d 0h (access)" in aliexpress
    assert "no refresh token" in listed.stdout  # the caption explains the mark
    ecwid = line_of_table(ids["ecwid"], listed.stdout)
    assert "never" in ecwid and "—" in ecwid
    assert_no_token(listed, known)

    # A connection overdue: the scheduler is not running.
    set_row(db_cli, ids["shopline"], next_refresh_at=datetime.now(UTC) - timedelta(hours=2))
    set_row(db_cli, ids["shopline"], blocked_until=None)
    assert "overdue 2h" in line_of_table(ids["shopline"], db_cli("list").stdout)


def test_list_fits_120_columns(db_cli: Cli, live_sandbox: LiveSandbox) -> None:
    ids = _mixed_connections(db_cli, live_sandbox)
    listed = db_cli("list", COLUMNS="120")
    assert listed.exit_code == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert max(len(line) for line in lines) <= 120
    header = lines[1]
    for column in ("id", "platform", "status", "next refresh", "failures", "refresh expires"):
        assert column in header
    assert "access expires" not in header  # the first to go
    for cid in ids.values():
        assert cid in listed.stdout  # ids are never folded
    assert "(access)" in line_of_table(ids["aliexpress"], listed.stdout)


def test_list_as_json(db_cli: Cli, live_sandbox: LiveSandbox) -> None:
    ids = _mixed_connections(db_cli, live_sandbox)
    known = [*tokens_of(db_cli, *ids.values()), "ae-access-token", "secret_1001_access"]
    listed = db_cli("list", "--format", "json")
    assert listed.exit_code == 0, listed.stderr
    assert_no_token(listed, known)
    rows = {row["id"]: row for row in json.loads(listed.stdout)}
    assert set(rows) == set(ids.values())
    shopline = rows[ids["shopline"]]
    assert shopline["refresh_failures"] == 1 and shopline["last_error_kind"] == "rate_limited"
    assert shopline["last_error"] and shopline["refreshable"] is True
    for field in ("next_refresh_at", "blocked_until", "access_expires_at", "refresh_expires_at"):
        assert datetime.fromisoformat(shopline[field]).tzinfo is not None
    aliexpress = rows[ids["aliexpress"]]
    assert aliexpress["refreshable"] is False and aliexpress["refresh_expires_at"] is None
    assert aliexpress["next_refresh_at"] is None
    ecwid = rows[ids["ecwid"]]
    assert ecwid["access_expires_at"] is None and ecwid["refresh_failures"] == 0
    assert json.loads(db_cli("list", "--provider", "tiktok_shop", "--format", "json").stdout) == []


def line_of_table(connection_id: str, output: str) -> str:
    [line] = [row for row in output.splitlines() if connection_id in row]
    return line


def test_list_when_empty(cli: Cli) -> None:
    assert "No connections" in cli("list").stdout
