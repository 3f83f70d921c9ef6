"""Each simulator's authorization page looks like its platform and stays usable and honest."""

from __future__ import annotations

from html.parser import HTMLParser

import httpx2
import pytest
from starlette.requests import Request

from shopkeys.sandbox import authorize_page
from shopkeys.sandbox.authorize_page import BRANDS, Brand
from tests.conftest import LiveSandbox

PLATFORMS = [
    ("aliexpress", "AliExpress"),
    ("tiktok_shop", "TikTok Shop"),
    ("shopline", "SHOPLINE"),
    ("ecwid", "Ecwid"),
]


class Page(HTMLParser):
    """What a reader of the page gets: its tags' attributes, and its text with spaces collapsed."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str]]] = []
        self._text: list[str] = []
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, {k: v or "" for k, v in attrs}))

    def handle_data(self, data: str) -> None:
        self._text.append(data)

    @property
    def text(self) -> str:
        return " ".join("".join(self._text).split())

    def all(self, tag: str) -> list[dict[str, str]]:
        return [attrs for name, attrs in self.tags if name == tag]


def contrast(a: str, b: str) -> float:
    """WCAG 2 contrast ratio of two #rrggbb colours."""

    def luminance(colour: str) -> float:
        channels = [int(colour[i : i + 2], 16) / 255 for i in (1, 3, 5)]
        r, g, b = (c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels)
        return 0.2126 * r + 0.7152 * g + 0.0722 * b

    light, dark = sorted((luminance(a), luminance(b)), reverse=True)
    return (light + 0.05) / (dark + 0.05)


@pytest.mark.parametrize(("name", "display"), PLATFORMS, ids=[n for n, _ in PLATFORMS])
async def test_each_platform_page_has_its_look_the_banner_labels_and_buttons(
    live_sandbox: LiveSandbox, http: httpx2.AsyncClient, name: str, display: str
) -> None:
    url = live_sandbox.provider(name).authorization_url("look", live_sandbox.redirect_uri(name))
    answer = await http.get(url, follow_redirects=True)
    assert answer.status_code == 200
    html = answer.text
    page = Page(html)

    assert page.all("html") == [{"lang": "en"}]
    assert len(page.all("main")) == 1
    assert {"name": "viewport", "content": "width=device-width, initial-scale=1"} in page.all(
        "meta"
    )
    assert display in page.text
    assert f"Sandbox: a simulator of {display}, no real account" in page.text
    assert BRANDS[display].deep in html
    labelled = {label["for"] for label in page.all("label")}
    inputs = {field["id"]: field["name"] for field in page.all("input")}
    assert {"login", "password"} <= labelled
    assert inputs == {"login": "login", "password": "password"}
    # The exact tags `browser.press` matches.
    assert '<form method="post" action="' in html
    assert '<button type="submit" name="decision" value="authorize">Authorize</button>' in html
    assert '<button type="submit" name="decision" value="deny">Deny</button>' in html
    # Self-contained: nothing fetched from elsewhere, nothing to run.
    assert page.all("script") == [] and page.all("link") == [] and page.all("img") == []
    assert "url(" not in html and "@import" not in html


async def test_every_simulator_has_a_brand(live_sandbox: LiveSandbox) -> None:
    """A renamed simulator would otherwise fall back to the plain grey look without notice."""
    names = {sim.display_name for sim in live_sandbox.sandbox.simulators.values()}
    assert names == set(BRANDS)


@pytest.mark.parametrize("display", list(BRANDS))
def test_white_text_on_each_brand_reaches_aa_contrast(display: str) -> None:
    assert contrast(BRANDS[display].deep, "#ffffff") >= 4.5


def test_brand_colours_cannot_smuggle_css() -> None:
    with pytest.raises(ValueError, match="#rrggbb"):
        Brand("X", "red;}</style><script>")


def test_what_the_caller_passes_is_escaped() -> None:
    request = Request(
        {
            "type": "http",
            "method": "GET",
            "scheme": "http",
            "server": ("sandbox.test", 80),
            "path": "/oauth/authorize",
            "query_string": b"a=1&b=2",
            "headers": [],
        }
    )
    answer = authorize_page.render(
        request,
        platform="Nowhere",
        app_name="<script>alert(1)</script>",
        scopes=["read<all>"],
        error="bad & worse",
        verb="Install",
        deny_label="Cancel",
    )
    html = bytes(answer.body).decode()
    assert "<script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "read&lt;all&gt;" in html and "bad &amp; worse" in html
    assert '<form method="post" action="/oauth/authorize?a=1&amp;b=2">' in html
    assert '<button type="submit" name="decision" value="authorize">Install</button>' in html
    assert '<button type="submit" name="decision" value="deny">Cancel</button>' in html
    assert "Sandbox: a simulator of Nowhere, no real account" in Page(html).text
