"""The webhook inbox: `POST /webhooks/{provider}`, where the platforms send their webhooks.

No API key: the platform's own signature is the credential, checked by the provider before
anything is read or stored. The answer comes after the webhook is stored, so a 200 means kept;
platforms give a few seconds (TikTok Shop 3, Ecwid 10, SHOPLINE 15), and one transaction takes
milliseconds. SHOPLINE signs in the URL's `sign` query parameter, so the query goes along.
"""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request
from starlette.responses import JSONResponse, Response

from shopkeys import metrics
from shopkeys.errors import NotSupported
from shopkeys.platform import Platform
from shopkeys.providers.inbound import BadSignature, MalformedWebhook
from shopkeys.web.errors import error_response
from shopkeys.web.security import runtime_of

log = logging.getLogger("shopkeys.web")
router = APIRouter(include_in_schema=False)


@router.post("/webhooks/{provider}")
async def receive_webhook(request: Request, provider: str) -> Response:
    runtime = runtime_of(request)
    if not Platform.known(provider):
        return error_response(404, "not_found", "there is no such platform here")
    client = runtime.providers.get(provider)
    if client is None:
        return error_response(
            404, "not_configured", f"{provider} is not configured here: nothing can verify it"
        )
    body = await request.body()
    try:
        webhook = client.read_webhook(request.headers, body, query=request.query_params)
    except NotSupported as exc:
        return error_response(404, "not_supported", str(exc))
    except BadSignature as exc:
        metrics.webhook_received(provider, "refused")
        log.warning("%s webhook refused: %s", provider, exc)
        return error_response(401, exc.code, str(exc))
    except MalformedWebhook as exc:
        metrics.webhook_received(provider, "refused")
        log.warning("%s webhook refused: %s", provider, exc)
        return error_response(400, exc.code, str(exc))
    receipt = await runtime.vault.inbox.receive(webhook)
    metrics.webhook_received(provider, "duplicate" if receipt.duplicate else "accepted")
    log.info(
        "%s webhook %s (%s) for %s%s",
        provider,
        webhook.event_id,
        webhook.event_type,
        receipt.connection_id or "no connection here",
        ", a repeat" if receipt.duplicate else "",
    )
    return JSONResponse({"received": True, "duplicate": receipt.duplicate})
