"""What every command shares: settings, the runtime, output, and turning errors into one line."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from contextlib import asynccontextmanager, contextmanager
from datetime import datetime
from enum import StrEnum
from functools import wraps
from typing import Any, NoReturn, ParamSpec, TypeVar

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape
from sqlalchemy.exc import SQLAlchemyError

from shopkeys.config import Settings
from shopkeys.errors import ShopkeysError
from shopkeys.redact import redact
from shopkeys.runtime import Runtime, open_runtime

P = ParamSpec("P")
T = TypeVar("T")

out = Console(highlight=False)
err = Console(stderr=True, highlight=False)


def fail(message: str, code: int = 1) -> NoReturn:
    """Print one clear line on stderr and exit non-zero."""
    # Escaped: a message is text, not Rich markup ("[redacted]" would vanish as a style tag,
    # and a stray "[/x]" would raise MarkupError).
    err.print(f"[red]error:[/red] {escape(redact(message))}", soft_wrap=True)
    raise typer.Exit(code)


def database_problem(exc: BaseException) -> str:
    """One line about a database failure, without the URL (it may hold a password)."""
    original = getattr(exc, "orig", None) if isinstance(exc, SQLAlchemyError) else None
    reason = original if isinstance(original, BaseException) else exc
    text = (str(reason).strip().splitlines() or [""])[0] or type(reason).__name__
    return redact(text)


def load_settings() -> Settings:
    try:
        return Settings()
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        fail(f"configuration: {problems}")


@asynccontextmanager
async def runtime(
    settings: Settings | None = None, *, migrate: bool = True
) -> AsyncIterator[Runtime]:
    settings = settings or load_settings()
    try:
        with _key_file_notice_suppressed():
            opened = await open_runtime(settings, migrate=migrate)
    except (OSError, SQLAlchemyError) as exc:
        if isinstance(exc, OSError) and exc.filename:
            raise  # a file in the data directory: `command` says which
        fail(
            f"cannot open the database ({database_problem(exc)}); check SHOPKEYS_DATABASE_URL "
            "and that the server runs (`shopkeys doctor`)"
        )
    if opened.keys.created:
        err.print(
            f"[yellow]warning:[/yellow] created the encryption key file "
            f"{escape(str(opened.keys.path))}: back it up, without it the stored tokens cannot "
            "be read (or set SHOPKEYS_ENCRYPTION_KEYS)",
            soft_wrap=True,
        )
    try:
        yield opened
    finally:
        await opened.close()


class _DropKeyFileNotice(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("created a new encryption key file")


@contextmanager
def _key_file_notice_suppressed() -> Iterator[None]:
    """The runtime logs the key file's creation; the CLI says it itself, on stderr, once.

    (Relying on the log would lose it wherever logging is configured elsewhere, and print it
    twice where it is not.)
    """
    logger = logging.getLogger("shopkeys")
    notice = _DropKeyFileNotice()
    logger.addFilter(notice)
    try:
        yield
    finally:
        logger.removeFilter(notice)


def command(function: Callable[P, Coroutine[Any, Any, T]]) -> Callable[P, T]:
    """Run an async command; a shopkeys error becomes one line on stderr and exit status 1."""

    @wraps(function)
    def run(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return asyncio.run(function(*args, **kwargs))
        except ShopkeysError as exc:
            fail(str(exc))
        except OSError as exc:
            fail(f"{exc.strerror or exc}" + (f": {exc.filename}" if exc.filename else ""))
        except SQLAlchemyError as exc:
            fail(f"database: {database_problem(exc)}")

    return run


def humanize_until(when: datetime | None, now: datetime) -> str:
    """`in 3d 4h`, `expired 2h ago`, or `never`."""
    if when is None:
        return "never"
    seconds = int((when - now).total_seconds())
    text = _span(abs(seconds))
    return f"in {text}" if seconds >= 0 else f"expired {text} ago"


def _span(seconds: int) -> str:
    days, rest = divmod(seconds, 86_400)
    hours, rest = divmod(rest, 3_600)
    minutes = rest // 60
    if days >= 365:
        return f"{days // 365}y"
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    return f"{minutes}m" if minutes else f"{seconds}s"


class OutputFormat(StrEnum):
    """How a command prints what it found: a table for people, JSON for scripts."""

    table = "table"
    json = "json"


def iso(value: datetime | None) -> str | None:
    """A time as JSON output shows it (ISO 8601), or None."""
    return value.isoformat() if value is not None else None
