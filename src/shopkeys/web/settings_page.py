"""The operators' settings page, read-only: what this instance is configured with, and the
redirect URIs to register on each platform's console. Never a secret."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from shopkeys.platform import Platform
from shopkeys.providers import get
from shopkeys.redact import shown_url
from shopkeys.web.operators import SignedIn, operator_page
from shopkeys.web.security import runtime_of

router = APIRouter(include_in_schema=False)


@router.get("/settings", response_class=HTMLResponse)
async def settings_page(request: Request, operator: SignedIn) -> Response:
    runtime = runtime_of(request)
    settings = runtime.settings
    platforms = [
        {
            "display_name": get(p).display_name,
            "configured": str(p) in runtime.providers,
            "redirect_uri": settings.platform(p).redirect_uri,
        }
        for p in Platform
    ]
    in_use = await runtime.vault.key_ids_in_use()
    keys = [
        {"id": key.id, "primary": index == 0, "ciphertexts": in_use.get(key.id, 0)}
        for index, key in enumerate(runtime.vault.keys.keys)
    ]
    webhook = shown_url(str(settings.webhook_url)) if settings.webhook_url else None
    return operator_page(
        request,
        operator,
        "settings.html",
        {
            "platforms": platforms,
            "keys": keys,
            "database": shown_url(runtime.url.render_as_string(hide_password=True)),
            "database_kind": runtime.url.get_backend_name(),
            "public_url": settings.public_url,
            "webhook": webhook,
            "last_delivery": await runtime.vault.deliveries.last_attempted() if webhook else None,
            "scheduler": settings.scheduler,
            "session_hours": settings.operator_session_lifetime / 3600,
        },
    )
