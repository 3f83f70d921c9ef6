"""When to try a failed delivery again, and what to remember of the failure: pure functions.

Every outcome but a 2xx is a failure to retry (Standard Webhooks: 3xx and 4xx included, a 429
and a 503 with the wait their `Retry-After` asks for). Waits grow exponentially with full jitter,
so a receiver that comes back up is not hit by every sender's backlog in the same second.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from email.utils import parsedate_to_datetime

from shopkeys.redact import redact

#: Statuses whose `Retry-After` is honoured.
RETRY_AFTER_STATUSES = frozenset({429, 503})
#: How much of a receiver's answer is kept with a failed attempt.
EXCERPT_LENGTH = 200


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff with full jitter: 5 s doubling to a 1 h ceiling, at least 1 s."""

    first: float = 5.0
    ceiling: float = 3600.0
    floor: float = 1.0

    def delay(self, failures: int, random: Callable[[], float]) -> float:
        """Seconds before the next attempt after `failures` failed attempts in a row (1+)."""
        exponent = min(max(failures - 1, 0), 64)  # far past the ceiling; no float overflow
        cap = min(self.ceiling, self.first * 2.0**exponent)
        # The floor keeps a jitter of 0 from sending the next attempt at once, in a loop.
        return max(self.floor, random() * cap)


#: The backoff senders use unless told otherwise.
BACKOFF = Backoff()


def retry_after(value: str | None, now: datetime) -> float | None:
    """The wait a `Retry-After` header asks for in seconds (a number or an HTTP date), or None
    when it is absent or says nothing usable."""
    if value is None:
        return None
    text = value.strip()
    if re.fullmatch(r"\d+(\.\d+)?", text):
        seconds = float(text)
        return seconds if math.isfinite(seconds) else None
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    return max((when - now).total_seconds(), 0.0)


def response_error(status: int, body: bytes, secrets: Iterable[str]) -> str:
    """What is kept of a failed answer: its status and the start of its body, one line, with
    credentials and the known `secrets` taken out (a receiver may echo what it was sent)."""
    text = body.decode("utf-8", errors="replace")
    # One line of printable text: it is shown in a terminal table and in logs.
    text = " ".join("".join(c if c.isprintable() else " " for c in text).split())
    text = redact(text, known=list(secrets))
    if len(text) > EXCERPT_LENGTH:
        text = text[: EXCERPT_LENGTH - 1] + "…"
    return f"HTTP {status}: {text}" if text else f"HTTP {status}"
