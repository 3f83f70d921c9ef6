"""The operators' events page: the outbox of events sent to the app, and redelivery."""

from __future__ import annotations

import re

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from shopkeys.store.deliveries import DELIVERY_STATUSES
from shopkeys.web.operators import MissingPage, PostedForm, SignedIn, notice_of, operator_page
from shopkeys.web.security import runtime_of

router = APIRouter(include_in_schema=False)

PAGE_SIZE = 50


def _cursor(text: str) -> tuple[int, str] | None:
    """The `before` of the next page, as the page wrote it (`event id.delivery id`)."""
    event_id, _, delivery_id = text.partition(".")
    # ASCII digits, within a 64-bit id (`isdigit` takes "²"; a longer number fails the query).
    if not re.fullmatch("[0-9]{1,18}", event_id) or not delivery_id or len(delivery_id) > 40:
        return None
    return int(event_id), delivery_id


@router.get("/events", response_class=HTMLResponse)
async def events_page(request: Request, operator: SignedIn) -> Response:
    runtime = runtime_of(request)
    wanted = request.query_params.get("status")
    status = wanted if wanted in DELIVERY_STATUSES else None
    before = _cursor(request.query_params.get("before", ""))
    rows = await runtime.vault.deliveries.recent(limit=PAGE_SIZE + 1, status=status, before=before)
    more = len(rows) > PAGE_SIZE
    rows = rows[:PAGE_SIZE]
    last = rows[-1] if more and rows else None
    next_before = f"{last.event_id}.{last.id}" if last else None
    return operator_page(
        request,
        operator,
        "events.html",
        {
            "deliveries": rows,
            "status": status,
            "statuses": DELIVERY_STATUSES,
            "next_before": next_before,
            "counts": await runtime.vault.stats.deliveries_by_status(),
            "webhook_configured": runtime.sender is not None,
            "notice": notice_of(request),
        },
    )


@router.post("/events/{delivery_id}/redeliver")
async def redeliver(
    request: Request, _operator: SignedIn, _form: PostedForm, delivery_id: str
) -> Response:
    """Send the event again as soon as the sender looks (its attempts so far are kept)."""
    if await runtime_of(request).vault.deliveries.redeliver(delivery_id) is None:
        raise MissingPage("event delivery")
    return RedirectResponse("/events?notice=redelivered", status_code=303)
