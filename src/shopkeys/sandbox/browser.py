"""A scripted merchant: opens an authorization URL and presses a button on the sandbox's page.

Tests and demos use it instead of a real browser; it speaks plain HTTP, so it works against the
sandbox mounted anywhere.
"""

from __future__ import annotations

import re
from html import unescape
from urllib.parse import parse_qsl, urljoin, urlsplit

import httpx2

from shopkeys.sandbox.authorize_page import DEFAULT_LOGIN

_FORM_ACTION = re.compile(r'<form method="post" action="([^"]*)"')
_HIDDEN = re.compile(r'<input type="hidden" name="([^"]+)" value="([^"]*)">')
_CONTINUE = 'name="continue"'


class BrowserError(Exception):
    """The authorization page did not behave like one."""


async def press(
    http: httpx2.AsyncClient,
    url: str,
    *,
    button: str = "Authorize",
    login: str = DEFAULT_LOGIN,
) -> str:
    """Open `url`, follow redirects to the page, press `button`, and return where it redirects.

    A page on the way with a Continue button (a connect link's own page) is continued through,
    as a merchant would.
    """
    page = await http.get(url, follow_redirects=True)
    if page.status_code == 200 and _CONTINUE in page.text:
        page = await _submit(http, page, {"continue": "1"})
    if page.status_code != 200:
        raise BrowserError(f"authorization page answered HTTP {page.status_code}")
    html = page.text
    pressed = re.search(rf'name="decision" value="([a-z]+)">{re.escape(button)}</button>', html)
    if pressed is None:
        raise BrowserError(f"no {button!r} button on the authorization page")
    decision = pressed.group(1)
    answer = await http.post(
        _form_action(page, "the authorization page"),
        data={"login": login, "password": "sandbox", "decision": decision},
        follow_redirects=False,
    )
    location = answer.headers.get("location")
    if answer.status_code not in (302, 303) or location is None:
        raise BrowserError(f"pressing {button!r} answered HTTP {answer.status_code}, no redirect")
    return location


async def _submit(
    http: httpx2.AsyncClient, page: httpx2.Response, fields: dict[str, str]
) -> httpx2.Response:
    """Post the page's form with its hidden fields and `fields`, following the redirects."""
    hidden = {name: unescape(value) for name, value in _HIDDEN.findall(page.text)}
    return await http.post(
        _form_action(page, "the page"), data={**hidden, **fields}, follow_redirects=True
    )


def _form_action(page: httpx2.Response, where: str) -> str:
    """The absolute address the page's (first) form posts to."""
    match = _FORM_ACTION.search(page.text)
    if match is None:
        raise BrowserError(f"no form on {where}")
    action: str = urljoin(str(page.url), match.group(1).replace("&amp;", "&"))
    return action


def callback_params(location: str) -> dict[str, str]:
    """The query parameters of a callback URL."""
    return dict(parse_qsl(urlsplit(location).query, keep_blank_values=True))
