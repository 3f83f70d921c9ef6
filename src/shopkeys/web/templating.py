"""The pages' Jinja2 environment: one for every page, with the filters that show times."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.templating import Jinja2Templates
from markupsafe import Markup, escape
from starlette.responses import Response

from shopkeys.web.security import runtime_of


def _page_context(request: Request) -> dict[str, Any]:
    # Every page shows the sandbox banner in sandbox mode, and times relative to one "now".
    return {
        "sandbox": request.app.state.sandbox is not None,
        "now": runtime_of(request).clock(),
    }


templates = Jinja2Templates(
    directory=str(Path(__file__).parent / "templates"), context_processors=[_page_context]
)


#: Every page's headers. The pages load only their own style sheet and script, are framed by
#: nobody (clickjacking a Disconnect or a Connect), and each shows one operator's or one
#: merchant's data, so no cache keeps them. The referrer is also withheld in each page's head.
PAGE_HEADERS = {
    "content-security-policy": (
        "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'"
    ),
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cache-control": "no-store",
}


def render(
    request: Request, name: str, context: dict[str, Any], *, status_code: int = 200
) -> Response:
    """The page `name` rendered with `context`, with every page's headers."""
    return templates.TemplateResponse(
        request, name, context, status_code=status_code, headers=PAGE_HEADERS
    )


def when(moment: datetime | None, empty: str = "—") -> Markup:
    """A UTC time as a `<time>` element, to the minute."""
    if moment is None:
        return escape(empty)
    return Markup('<time datetime="{}">{}</time>').format(
        moment.isoformat(), moment.strftime("%Y-%m-%d %H:%M UTC")
    )


def relative(moment: datetime | None, now: datetime, empty: str = "—") -> str:
    """`in 3 h`, `5 min ago`: how far `moment` is from `now`, in the largest fitting unit."""
    if moment is None:
        return empty
    seconds = (moment - now).total_seconds()
    size = abs(seconds)
    for unit, length in (("y", 365 * 86400), ("d", 86400), ("h", 3600), ("min", 60)):
        if size >= length:
            amount = f"{int(size // length)} {unit}"
            break
    else:
        return "now"
    return f"in {amount}" if seconds > 0 else f"{amount} ago"


templates.env.filters["when"] = when
templates.env.globals["relative"] = relative
