"""`shopkeys events list` and `redeliver`, and doctor's webhooks row."""

from __future__ import annotations

from datetime import timedelta

from shopkeys.runtime import open_runtime
from shopkeys.store.deliveries import Delivery
from shopkeys.store.vault import Vault
from tests.cli import conftest as cli_fixtures
from tests.cli.conftest import Cli
from tests.events.conftest import SECRET_VALUE, WEBHOOK_URL
from tests.store.conftest import account, grant

cli = cli_fixtures.cli


def queue(cli: Cli, *account_ids: str, give_up: int = 0) -> list[Delivery]:
    """Connect these stores with the outbox on (one event each); give up on the first `give_up`
    of them; the deliveries, oldest first."""

    async def go() -> list[Delivery]:
        rt = await open_runtime(cli.settings())
        try:
            vault = Vault(rt.engine, rt.keys.ring, outbox=True)
            for account_id in account_ids:
                await vault.connections.upsert(
                    grant(account_id=account_id), account(account_id), end_user_id="u1"
                )
            queued = sorted(await vault.deliveries.recent(limit=100), key=lambda d: d.event_id)
            now = rt.clock()
            held = await vault.deliveries.claim_due(
                "cli-test", now, now + timedelta(seconds=60), 100
            )
            for delivery in held[:give_up]:
                await vault.deliveries.give_up(delivery.id, "cli-test", 500, "HTTP 500: boom")
            for delivery in held[give_up:]:
                await vault.deliveries.retry(delivery.id, "cli-test", now, None, "timed out")
            return queued
        finally:
            await rt.close()

    result: list[Delivery] = cli.run(go())
    return result


def test_list_shows_each_event_and_its_delivery(cli: Cli) -> None:
    cli.env["SHOPKEYS_WEBHOOK_URL"] = WEBHOOK_URL
    first, second = queue(cli, "acct-1", "acct-2", give_up=1)
    result = cli("events", "list")
    assert result.exit_code == 0, result.output
    for column in ("id", "type", "connection", "status", "attempts", "last status"):
        assert column in result.output
    assert first.id in result.output and second.id in result.output
    assert "connection.created" in result.output
    assert first.connection_id is not None and first.connection_id in result.output
    assert "HTTP 500: boom" in result.output and "given up" in result.output
    assert "timed out" in result.output and "next " in result.output
    assert "SHOPKEYS_WEBHOOK_URL is not set" not in result.output
    # Newest first.
    assert result.output.index(second.id) < result.output.index(first.id)


def test_list_filters_by_status_and_connection(cli: Cli) -> None:
    first, second = queue(cli, "acct-1", "acct-2", give_up=1)
    failed = cli("events", "list", "--status", "failed")
    assert first.id in failed.output and second.id not in failed.output
    assert second.connection_id is not None
    mine = cli("events", "list", "--connection", second.connection_id)
    assert second.id in mine.output and first.id not in mine.output
    assert cli("events", "list", "--limit", "1").output.count("msg_") == 1
    assert "No delivered events." in cli("events", "list", "--status", "delivered").output
    bad = cli("events", "list", "--status", "lost")
    assert bad.exit_code == 1 and "unknown status 'lost'" in bad.output


def test_list_says_when_no_webhook_url_is_set(cli: Cli) -> None:
    result = cli("events", "list")
    assert result.exit_code == 0
    assert "No events for the app yet." in result.output
    assert "SHOPKEYS_WEBHOOK_URL is not set" in result.output


def test_redeliver_requeues_one_event(cli: Cli) -> None:
    cli.env["SHOPKEYS_WEBHOOK_URL"] = WEBHOOK_URL
    [delivery] = queue(cli, "acct-1", give_up=1)
    result = cli("events", "redeliver", delivery.id)
    assert result.exit_code == 0, result.output
    assert f"requeued {delivery.id} (connection.created)" in result.output
    listed = cli("events", "list", "--status", "pending")
    assert delivery.id in listed.output
    missing = cli("events", "redeliver", "msg_nope")
    assert missing.exit_code == 1 and "no event msg_nope" in missing.output


def test_redeliver_failed_requeues_every_given_up_event(cli: Cli) -> None:
    queue(cli, "acct-1", "acct-2", "acct-3", give_up=2)
    result = cli("events", "redeliver", "--failed")
    assert result.exit_code == 0, result.output
    assert "requeued 2 given-up event(s)" in result.output
    assert "No failed events." in cli("events", "list", "--status", "failed").output
    for arguments in ((), ("msg_x", "--failed")):
        wrong = cli("events", "redeliver", *arguments)
        assert wrong.exit_code == 1 and "--failed" in wrong.output


def test_doctor_shows_the_webhook_url_and_only_the_start_of_the_secret(cli: Cli) -> None:
    cli.env["SHOPKEYS_WEBHOOK_URL"] = "https://user:pw@app.example/hooks?key=abc123"
    cli.env["SHOPKEYS_WEBHOOK_SECRET"] = SECRET_VALUE
    output = cli("doctor").output
    assert "webhooks" in output
    assert "https://app.example/hooks?…" in output
    assert "whsec_MfKQ…" in output and "SHOPKEYS_WEBHOOK_SECRET" in output
    for secret in (SECRET_VALUE.removeprefix("whsec_")[:8], "pw@", "abc123"):
        assert secret not in output


def test_doctor_says_where_the_secret_is_generated(cli: Cli) -> None:
    cli.env["SHOPKEYS_WEBHOOK_URL"] = WEBHOOK_URL
    output = cli("doctor").output
    assert "secret generated into" in output
    assert not (cli.data_dir / "webhook-secret").exists()  # doctor writes nothing


def test_doctor_flags_a_malformed_secret(cli: Cli) -> None:
    cli.env["SHOPKEYS_WEBHOOK_URL"] = WEBHOOK_URL
    cli.env["SHOPKEYS_WEBHOOK_SECRET"] = "whsec_short"
    result = cli("doctor")
    assert result.exit_code == 1
    assert "fix SHOPKEYS_WEBHOOK_SECRET" in result.output
    assert "whsec_short" not in result.output


def test_doctor_notes_when_no_webhook_url_is_set(cli: Cli) -> None:
    output = cli("doctor").output
    assert "not set: events are recorded only" in output
