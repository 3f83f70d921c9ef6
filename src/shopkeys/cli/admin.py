"""Operator commands: encryption keys, API keys, the database, and `doctor`."""

from __future__ import annotations

import math
import time

import typer
from rich.markup import escape
from rich.progress import Progress
from rich.table import Table

from shopkeys.api_keys import SCOPES
from shopkeys.cli.common import (
    command,
    database_problem,
    err,
    fail,
    load_settings,
    out,
    runtime,
)
from shopkeys.config import Settings, credential_variables
from shopkeys.crypto import (
    FOLLOW_EVERY,
    KEY_FILE_NAME,
    KeyRing,
    LoadedKeys,
    generate_key_ring,
    write_key_file,
)
from shopkeys.errors import ConfigurationError
from shopkeys.events.secret import SECRET_FILE_NAME, read_webhook_secret
from shopkeys.providers import get
from shopkeys.redact import shown_url
from shopkeys.runtime import database_url_of
from shopkeys.store.database import create_engine, pending_migrations, upgrade
from shopkeys.store.vault import Vault

keys_app = typer.Typer(help="Encryption keys.", no_args_is_help=True)
apikey_app = typer.Typer(help="API keys for the HTTP API.", no_args_is_help=True)
db_app = typer.Typer(help="The database.", no_args_is_help=True)

#: Running services look at the key file every `2 * FOLLOW_EVERY` seconds; until a rewrite is
#: this old, one of them may still encrypt with the previous primary after `keys retire` counted
#: the rows, so retire refuses until then.
SETTLE_AFTER = 10 * FOLLOW_EVERY


@keys_app.command("rotate")
@command
async def rotate(
    reencrypt_only: bool = typer.Option(
        False,
        "--reencrypt-only",
        help="Add no key: re-encrypt with the current primary what older keys still hold.",
    ),
) -> None:
    """Add a new primary encryption key and re-encrypt every stored token with it."""
    async with runtime() as rt:
        loaded = rt.keys
        ring = loaded.ring if reencrypt_only else loaded.ring.with_new_primary()
        if not reencrypt_only and loaded.source == "environment":
            # The new key exists only in this process until the operator sets it: re-encrypting
            # now would leave rows that running services cannot read, and a crash before the
            # value is printed would lose them. Print it; re-encrypt once services use it.
            out.print(f"new primary key {ring.primary.id}; nothing re-encrypted yet")
            _say_where_the_ring_goes(loaded, ring)
            return
        if not reencrypt_only and loaded.source == "file" and loaded.path is not None:
            # The new ring is saved before any row uses it, so a crash loses nothing.
            write_key_file(loaded.path, ring)
        rt.vault.keys = ring
        total = await rt.vault.connections.count()
        with Progress(console=err, transient=False) as progress:
            task = progress.add_task("re-encrypting tokens", total=max(total, 1))
            changed = await rt.vault.connections.reencrypt(
                lambda done, _total: progress.update(task, completed=done)
            )
            progress.update(task, completed=max(total, 1))
        # A running service that had not switched yet may have written under an old key.
        in_use = await rt.vault.key_ids_in_use()
    primary = ring.primary.id
    if reencrypt_only:
        out.print(f"re-encrypted {changed} connection(s) with primary key {primary}")
    else:
        out.print(f"new primary key {primary}; re-encrypted {changed} connection(s)")
        _say_where_the_ring_goes(loaded, ring)
    older = sum(count for key_id, count in in_use.items() if key_id != primary)
    if older:
        err.print(
            f"[yellow]{older} stored token(s) still use older keys[/yellow] (written meanwhile by "
            f"a service that had not switched): once every service uses key {primary}, run "
            "`shopkeys keys rotate --reencrypt-only`",
            soft_wrap=True,
        )


def _say_where_the_ring_goes(loaded: LoadedKeys, ring: KeyRing) -> None:
    """After a rotation: the key file was updated, or the operator must set the environment."""
    if loaded.source == "environment":
        err.print(
            "[yellow]set SHOPKEYS_ENCRYPTION_KEYS to this (old keys kept, so backups still "
            "decrypt):[/yellow]"
        )
        print(",".join(key.encoded() for key in ring.keys))
        err.print(
            "[yellow]running services read SHOPKEYS_ENCRYPTION_KEYS once: restart every one of "
            "them with this value,[/yellow] then run `shopkeys keys rotate --reencrypt-only` "
            "(with the new value set) to move the stored tokens to the new key.",
            soft_wrap=True,
        )
    else:
        err.print(f"key file updated: {loaded.path} (back it up)")
        err.print(
            f"running services switch to key {ring.primary.id} within a few seconds "
            "(they watch the key file)",
            soft_wrap=True,
        )


@keys_app.command("retire")
@command
async def retire(
    key_id: str = typer.Argument(..., help="The old key's id (`shopkeys doctor` lists them)."),
) -> None:
    """Remove an old encryption key from the key ring, once no stored token uses it."""
    async with runtime() as rt:
        loaded = rt.keys
        primary = loaded.ring.primary.id
        if key_id == primary:
            fail(
                f"{key_id} is the primary key, which encrypts new tokens: add a new one with "
                "`shopkeys keys rotate` first"
            )
        remaining = loaded.ring.without(key_id)  # an unknown id: one line that names it
        if loaded.source == "file" and loaded.path is not None:
            age = time.time() - loaded.path.stat().st_mtime
            if age < SETTLE_AFTER:
                fail(
                    f"the key file changed {max(age, 0):.0f}s ago and running services may not "
                    f"all use key {primary} yet: retry in {math.ceil(SETTLE_AFTER - age)}s"
                )
        in_use = (await rt.vault.key_ids_in_use()).get(key_id, 0)
        if in_use:
            fail(
                f"{in_use} stored token(s) still use key {key_id}: re-encrypt them first with "
                "`shopkeys keys rotate --reencrypt-only`"
            )
        if loaded.source == "file" and loaded.path is not None:
            write_key_file(loaded.path, remaining)
    kept = ", ".join(key.id for key in remaining.keys)
    out.print(f"retired key {key_id}; the key ring keeps {kept}")
    if loaded.source == "environment":
        err.print(
            "[yellow]set SHOPKEYS_ENCRYPTION_KEYS to this and restart every service (until "
            "then they merely keep the unused key):[/yellow]",
            soft_wrap=True,
        )
        print(",".join(key.encoded() for key in remaining.keys))
    else:
        err.print(f"key file updated: {loaded.path} (back it up)")


@apikey_app.command("create")
@command
async def apikey_create(
    name: str = typer.Argument(..., help="Who or what uses the key."),
    scope: str = typer.Option("admin", help="admin (everything) or read (list, show, token)."),
) -> None:
    """Create an API key; the key alone is printed on stdout, once."""
    if scope not in SCOPES:
        fail(f"scope must be one of {', '.join(SCOPES)}")
    async with runtime() as rt:
        record, value = await rt.api_keys.create(name, scope)
    err.print(f"created {record.id} ({record.scope}); it is shown only now:")
    print(value)


@apikey_app.command("list")
@command
async def apikey_list() -> None:
    """List API keys (never their values)."""
    async with runtime() as rt:
        keys = await rt.api_keys.list()
    table = Table()
    for column in ("id", "name", "starts with", "scope", "created", "revoked"):
        table.add_column(column)
    for key in keys:
        table.add_row(
            key.id,
            key.name,
            key.prefix + "…",
            key.scope,
            f"{key.created_at:%Y-%m-%d %H:%M}",
            f"{key.revoked_at:%Y-%m-%d %H:%M}" if key.revoked_at else "",
        )
    out.print(table if keys else "No API keys. Create one with `shopkeys apikey create NAME`.")


@apikey_app.command("revoke")
@command
async def apikey_revoke(key_id: str = typer.Argument(..., help="The key's id or prefix.")) -> None:
    """Revoke an API key."""
    async with runtime() as rt:
        record = await rt.api_keys.revoke(key_id)
    if record is None:
        fail(f"no API key {key_id}")
    out.print(f"revoked {record.id} ({record.name})")


@db_app.command("upgrade")
@command
async def db_upgrade() -> None:
    """Apply the database migrations."""
    settings = load_settings()
    engine = create_engine(database_url_of(settings))
    try:
        before = await pending_migrations(engine)
        await upgrade(engine)
    finally:
        await engine.dispose()
    out.print(f"applied {len(before)} migration(s)" if before else "the database is up to date")


@command
async def doctor() -> None:
    """Check the configuration and say what to fix."""
    settings = load_settings()
    problems = 0
    table = Table(title="shopkeys doctor")
    table.add_column("check")
    table.add_column("result")
    table.add_column("what to do", overflow="fold")

    def row(check: str, ok: bool | None, result: str, fix: str = "") -> None:
        nonlocal problems
        mark = (
            "[green]ok[/green]"
            if ok
            else ("[yellow]note[/yellow]" if ok is None else "[red]fix[/red]")
        )
        if ok is False:
            problems += 1
        table.add_row(check, f"{mark} {result}", fix)

    public = settings.public_url
    row(
        "public URL",
        None if public.startswith("http://") else True,
        public,
        "platforms require https redirect URIs in production; set SHOPKEYS_PUBLIC_URL"
        if public.startswith("http://")
        else "",
    )
    for config in settings.platforms():
        cls = get(config.platform)
        if config.credentials is None:
            variables = ", ".join(credential_variables(config.platform))
            row(cls.display_name, None, "not configured", f"set {variables}")
            continue
        try:
            provider = cls(config.credentials, hosts=config.hosts, region=config.region)
        except ConfigurationError as exc:
            row(
                cls.display_name,
                False,
                escape(str(exc)),
                f"fix the SHOPKEYS_{config.platform.value.upper()}_ settings",
            )
            continue
        problem = provider.authorization_problem()
        if problem is not None:
            row(cls.display_name, False, "cannot connect stores", escape(problem))
            continue
        row(cls.display_name, True, "configured", f"register redirect URI {config.redirect_uri}")
    database_error: str | None = None
    usage: dict[str, int] | None = None
    try:
        url = database_url_of(settings)
        engine = create_engine(url)
        try:
            pending = await pending_migrations(engine)
            row("database", True, url.render_as_string(hide_password=True))
            row(
                "migrations",
                not pending,
                "current" if not pending else f"{len(pending)} pending",
                "" if not pending else "run `shopkeys db upgrade`",
            )
            if not pending:
                # Counting decrypts nothing, so any ring will do (the configured one may be
                # the very thing that is broken).
                usage = await Vault(engine, generate_key_ring()).key_ids_in_use()
        finally:
            await engine.dispose()
    except ConfigurationError as exc:
        database_error = str(exc)
    except Exception as exc:  # any failure to reach the database is reported, not raised
        database_error = f"unreachable: {database_problem(exc)}"
    if database_error is not None:
        row("database", False, escape(database_error), "check SHOPKEYS_DATABASE_URL and the server")
    ring: KeyRing | None = None
    if settings.encryption_keys is not None:
        try:
            ring = KeyRing.parse(settings.encryption_keys.get_secret_value())
            row(
                "encryption keys", True, f"from SHOPKEYS_ENCRYPTION_KEYS, primary {ring.primary.id}"
            )
        except ConfigurationError as exc:
            row("encryption keys", False, escape(str(exc)), "fix SHOPKEYS_ENCRYPTION_KEYS")
    else:
        path = settings.data_dir / KEY_FILE_NAME
        if path.exists():
            try:
                ring = KeyRing.parse(path.read_text())
                row(
                    "encryption keys",
                    True,
                    f"key file {path}, primary {ring.primary.id}",
                    "back this file up; without it stored tokens cannot be read",
                )
            except (ConfigurationError, OSError) as exc:
                row("encryption keys", False, escape(f"key file {path}: {exc}"), "restore it")
        else:
            row(
                "encryption keys",
                None,
                f"key file {path} (created on first run)",
                "back this file up; without it stored tokens cannot be read",
            )
    if usage is not None:
        row("keys in use", *_key_usage(usage, ring))
    row("webhooks", *_webhooks(settings))
    out.print(table)
    if database_error is not None:
        err.print(f"[red]error:[/red] database {escape(database_error)}", soft_wrap=True)
    if problems:
        err.print(f"[red]{problems} problem(s) to fix[/red], see the table above")
        raise typer.Exit(1)


def _webhooks(settings: Settings) -> tuple[bool | None, str, str]:
    """doctor's row on sending events to the app: the URL and the secret, shown only as
    `whsec_` and its first characters."""
    if settings.webhook_url is None:
        return None, "not set: events are recorded only", "set SHOPKEYS_WEBHOOK_URL to send them"
    url = shown_url(settings.webhook_url)
    configured = settings.webhook_secret.get_secret_value() if settings.webhook_secret else None
    try:
        secret = read_webhook_secret(configured, settings.data_dir)
    except ConfigurationError as exc:
        fix = "fix SHOPKEYS_WEBHOOK_SECRET" if configured else "fix or delete the secret file"
        return False, escape(f"{url}; {exc}"), fix
    except OSError as exc:
        return False, escape(f"{url}; {exc.strerror or exc}: {exc.filename}"), "fix the file"
    if secret is None:
        path = settings.data_dir / SECRET_FILE_NAME
        return True, escape(f"{url}; secret generated into {path} on first run"), ""
    where = "SHOPKEYS_WEBHOOK_SECRET" if secret.path is None else str(secret.path)
    return True, escape(f"{url}; secret {secret.hint} from {where}"), "the app verifies with it"


def _key_usage(usage: dict[str, int], ring: KeyRing | None) -> tuple[bool | None, str, str]:
    """doctor's verdict on which keys the stored tokens use: (ok, result, what to do)."""
    if not usage:
        return True, "no stored tokens", ""
    ids = [key.id for key in ring.keys] if ring is not None else []
    primary = ids[0] if ids else None
    order = ids + sorted(set(usage) - set(ids))
    result = ", ".join(
        f"{key_id}{' (primary)' if key_id == primary else ''}: "
        + (f"{usage[key_id]} token(s)" if key_id in usage else "unused")
        for key_id in order
    )
    missing = sorted(set(usage) - set(ids)) if ring is not None else []
    if missing:
        return (
            False,
            result,
            f"{', '.join(missing)} not in the key ring: those tokens are unreadable",
        )
    older = [key_id for key_id in ids[1:] if key_id in usage]
    if older:
        return None, result, f"`shopkeys keys rotate --reencrypt-only` before retiring {older[0]}"
    unused = [key_id for key_id in ids[1:] if key_id not in usage]
    if unused:
        return True, result, f"`shopkeys keys retire {unused[0]}` removes an unused key"
    return (None if ring is None else True), result, ""
