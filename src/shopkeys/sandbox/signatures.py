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
- SHOPLINE webhooks: "Webhook Signature" (shopline-developers.readme.io/docs/webhook-signature),
  whose pseudo-code is Node's `crypto.createHmac` over `JSON.stringify` of the sorted payload;
  JavaScript's own rules (ECMAScript `JSON.stringify`, `Number::toString`, property order) fill
  in what the page leaves to the language.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import math
from collections.abc import Mapping
from decimal import Decimal
from typing import Final

__all__ = [
    "aliexpress_sign",
    "ecwid_webhook_signature",
    "shopline_sorted_json",
    "shopline_webhook_signature",
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


# -- SHOPLINE ---------------------------------------------------------------------------------


def shopline_webhook_signature(app_secret: str, timestamp: str, payload: object) -> str:
    """A webhook's `sign` query parameter: lowercase hex HMAC-SHA256 keyed with the app secret of
    the `x-shopline-developer-event-timestamp` header, a colon, and `shopline_sorted_json`."""
    message = timestamp + ":" + shopline_sorted_json(payload)
    return _hmac_sha256(app_secret, message.encode("utf-8")).hex()


def shopline_sorted_json(payload: object) -> str:
    """What Node prints for `JSON.stringify(sortByKeys(payload))`, every object sorted."""
    if payload is True or payload is False or payload is None:
        return json.dumps(payload)
    if isinstance(payload, str):
        return _node_string(payload)
    if isinstance(payload, int | float):
        return _node_number(payload)
    if isinstance(payload, list | tuple):
        return "[" + ",".join(map(shopline_sorted_json, payload)) + "]"
    if isinstance(payload, Mapping):
        # `Object.keys(o).sort()` orders by UTF-16 code unit; the object built from them is
        # still enumerated with its integer keys ("array indices") first, smallest first.
        keys = [str(k) for k in payload]
        numeric = [k for k in keys if k.isdecimal() and k.isascii() and str(int(k)) == k]
        numeric = [k for k in numeric if int(k) < 2**32 - 1]
        named = sorted(set(keys) - set(numeric), key=_code_units)
        ordered = sorted(numeric, key=int) + named
        return (
            "{"
            + ",".join(f"{_node_string(k)}:{shopline_sorted_json(payload[k])}" for k in ordered)
            + "}"
        )
    raise TypeError(f"{type(payload).__name__} is not JSON")


def _code_units(text: str) -> list[int]:
    raw = text.encode("utf-16-le", "surrogatepass")
    return [int.from_bytes(raw[i : i + 2], "little") for i in range(0, len(raw), 2)]


def _node_string(text: str) -> str:
    # Python writes the same escapes as JSON.stringify for every code point but the lone
    # surrogates, which JSON.stringify (ES2019 on) writes as \uXXXX in lowercase.
    out = []
    for char in text:
        if 0xD800 <= ord(char) <= 0xDFFF:
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(json.dumps(char, ensure_ascii=False)[1:-1])
    return '"' + "".join(out) + '"'


def _node_number(number: float) -> str:
    """Number::toString of the double nearest `number`; Infinity (and NaN) print as null."""
    try:
        double = float(number)
    except OverflowError:
        return "null"
    if math.isnan(double) or math.isinf(double):
        return "null"
    if double == 0.0:
        return "0"
    # The shortest decimal that reads back as this double: digits d1..dk and n with the value
    # 0.d1..dk times 10**n, as the ECMAScript algorithm names them.
    _sign, digit_tuple, exponent = Decimal(repr(abs(double))).normalize().as_tuple()
    digits = "".join(map(str, digit_tuple))
    k = len(digits)
    n = k + int(exponent)
    if k <= n <= 21:
        text = digits + "0" * (n - k)
    elif 0 < n <= 21:
        text = digits[:n] + "." + digits[n:]
    elif -6 < n <= 0:
        text = "0." + "0" * (-n) + digits
    else:
        e = n - 1
        text = (
            digits[0]
            + ("." + digits[1:] if k > 1 else "")
            + "e"
            + ("+" if e >= 0 else "-")
            + str(abs(e))
        )
    return ("-" if double < 0 else "") + text
