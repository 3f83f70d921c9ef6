"""Events for the app, delivered as Standard Webhooks from the outbox, one module a job:

- `signing`: the body and the three headers (`webhook-id`, `webhook-timestamp`,
  `webhook-signature`), pure;
- `secret`: the signing secret, from the settings or generated into the data directory;
- `retry`: when a failed delivery is tried again, and what is kept of the failure, pure;
- `sender`: `DeliverySender`, which claims due deliveries from the vault, sends them, and
  records the outcomes; `build_sender` makes one from the settings.
"""

from shopkeys.events.secret import WebhookSecret, load_webhook_secret
from shopkeys.events.sender import DeliverySender, build_sender
from shopkeys.events.signing import encode_body, sign, webhook_headers

__all__ = [
    "DeliverySender",
    "WebhookSecret",
    "build_sender",
    "encode_body",
    "load_webhook_secret",
    "sign",
    "webhook_headers",
]
