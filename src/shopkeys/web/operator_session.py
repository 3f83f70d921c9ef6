"""Operators' sessions on the web pages: a signed cookie naming the admin API key signed in with,
and the CSRF token that every form on the pages carries.

The cookie holds no secret of its own: the key's id and a random CSRF token, signed with a
secret derived from the encryption key ring, so every instance sharing the ring accepts it and
nobody can forge one. Each page checks the key again, so revoking it signs its sessions out.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from fastapi import Request
from itsdangerous import BadSignature, TimestampSigner, URLSafeTimedSerializer
from starlette.datastructures import FormData
from starlette.responses import Response

from shopkeys.clock import Clock
from shopkeys.crypto import KeyRing
from shopkeys.store.records import ApiKey

COOKIE = "shopkeys_operator"
#: The form field that carries the session's CSRF token.
CSRF_FIELD = "csrf"
_PURPOSE = "shopkeys operator session cookie"


@dataclass(frozen=True, slots=True)
class OperatorSession:
    """What the cookie says: the CSRF token, and who signed in (None: nobody yet)."""

    csrf: str
    key_id: str | None = None
    #: When the operator signed in (UNIX seconds): the session ends a lifetime after, however
    #: often its cookie is written again.
    signed_in_at: int | None = None

    @classmethod
    def anonymous(cls) -> OperatorSession:
        """A session for a browser that has not signed in: it still needs a CSRF token for the
        sign-in form itself (a login CSRF would sign the victim in as the attacker)."""
        return cls(csrf=secrets.token_urlsafe(24))

    def signed_in(self, key: ApiKey, now: datetime) -> OperatorSession:
        # A fresh CSRF token on sign-in: one learnt before it is worth nothing after.
        return OperatorSession(
            csrf=secrets.token_urlsafe(24), key_id=key.id, signed_in_at=int(now.timestamp())
        )


@dataclass(frozen=True, slots=True)
class Operator:
    """A signed-in operator: the session and the admin key it was opened with."""

    session: OperatorSession
    key: ApiKey


class SignInRequired(Exception):
    """The page needs a signed-in operator; the app answers with a redirect to sign in."""

    def __init__(self, next_path: str) -> None:
        super().__init__("sign in first")
        self.next_path = next_path


class FormRejected(Exception):
    """A form posted without this session's CSRF token (or from a lapsed session)."""


class _ClockSigner(TimestampSigner):
    """itsdangerous's timestamped signer on our clock, so expiry is testable without sleeping."""

    clock: Clock

    def get_timestamp(self) -> int:
        return int(self.clock().timestamp())


class SessionCookies:
    """Reads and writes the operators' session cookie."""

    def __init__(
        self, keys: Callable[[], KeyRing], *, lifetime: timedelta, secure: bool, clock: Clock
    ) -> None:
        """`keys` gives the current ring (`shopkeys keys rotate` may replace it)."""
        self.keys = keys
        self.lifetime = lifetime
        self.secure = secure
        self.clock = clock
        self._signers: dict[tuple[str, ...], URLSafeTimedSerializer] = {}

    def _serializer(self) -> URLSafeTimedSerializer:
        # The ring follows its key file: derive again only when its keys changed.
        ring = self.keys()
        ids = tuple(k.id for k in ring.keys)
        found = self._signers.get(ids)
        if found is None:
            signer = type("Signer", (_ClockSigner,), {"clock": staticmethod(self.clock)})
            found = URLSafeTimedSerializer(
                ring.derived_secrets(_PURPOSE), salt="operator-session", signer=signer
            )
            self._signers = {ids: found}
        return found

    def read(self, request: Request) -> OperatorSession | None:
        """The request's session; None when it has none, or a forged or lapsed one."""
        value = request.cookies.get(COOKIE)
        if not value:
            return None
        try:
            data: Any = self._serializer().loads(value, max_age=int(self.lifetime.total_seconds()))
        except BadSignature:  # SignatureExpired is one too
            return None
        if not isinstance(data, dict) or not isinstance(data.get("csrf"), str):
            return None
        key_id, at = data.get("key"), data.get("at")
        if not isinstance(key_id, str) or not isinstance(at, int):
            return OperatorSession(data["csrf"])
        if self.clock().timestamp() - at > self.lifetime.total_seconds():
            return None  # signed in too long ago, whatever the cookie's own age
        return OperatorSession(data["csrf"], key_id, at)

    def write(self, response: Response, session: OperatorSession) -> None:
        """Set the cookie to `session`, for the session's lifetime from now."""
        value = self._serializer().dumps(
            {"csrf": session.csrf, "key": session.key_id, "at": session.signed_in_at}
        )
        response.set_cookie(
            COOKIE,
            value,
            max_age=int(self.lifetime.total_seconds()),
            httponly=True,
            # Lax: sent when the operator follows a link here, never on another site's POST.
            samesite="lax",
            secure=self.secure,
        )

    def clear(self, response: Response) -> None:
        response.delete_cookie(COOKIE, httponly=True, samesite="lax", secure=self.secure)


def check_csrf(session: OperatorSession | None, form: FormData) -> None:
    """`FormRejected` unless the form carries the session's CSRF token."""
    sent = form.get(CSRF_FIELD)
    if session is None or not isinstance(sent, str):
        raise FormRejected
    if not hmac.compare_digest(sent.encode(), session.csrf.encode()):
        raise FormRejected
