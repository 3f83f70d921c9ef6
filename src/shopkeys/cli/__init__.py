"""The `shopkeys` command."""

from __future__ import annotations

import typer

from shopkeys.cli import admin, connections, events, refreshing
from shopkeys.cli.serve import sandbox, serve
from shopkeys.cli.worker import worker

app = typer.Typer(
    help="shopkeys: OAuth connections to AliExpress, TikTok Shop, SHOPLINE and Ecwid, kept valid.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.command()(serve)
app.command()(sandbox)
app.command()(worker)
app.command()(connections.connect)
app.command("list")(connections.list_)
app.command()(connections.show)
app.command()(connections.token)
app.command()(refreshing.refresh)
app.command()(connections.claim)
app.command()(connections.disconnect)
app.command("import")(connections.import_)
app.command()(admin.doctor)
app.add_typer(admin.keys_app, name="keys")
app.add_typer(admin.apikey_app, name="apikey")
app.add_typer(admin.db_app, name="db")
app.add_typer(events.events_app, name="events")


def main() -> None:
    app()
