"""The platforms' signatures as the simulators compute them, written from the platforms' documents.

The provider clients have their own code for these. The simulators must not borrow it: a client
and a simulator sharing one signing function would agree with each other even when both are wrong,
so the end-to-end tests could never catch a signing mistake. This module is the second, separate
reading of each platform's rules; `tests/sandbox/test_signatures.py` checks it against the
published examples and against the providers' code.

Where each rule comes from:

- AliExpress (the IOP gateway it shares with Lazada): the Open Platform's "Signature algorithm"
  and "HTTP request sample" pages (developer.alibaba.com, docType 1, treeId 727, articles 120692
  and 120693), and `sign()` in the IOP SDK for Python.
- TikTok Shop requests: "Sign your API request" (partner.tiktokshop.com/doc/page/274638), as the
  SDKs implement it (EcomPHP/tiktokshop-php's `Client::prepareSignature`, `generateSign` in the
  Node.js SDK).
- TikTok Shop webhooks: the `Authorization` header as EcomPHP/tiktokshop-php's `Webhook::verify`
  checks it.
- Ecwid webhooks: "Authenticate webhooks with signature" (api-docs.ecwid.com) and the PHP example
  in "Webhooks best practices" (developers.ecwid.com).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping
from typing import Final

__all__ = [
    "aliexpress_sign",
    "ecwid_webhook_signature",
    "tiktok_shop_sign",
    "tiktok_shop_signs_body",
    "tiktok_shop_webhook_signature",
]

#: The query parameters TikTok Shop leaves out of a request signature.
TIKTOK_SHOP_UNSIGNED: Final = ("access_token", "sign")


def _hmac_sha256(key: str, message: bytes) -> bytes:
    return hmac.new(key.encode("utf-8"), message, hashlib.sha256).digest()


def _by_key(params: Mapping[str, str], leave_out: tuple[str, ...]) -> bytes:
    """`key` then `value` of every parameter, keys in ASCII (byte) order, as UTF-8."""
    keys = sorted((k for k in params if k not in leave_out), key=lambda k: k.encode("utf-8"))
    return b"".join(k.encode("utf-8") + params[k].encode("utf-8") for k in keys)


# -- AliExpress -------------------------------------------------------------------------------


def aliexpress_sign(app_secret: str, api_name: str, params: Mapping[str, str]) -> str:
    """The IOP gateway's `sign` parameter for `sign_method=sha256`.

    The docs' steps: sort every parameter but `sign` by name, write each as name then value, put
    the API name in front, and take the HMAC-SHA256 keyed with the app secret, in upper-case hex.
    The API name goes in front only for the system APIs whose names are paths
    (`/auth/token/create`); a business API such as `aliexpress.merchant.profile.get` travels as
    the `method` parameter, which is already among the signed pairs (the SDK's `"/" in api` test).
    """
    prefix = api_name.encode("utf-8") if "/" in api_name else b""
    digest = _hmac_sha256(app_secret, prefix + _by_key(params, ("sign",)))
    return digest.hex().upper()


# -- TikTok Shop ------------------------------------------------------------------------------


def tiktok_shop_signs_body(method: str, content_type: str | None) -> bool:
    """Whether a request's body is part of its signature: never for GET or multipart uploads."""
    if method.upper() == "GET":
        return False
    media_type = (content_type or "").split(";", 1)[0].strip().lower()
    return media_type != "multipart/form-data"


def tiktok_shop_sign(
    app_secret: str, path: str, query: Mapping[str, str], body: bytes = b""
) -> str:
    """The `sign` query parameter of a TikTok Shop API call, in lower-case hex.

    The string to sign is the request path, then name and value of each query parameter except
    `sign` and `access_token` in name order, then the raw body (pass `b""` when
    `tiktok_shop_signs_body` says no), all wrapped in the app secret on both sides. The HMAC
    key is the app secret too.
    """
    secret = app_secret.encode("utf-8")
    message = secret + path.encode("utf-8") + _by_key(query, TIKTOK_SHOP_UNSIGNED) + body + secret
    return _hmac_sha256(app_secret, message).hex()


def tiktok_shop_webhook_signature(app_key: str, app_secret: str, body: bytes) -> str:
    """A webhook's `Authorization` header: hex HMAC-SHA256 of the app key then the raw body."""
    return _hmac_sha256(app_secret, app_key.encode("utf-8") + body).hex()


# -- Ecwid ------------------------------------------------------------------------------------


def ecwid_webhook_signature(client_secret: str, event_created: int | str, event_id: str) -> str:
    """A webhook's `X-Ecwid-Webhook-Signature`: base64 HMAC-SHA256 of `{eventCreated}.{eventId}`.

    Keyed with the app's client secret (not a store's `secret_...` access token).
    """
    message = b".".join((str(event_created).encode("utf-8"), event_id.encode("utf-8")))
    return base64.b64encode(_hmac_sha256(client_secret, message)).decode("ascii")
