"""Secrets are scrubbed from log lines before any handler sees them."""

from __future__ import annotations

import logging

import pytest

from shopkeys.redact import REDACTED, RedactingFilter, guard_logs, redact


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
