"""The simulated authorization page: a fake store login and the two buttons a merchant presses."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from jinja2 import Environment, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse

DEFAULT_LOGIN = "demo-store"

_TEMPLATE = Environment(autoescape=select_autoescape(default=True)).from_string(
    """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{{ platform }} (sandbox): {{ verb | lower }} {{ app_name }}</title>
<style>
 body { font-family: system-ui, sans-serif; max-width: 28rem; margin: 3rem auto; color: #222; }
 .badge { background: #fde68a; padding: .1rem .5rem; border-radius: .5rem; font-size: .8rem; }
 label { display: block; margin: .8rem 0 .2rem; }
 input { width: 100%; padding: .4rem; box-sizing: border-box; }
 .buttons { margin-top: 1.2rem; display: flex; gap: .8rem; }
 button { padding: .5rem 1.2rem; font-size: 1rem; }
 .error { color: #b91c1c; }
</style>
</head>
<body>
<p><span class="badge">sandbox</span> {{ platform }}</p>
<h1>{{ verb }} {{ app_name }}</h1>
{% if error %}<p class="error">{{ error }}</p>{% endif %}
<p>This app asks for access to your store{% if scopes %}:{% endif %}</p>
{% if scopes %}<ul>{% for scope in scopes %}<li>{{ scope }}</li>{% endfor %}</ul>{% endif %}
<form method="post" action="{{ action }}">
 <label for="login">Store login</label>
 <input id="login" name="login" value="{{ login }}" autocomplete="username">
 <label for="password">Password (any)</label>
 <input id="password" name="password" type="password" value="sandbox">
 <div class="buttons">
  <button type="submit" name="decision" value="authorize">{{ verb }}</button>
  <button type="submit" name="decision" value="deny">{{ deny_label }}</button>
 </div>
</form>
</body>
</html>
"""
)


@dataclass(frozen=True, slots=True)
class Decision:
    """What the merchant did on the page."""

    approved: bool
    login: str


def render(
    request: Request,
    *,
    platform: str,
    app_name: str,
    scopes: Sequence[str] = (),
    error: str | None = None,
    status_code: int = 200,
    verb: str = "Authorize",
    deny_label: str = "Deny",
) -> HTMLResponse:
    """The page, posting back to the same address with the same query string."""
    action = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    html = _TEMPLATE.render(
        platform=platform,
        app_name=app_name,
        scopes=list(scopes),
        error=error,
        action=action,
        login=DEFAULT_LOGIN,
        verb=verb,
        deny_label=deny_label,
    )
    return HTMLResponse(html, status_code=status_code)


def error_page(platform: str, message: str, status_code: int = 400) -> HTMLResponse:
    """What the platform shows instead of the page when the request itself is wrong."""
    html = _TEMPLATE.environment.from_string(
        "<!doctype html><html><head><title>{{ platform }}: error</title></head>"
        "<body><h1>{{ platform }}</h1><p class=error>{{ message }}</p></body></html>"
    ).render(platform=platform, message=message)
    return HTMLResponse(html, status_code=status_code)


async def read_decision(request: Request) -> Decision:
    """The button pressed and the login typed, from the posted form."""
    form = await request.form()
    decision = form.get("decision")
    login = form.get("login")
    login_text = login.strip() if isinstance(login, str) and login.strip() else DEFAULT_LOGIN
    return Decision(approved=decision == "authorize", login=login_text)
