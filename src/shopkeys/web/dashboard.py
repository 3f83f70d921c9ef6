"""The operators' dashboard: counts, the week's refreshes, and every connection, those that need
someone first; and the form that makes a connect link for a merchant."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from shopkeys.flow_errors import FlowError
from shopkeys.platform import Platform
from shopkeys.providers import get
from shopkeys.store.overview import ATTENTION_FILTER, Attention, ConnectionQuery, Cursor
from shopkeys.store.records import STATUSES
from shopkeys.web.chart import refresh_chart
from shopkeys.web.operators import PostedForm, SignedIn, form_text, notice_of, operator_page
from shopkeys.web.security import runtime_of

router = APIRouter(include_in_schema=False)


class SimulatedPlatforms(Protocol):
    """The sandbox as the pages see it: the web layer links to it but does not import it."""

    def app_market_paths(self) -> Mapping[str, str]:
        """Platform name to the path of its simulated app market, where it has one."""
        ...


def _app_markets(request: Request, configured: Mapping[str, object]) -> list[dict[str, str]]:
    """The sandbox's simulated app markets, for platforms that send installs straight to us."""
    sandbox: SimulatedPlatforms | None = request.app.state.sandbox
    if sandbox is None:
        return []
    return [
        {"display_name": get(name).display_name, "url": path}
        for name, path in sandbox.app_market_paths().items()
        if name in configured
    ]


PAGE_SIZE = 50
#: The end user the connect link form suggests in the sandbox, where a demo has no app of its
#: own to name one (`shopkeys serve --sandbox` prints the token request for it).
DEMO_END_USER = "sandbox-user"


def _choice(value: str | None, allowed: object) -> str | None:
    """`value` if it is one of `allowed`, else None: a filter never passes unknown text on."""
    return value if value and value in allowed else None  # type: ignore[operator]


@router.get("/", response_class=HTMLResponse)
async def dashboard(request: Request, operator: SignedIn) -> Response:
    runtime = runtime_of(request)
    params = request.query_params
    query = ConnectionQuery(
        provider=_choice(params.get("platform"), list(Platform)),
        status=_choice(params.get("status"), (*STATUSES, ATTENTION_FILTER)),
        search=(params.get("q") or "").strip()[:100] or None,
    )
    after = Cursor.decode(params.get("after", ""))
    page = await runtime.vault.overview.connections(query, after=after, limit=PAGE_SIZE)
    by_platform = await runtime.vault.stats.connections_by_provider_and_status()
    attention = await runtime.vault.overview.attention_counts()
    chart = refresh_chart(await runtime.vault.overview.daily_refreshes(7))
    platforms = [
        {
            "name": str(p),
            "display_name": get(p).display_name,
            "configured": str(p) in runtime.providers,
            "counts": {s: by_platform.get((str(p), s), 0) for s in STATUSES},
        }
        for p in Platform
    ]
    filters = {"platform": query.provider, "status": query.status, "q": query.search}
    return operator_page(
        request,
        operator,
        "dashboard.html",
        {
            "platforms": platforms,
            "display_names": {p["name"]: p["display_name"] for p in platforms},
            "statuses": STATUSES,
            "attention": attention,
            "Attention": Attention,
            "total": sum(attention.values()),
            "page": page,
            "chart": chart,
            "filters": filters,
            "filtered": any(filters.values()),
            "next_query": _next_page_query(filters, page.next),
            "first_page": after is None,
            "notice": notice_of(request),
            "app_markets": _app_markets(request, runtime.providers),
            "demo_end_user": DEMO_END_USER if request.app.state.sandbox is not None else "",
        },
    )


def _next_page_query(filters: dict[str, str | None], cursor: Cursor | None) -> str | None:
    if cursor is None:
        return None
    kept = {k: v for k, v in filters.items() if v}
    return urlencode({**kept, "after": cursor.encode()})


@router.post("/connect-links", response_class=HTMLResponse)
async def new_connect_link(request: Request, operator: SignedIn, form: PostedForm) -> Response:
    """A connect link for a merchant, shown once, to copy or open."""
    runtime = runtime_of(request)
    provider = form.get("platform")
    end_user_id = form_text(form, "end_user_id", "end user id")
    if not isinstance(provider, str) or not Platform.known(provider):
        return operator_page(
            request, operator, "link.html", {"error": "Choose a platform."}, status_code=400
        )
    try:
        link = await runtime.connect.start(provider, end_user_id=end_user_id)
    except FlowError as exc:
        return operator_page(
            request, operator, "link.html", {"error": exc.message}, status_code=400
        )
    return operator_page(
        request,
        operator,
        "link.html",
        {
            "link": link,
            "platform": get(provider).display_name,
            "end_user_id": end_user_id,
        },
    )
