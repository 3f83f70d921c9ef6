"""What of an app's call goes on to the platform, and what of the answer comes back."""

from __future__ import annotations

import pytest

from shopkeys.proxy.call import ApiCall, BadPath, answer_headers, call_path


def test_the_apps_own_credentials_and_hop_headers_stay_behind() -> None:
    call = ApiCall.of(
        "post",
        "/x",
        "a=1",
        [
            ("Authorization", "Bearer sk_live_app_key"),
            ("Cookie", "session=1"),
            ("x-tts-access-token", "the-apps-own"),
            ("Host", "shopkeys.example"),
            ("Content-Length", "3"),
            ("Connection", "keep-alive, X-Private"),
            ("X-Private", "hop"),
            ("Transfer-Encoding", "chunked"),
            ("X-Shopkeys-Shop", " 7494 "),
            ("X-Shopkeys-Anything", "ours"),
            ("Content-Type", "application/json"),
            ("X-Request-Id", "r1"),
            ("Accept-Encoding", "gzip"),
        ],
        b"{}",
    )
    assert call.method == "POST"
    assert call.shop_id == "7494"
    assert call.headers == (
        ("Content-Type", "application/json"),
        ("X-Request-Id", "r1"),
        ("Accept-Encoding", "gzip"),
    )


def test_an_app_that_asks_for_no_encoding_gets_none() -> None:
    call = ApiCall.of("GET", "/x", "", [("Accept", "application/json")], b"")
    assert ("Accept-Encoding", "identity") in call.headers
    assert call.shop_id is None


@pytest.mark.parametrize(
    ("raw", "path"),
    [("products", "/products"), ("sync", "/sync"), ("a%2Fb/c", "/a%2Fb/c"), ("/x", "/x")],
)
def test_paths_pass_as_the_app_encoded_them(raw: str, path: str) -> None:
    assert call_path(raw) == path


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "/",
        "../other",
        "a/./b",
        "a/%2e%2E/b",
        "a/%2E",
        "%2e%2e%2f%2e%2e%2f456",
        "..%2f..",
        "..%5c..",
        "a\\..\\b",
        "..;x/b",
        "a/%252e%252e/b",
    ],
)
def test_dot_segments_and_empty_paths_are_refused(raw: str) -> None:
    with pytest.raises(BadPath):
        call_path(raw)


def test_an_answer_never_carries_both_a_length_and_chunks() -> None:
    upstream = [
        ("Content-Type", "application/json"),
        ("Content-Length", "10"),
        ("Transfer-Encoding", "chunked"),
        ("Connection", "close"),
        ("Date", "Wed, 02 Dec 2026 23:00:00 GMT"),
        ("Server", "gateway"),
        ("Set-Cookie", "session=the-platforms"),
        ("Link", "<a>"),
        ("Link", "<b>"),
    ]
    # Cookies would be set on shopkeys' origin; repeated headers stay repeated.
    assert answer_headers(upstream) == [
        ("Content-Type", "application/json"),
        ("Link", "<a>"),
        ("Link", "<b>"),
    ]
    assert answer_headers([("Content-Length", "10")]) == [("Content-Length", "10")]
