"""The operators' session cookie: signed, lapsing on our clock, and surviving a key rotation."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from starlette.requests import Request
from starlette.responses import Response

from shopkeys.crypto import KeyRing, generate_key_ring
from shopkeys.store.records import ApiKey
from shopkeys.web.operator_session import COOKIE, OperatorSession, SessionCookies

START = datetime(2030, 1, 1, tzinfo=UTC)
KEY = ApiKey("key_1", "ops", "sk_abcdefg", "admin", START, None)


class Clock:
    now = START

    def __call__(self) -> datetime:
        return self.now


def _request(value: str | None) -> Request:
    headers = [(b"cookie", f"{COOKIE}={value}".encode())] if value is not None else []
    return Request({"type": "http", "headers": headers, "method": "GET", "path": "/"})


def _written(cookies: SessionCookies, session: OperatorSession) -> str:
    response = Response()
    cookies.write(response, session)
    header = response.headers["set-cookie"]
    assert "httponly" in header.lower() and "samesite=lax" in header.lower()
    return header.split(";", 1)[0].split("=", 1)[1]


def test_a_session_reads_back_until_it_lapses() -> None:
    ring, clock = generate_key_ring(), Clock()
    cookies = SessionCookies(lambda: ring, lifetime=timedelta(hours=12), secure=True, clock=clock)
    session = OperatorSession.anonymous().signed_in(KEY, START)
    value = _written(cookies, session)
    assert cookies.read(_request(value)) == session
    clock.now += timedelta(hours=11, minutes=59)
    assert cookies.read(_request(value)) == session
    clock.now += timedelta(minutes=2)
    assert cookies.read(_request(value)) is None


def test_forged_or_foreign_cookies_read_as_none() -> None:
    ring, clock = generate_key_ring(), Clock()
    cookies = SessionCookies(lambda: ring, lifetime=timedelta(hours=1), secure=False, clock=clock)
    value = _written(cookies, OperatorSession.anonymous().signed_in(KEY, START))
    other = SessionCookies(
        lambda: generate_key_ring(), lifetime=timedelta(hours=1), secure=False, clock=clock
    )
    assert other.read(_request(value)) is None  # another deployment's keys
    payload, _, signature = value.rpartition(".")
    assert cookies.read(_request(payload + "." + signature[::-1])) is None
    assert cookies.read(_request("")) is None
    assert cookies.read(_request(None)) is None
    assert cookies.read(_request("not-a-cookie")) is None


def test_a_key_rotation_keeps_sessions_while_the_old_key_is_in_the_ring() -> None:
    old = generate_key_ring()
    current: list[KeyRing] = [old]
    clock = Clock()
    cookies = SessionCookies(
        lambda: current[0], lifetime=timedelta(hours=1), secure=False, clock=clock
    )
    session = OperatorSession.anonymous().signed_in(KEY, START)
    value = _written(cookies, session)
    rotated = old.with_new_primary()
    current[0] = rotated
    assert cookies.read(_request(value)) == session
    assert _written(cookies, session) != value  # signed with the new primary now
    current[0] = rotated.without(old.primary.id)
    assert cookies.read(_request(value)) is None


def test_signing_in_changes_the_csrf_token() -> None:
    before = OperatorSession.anonymous()
    after = before.signed_in(KEY, START)
    assert after.key_id == "key_1" and after.csrf != before.csrf


def test_derived_secrets_differ_by_purpose_and_from_the_key() -> None:
    ring = generate_key_ring()
    [one] = ring.derived_secrets("a")
    [two] = ring.derived_secrets("b")
    assert one != two and len(one) == 32 and one != ring.primary.secret


def test_writing_the_cookie_again_does_not_extend_the_session() -> None:
    """The sign-in page writes the cookie afresh on every visit: the session still ends a
    lifetime after the operator signed in."""
    ring, clock = generate_key_ring(), Clock()
    cookies = SessionCookies(lambda: ring, lifetime=timedelta(hours=12), secure=True, clock=clock)
    value = _written(cookies, OperatorSession.anonymous().signed_in(KEY, START))
    for _ in range(3):
        clock.now += timedelta(hours=5)
        read = cookies.read(_request(value))
        if read is None:
            break
        value = _written(cookies, read)
    assert clock.now - START == timedelta(hours=15)
    assert read is None


def test_a_signed_in_session_without_its_time_is_not_signed_in() -> None:
    ring, clock = generate_key_ring(), Clock()
    cookies = SessionCookies(lambda: ring, lifetime=timedelta(hours=1), secure=True, clock=clock)
    value = _written(cookies, OperatorSession("c", key_id="key_1"))
    assert cookies.read(_request(value)) == OperatorSession("c")
