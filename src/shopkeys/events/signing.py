"""Standard Webhooks signatures (https://www.standardwebhooks.com), pure functions.

The signed content is `{webhook-id}.{webhook-timestamp}.{body}`, HMAC-SHA256 under the key that
the `whsec_` secret encodes, sent base64 after the `v1,` of the symmetric scheme. The id and the
timestamp are signed with the body so that a captured request cannot be replayed under another
id (which the app drops repeats by) or at another time (which the app checks a tolerance on).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Mapping
from typing import Any

#: The version prefix of symmetric (HMAC-SHA256) signatures.
SIGNATURE_VERSION = "v1"
ID_HEADER = "webhook-id"
TIMESTAMP_HEADER = "webhook-timestamp"
SIGNATURE_HEADER = "webhook-signature"


def encode_body(payload: Mapping[str, Any]) -> str:
    """The body sent for `payload`: compact JSON, ASCII only, so its bytes are unambiguous."""
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=True)


def sign(key: bytes, message_id: str, timestamp: int, body: str) -> str:
    """The `webhook-signature` value (`v1,<base64>`) of `body` sent as `message_id` at
    `timestamp` (Unix seconds)."""
    content = f"{message_id}.{timestamp}.{body}".encode()
    digest = hmac.new(key, content, hashlib.sha256).digest()
    return f"{SIGNATURE_VERSION},{base64.b64encode(digest).decode('ascii')}"


def webhook_headers(key: bytes, message_id: str, timestamp: int, body: str) -> Mapping[str, str]:
    """The three Standard Webhooks headers, and the body's content type."""
    return {
        ID_HEADER: message_id,
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: sign(key, message_id, timestamp, body),
        "content-type": "application/json",
    }
