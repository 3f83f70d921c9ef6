"""A platform's webhook as shopkeys reads it: verified, with the platform's own id for it (to
drop the platform's retries), its type, the account it concerns, and what it means for the
authorization. Pure: the provider classes read; the inbox stores and forwards.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Any, ClassVar, Final

from shopkeys.errors import ShopkeysError

#: The query of a delivery URL that carries none (most platforms sign in a header).
NO_QUERY: Final[Mapping[str, str]] = MappingProxyType({})


class WebhookRefused(ShopkeysError):
    """A webhook that is not accepted; `code` says why, the message names no secret."""

    code: ClassVar[str] = "refused"


class BadSignature(WebhookRefused):
    """The signature is missing or is not this app's: not from the platform, or not for us."""

    code = "bad_signature"


class MalformedWebhook(WebhookRefused):
    """Signed, or unsignable, but not a webhook of the platform's shape."""

    code = "malformed_webhook"


class Effect(enum.Enum):
    """What a webhook means for the connection's authorization."""

    NONE = "none"
    #: The merchant took the authorization back (a deauthorization, an uninstall).
    REVOKED = "revoked"
    #: The authorization will end soon, at `InboundWebhook.deadline`.
    REAUTH_DUE = "reauth_due"


@dataclass(frozen=True, slots=True)
class InboundWebhook:
    """One verified delivery from a platform."""

    provider: str
    #: The platform's id for the event: a retried delivery carries the same one.
    event_id: str
    #: The platform's own name or number for the kind of event, as text.
    event_type: str
    #: The account the event concerns, as connections store it, when the event names it.
    account_id: str | None
    #: A shop of the account, where the platform names the shop instead (TikTok Shop).
    shop_id: str | None
    payload: dict[str, Any] = field(repr=False)
    effect: Effect = Effect.NONE
    #: When the authorization ends, for `Effect.REAUTH_DUE` (None if the platform did not say).
    deadline: datetime | None = None


def json_object(body: bytes) -> dict[str, Any]:
    """The body as a JSON object; `MalformedWebhook` for anything else."""
    try:
        parsed = json.loads(body)
    except (ValueError, RecursionError):
        # Not JSON, not UTF-8, an integer too long to convert, or nested too deeply.
        raise MalformedWebhook("the body is not JSON") from None
    if not isinstance(parsed, dict):
        raise MalformedWebhook("the body is not a JSON object")
    return parsed


def identifier(payload: dict[str, Any], key: str) -> str:
    """A required id field as text (platforms send ids as strings or integers)."""
    value = payload.get(key)
    if isinstance(value, bool) or not isinstance(value, str | int) or value == "":
        raise MalformedWebhook(f"the webhook has no {key}")
    text = str(value)
    if len(text) > 128:
        raise MalformedWebhook(f"the webhook's {key} is too long")
    return text
