"""An operator in a plain HTTP client: signs in, reads pages, posts their forms with the CSRF
token the page carried, as a browser would."""

from __future__ import annotations

import re
from dataclasses import dataclass
from html import unescape
from typing import Any

import httpx2

_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def csrf_of(html: str) -> str:
    found = _CSRF.search(html)
    assert found, "no CSRF token on the page"
    return found.group(1)


def hidden_fields(html: str) -> dict[str, str]:
    """The hidden inputs of a page's form, as a browser would post them."""
    found = re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', html)
    return {name: unescape(value) for name, value in found}


def field_value(html: str, element_id: str) -> str:
    """The value of the input with this id (a connect link, a revealed token)."""
    found = re.search(rf'id="{element_id}" value="([^"]*)"', html)
    assert found, f"no #{element_id} on the page"
    return unescape(found.group(1))


@dataclass
class OperatorClient:
    http: httpx2.AsyncClient
    url: str
    csrf: str = ""

    async def sign_in(self, api_key: str, next_path: str = "/") -> httpx2.Response:
        form = await self.http.get(f"{self.url}/signin")
        assert form.status_code == 200
        answer = await self.http.post(
            f"{self.url}/signin",
            data={"csrf": csrf_of(form.text), "api_key": api_key, "next": next_path},
        )
        if answer.status_code == 303:
            await self.get("/")
        return answer

    async def get(self, path: str) -> httpx2.Response:
        page = await self.http.get(f"{self.url}{path}")
        found = _CSRF.search(page.text)
        if found:
            self.csrf = found.group(1)
        return page

    async def post(self, path: str, data: dict[str, Any] | None = None) -> httpx2.Response:
        """Post a page's form, with the CSRF token of the last page read."""
        page = await self.http.post(f"{self.url}{path}", data={"csrf": self.csrf, **(data or {})})
        found = _CSRF.search(page.text)
        if found:
            self.csrf = found.group(1)
        return page

    async def connect_link(self, platform: str, end_user_id: str = "merchant-1") -> str:
        """A connect link made on the dashboard's form."""
        page = await self.post("/connect-links", {"platform": platform, "end_user_id": end_user_id})
        assert page.status_code == 200, page.text
        return field_value(page.text, "connect-link")
