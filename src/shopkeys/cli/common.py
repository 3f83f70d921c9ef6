"""What every command shares: settings, the runtime, output, and turning errors into one line."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import asynccontextmanager
from datetime import datetime
from functools import wraps
from typing import Any, NoReturn, ParamSpec, TypeVar

import typer
from pydantic import ValidationError
from rich.console import Console

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
    err.print(f"[red]error:[/red] {redact(message)}", soft_wrap=True)
    raise typer.Exit(code)


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
    opened = await open_runtime(settings or load_settings(), migrate=migrate)
    try:
        yield opened
    finally:
        await opened.close()


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


async def gather_progress(tasks: list[Awaitable[T]]) -> list[T]:
    return list(await asyncio.gather(*tasks))
