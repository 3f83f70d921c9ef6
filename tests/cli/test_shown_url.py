"""URLs the CLI prints (doctor's webhook row, the worker's start line) never carry credentials."""

from __future__ import annotations

import pytest

from shopkeys.redact import shown_url


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://app.example/hooks/shopkeys", "https://app.example/hooks/shopkeys"),
        ("https://user:s3cret@app.example/hooks", "https://app.example/hooks"),
        ("https://app.example/hooks?token=s3cret", "https://app.example/hooks?…"),
        ("http://127.0.0.1:9000/h", "http://127.0.0.1:9000/h"),
    ],
)
def test_credentials_are_left_out(url: str, shown: str) -> None:
    assert shown_url(url) == shown
    assert "s3cret" not in shown_url(url)
