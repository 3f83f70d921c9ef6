"""Secrets are scrubbed from log lines before any handler sees them."""

from __future__ import annotations

import logging
import sys

import pytest

from shopkeys.redact import REDACTED, RedactingFilter, SafeRecord, guard_logs, redact


@pytest.mark.parametrize(
    "line",
    [
        "GET /api/v2/token/get?app_key=1&app_secret=SECRETVALUE&auth_code=SECRETVALUE HTTP/1.1",
        "GET /oauth/callback/shopline?code=SECRETVALUE&state=SECRETVALUE",
        "POST https://x/rest?refresh_token=SECRETVALUE&sign=SECRETVALUE",
        "Authorization: Bearer SECRETVALUE",
        "token secret_SECRETVALUE1234 issued",
        "('location', 'http://a/cb?code=SECRETVALUE')",
    ],
)
def test_redact_removes_secret_values(line: str) -> None:
    cleaned = redact(line)
    assert "SECRETVALUE" not in cleaned
    assert REDACTED in cleaned


def test_redact_keeps_harmless_parameters() -> None:
    assert redact("GET /x?app_key=123&shop_region=US") == "GET /x?app_key=123&shop_region=US"


@pytest.mark.parametrize("name", ["httpx2", "httpcore2.http11", "uvicorn.access", "shopkeys"])
def test_guarded_loggers_redact_their_records(name: str, caplog: pytest.LogCaptureFixture) -> None:
    guard_logs()
    with caplog.at_level(logging.DEBUG, logger=name):
        logging.getLogger(name).info("GET %s", "/cb?code=SECRETVALUE&state=SECRETVALUE")
    assert caplog.records
    assert all("SECRETVALUE" not in record.getMessage() for record in caplog.records)
    assert "SECRETVALUE" not in caplog.text


def test_positional_arguments_survive_for_formatters_that_read_them() -> None:
    record = logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        __file__,
        1,
        '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5000", "GET", "/oauth/callback/x?code=SECRETVALUE&state=S2", "1.1", 200),
        None,
    )

    assert RedactingFilter().filter(record)
    assert isinstance(record.args, tuple)
    path, status = record.args[2], record.args[4]
    assert status == 200
    assert "SECRETVALUE" not in str(path)
    assert "SECRETVALUE" not in record.getMessage()


# -- echoes of a request, as platforms' error messages print them ----------------------------------


@pytest.mark.parametrize(
    "line",
    [
        '{"refresh_token": "SECRETVALUE", "grant_type": "refresh_token"}',
        '{"client_secret":"SECRETVALUE"}',
        "{'client_secret': 'SECRETVALUE'}",
        "refresh_token: SECRETVALUE",
        "Refresh_Token : SECRETVALUE, next",
        "client_secret = SECRETVALUE",
        'params {\\"access_token\\": \\"SECRETVALUE\\"} echoed inside a JSON string',
        # Codes and tokens as the platforms issue them are long; short words are left alone.
        '{"code"=>"SECRETVALUE0123456789abcdef", "grant_type"=>"authorization_code"}',
        '<input name="x" app_secret="SECRETVALUE">',
        "Authorization: Basic SECRETVALUE",
        "authorization: HMAC-SHA256 SECRETVALUE",
        "x-tts-access-token: SECRETVALUE0123456789",
        '"public_token": "SECRETVALUE"',
        '{"refresh_token": "SECRETVALUE',  # cut off before the closing quote
    ],
)
def test_redact_removes_echoed_fields(line: str) -> None:
    cleaned = redact(line)
    assert "SECRETVALUE" not in cleaned
    assert REDACTED in cleaned


@pytest.mark.parametrize(
    "line",
    [
        "The authorization code is invalid, expired or has been used.",
        "GET /api/v2/token/get HTTP/1.1",
        "shop_region: US, app_key: 123",
        '{"encode": "utf-8", "tokens_left": 3}',
    ],
)
def test_redact_keeps_text_without_secrets(line: str) -> None:
    assert redact(line) == line


def test_redact_replaces_known_values_wherever_they_appear() -> None:
    secret = 's3cr et+/"value'
    text = (
        f"plain {secret} | percent s3cr%20et%2B%2F%22value | form s3cr+et%2B%2F%22value"
        f' | json "s3cr et+/\\"value"'
    )
    cleaned = redact(text, known=[secret, None, ""])
    assert "s3cr" not in cleaned
    assert cleaned.count(REDACTED) == 4


def test_a_known_value_inside_a_key_name_does_not_hide_the_value_after_it() -> None:
    # A client secret "secret" must not turn "client_secret=..." into a key the patterns miss.
    cleaned = redact("client_secret=SECRETVALUE", known=["secret"])
    assert "SECRETVALUE" not in cleaned


def test_values_too_short_to_be_secrets_are_not_replaced() -> None:
    assert redact("a b c", known=["a", "b"]) == "a b c"


@pytest.mark.parametrize(
    "text",
    [
        '{"code":"invalid_client","message":"Bad client credentials"}',
        "Invalid token: token expired",
        '{"code": 36004004, "message": "Invalid auth code"}',
        "state: active",
    ],
)
def test_ordinary_words_named_like_parameters_are_kept(text: str) -> None:
    """`code`, `token` and `state` are also words platforms use for other things."""
    assert redact(text) == text


# -- shopkeys' own API keys, tracebacks, and records built already redacted ------------------------


@pytest.mark.parametrize(
    "line",
    [
        "GET /v1/connections/sk_SECRETVALUE0123456789abcdef/token",
        "key sk_sandbox_SECRETVALUE0123456789 was refused",
        "api_key=SECRETVALUE&end_user_id=alice",
        '{"api_key": "SECRETVALUE"}',
    ],
)
def test_api_keys_are_redacted(line: str) -> None:
    cleaned = redact(line)
    assert "SECRETVALUE" not in cleaned
    assert REDACTED in cleaned


def test_words_that_merely_contain_sk_are_kept() -> None:
    assert redact("task_0123456789abcdefghij done") == "task_0123456789abcdefghij done"


def test_a_records_traceback_and_stack_are_redacted() -> None:
    try:
        raise RuntimeError("failed on https://x.test/cb?code=SECRETVALUE&state=SECRETVALUE")
    except RuntimeError:
        record = logging.getLogger("uvicorn.error").makeRecord(
            "uvicorn.error",
            logging.ERROR,
            __file__,
            1,
            "Exception in ASGI application",
            None,
            sys.exc_info(),
            sinfo="Stack (most recent call last):\n  refresh_token=SECRETVALUE",
        )

    assert RedactingFilter().filter(record)
    formatted = logging.Formatter().format(record)
    assert "RuntimeError" in formatted
    assert "SECRETVALUE" not in formatted


def test_safe_records_are_let_through_as_built() -> None:
    # Their maker redacted what it put in them; the filter does not run its patterns again.
    record = SafeRecord("shopkeys.access", logging.INFO, __file__, 1, "GET /x?a=b 200", None, None)
    assert RedactingFilter().filter(record)
    assert record.msg == "GET /x?a=b 200"
