"""The simulated authorization page: a fake store login and the two buttons a merchant presses.

It is dressed as its platform (a lettermark in the brand's colour) so a demo looks like the real
thing, while a banner says plainly that it is a simulator. `browser.press` reads this HTML with
regular expressions, so the `<form method="post" action=...>` tag and the two `<button ...>Label
</button>` tags must keep their exact shape.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from jinja2 import DictLoader, Environment, StrictUndefined, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse

DEFAULT_LOGIN = "demo-store"

_HEX_COLOUR = re.compile(r"#[0-9a-fA-F]{6}")


@dataclass(frozen=True, slots=True)
class Brand:
    """How a platform's pages are dressed: a lettermark in a rounded square, in its colours.

    `colour` is the brand's own (the stripe over the card); `deep` fills whatever carries white
    text (the mark, the main button) and defaults to `colour`; some brand colours are too light
    for white text at 4.5:1, so they name a darker shade here. `shadows` are offset copies of the
    letters behind them, in these colours.
    """

    letters: str
    colour: str
    deep: str = ""
    shadows: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.deep:
            object.__setattr__(self, "deep", self.colour)
        if len(self.shadows) > 2:
            raise ValueError("a mark has at most two shadows: up-left and down-right")
        # These land inside <style>, where HTML autoescaping does nothing against CSS injection.
        for value in (self.colour, self.deep, *self.shadows):
            if not _HEX_COLOUR.fullmatch(value):
                raise ValueError(f"brand colours are #rrggbb, not {value!r}")

    @property
    def stripe(self) -> str:
        # Always a gradient, even of one colour: the card paints it as a background layer, which
        # its rounded corners clip (a coloured border would square them off).
        colours = (
            (self.shadows[0], self.colour, self.shadows[-1]) if self.shadows else (self.colour,) * 2
        )
        return f"linear-gradient(90deg, {', '.join(colours)})"

    @property
    def text_shadow(self) -> str:
        offsets = ("-2px -2px", "2px 2px")
        shadows = [f"{o} 0 {c}" for o, c in zip(offsets, self.shadows, strict=False)]
        return ", ".join(shadows) or "none"


#: Each simulator's look, by its `display_name`. Plain lettermarks, not the platforms' logos.
BRANDS: Mapping[str, Brand] = {
    "AliExpress": Brand("A", "#e62e04", deep="#c92803"),
    "TikTok Shop": Brand("T", "#000000", shadows=("#25f4ee", "#fe2c55")),
    "SHOPLINE": Brand("S", "#005f56"),
    "Ecwid": Brand("E", "#0087cd", deep="#0077b6"),
}


def brand_of(platform: str) -> Brand:
    """The platform's look, or a plain grey one for a platform without its own."""
    return BRANDS.get(platform) or Brand(platform[:1].upper() or "?", "#3f3f46")


_BASE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex">
<title>{% block title %}{% endblock %}</title>
<style>
 :root {
  color-scheme: light;
  --stripe: {{ brand.stripe }};
  --deep: {{ brand.deep }};
  --text: #1f2328;
  --muted: #52525b;
  --focus: #1d4ed8;
 }
 * { box-sizing: border-box; }
 body {
  margin: 0; background: #f4f4f5; color: var(--text);
  font: 1rem/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
 }
 .sandbox {
  margin: 0; padding: .6rem 1rem; text-align: center; font-size: .9rem;
  background: #fef3c7; color: #78350f; border-bottom: 1px solid #d97706;
 }
 main { max-width: 26rem; margin: 1.5rem auto; padding: 0 1rem; }
 .card {
  background: var(--stripe) top / 100% .3rem no-repeat, #fff; border-radius: .75rem;
  padding: 1.8rem 1.25rem 1.5rem; box-shadow: 0 1px 3px rgb(0 0 0 / .15);
 }
 .platform {
  display: flex; align-items: center; gap: .75rem; margin: 0 0 1.25rem;
  font-size: 1.25rem; font-weight: 700;
 }
 .mark {
  flex: none; display: grid; place-items: center; width: 2.75rem; height: 2.75rem;
  border-radius: .7rem; background: var(--deep); color: #fff;
  font-size: 1.5rem; font-weight: 800; line-height: 1;
  text-shadow: {{ brand.text_shadow }};
 }
 h1 { font-size: 1.2rem; line-height: 1.3; margin: 0 0 .75rem; overflow-wrap: anywhere; }
 p { margin: 0 0 .75rem; }
 .scopes { margin: 0 0 1rem; padding: 0; list-style: none; }
 .scopes li { position: relative; padding: .3rem 0 .3rem 1.6rem; border-top: 1px solid #e4e4e7; }
 .scopes li::before {
  content: ""; position: absolute; left: .35rem; top: .5rem; width: .35rem; height: .7rem;
  border: solid var(--deep); border-width: 0 .15rem .15rem 0; transform: rotate(45deg);
 }
 code { font-size: .95rem; overflow-wrap: anywhere; }
 .error {
  padding: .6rem .75rem; border-radius: .4rem; background: #fef2f2; color: #b91c1c;
  border: 1px solid #fca5a5;
 }
 form { margin-top: 1.25rem; padding-top: 1rem; border-top: 1px solid #e4e4e7; }
 label { display: block; margin: .75rem 0 .25rem; font-weight: 600; }
 input {
  width: 100%; min-height: 2.75rem; padding: .5rem .65rem; font: inherit; color: var(--text);
  background: #fff; border: 1px solid #71717a; border-radius: .4rem;
 }
 .hint { margin: .25rem 0 0; font-size: .875rem; color: var(--muted); }
 .buttons { display: flex; flex-wrap: wrap; gap: .75rem; margin-top: 1.25rem; }
 button {
  flex: 1 1 8rem; min-height: 2.75rem; padding: .5rem 1rem; font: inherit; font-weight: 600;
  border-radius: .4rem; cursor: pointer;
 }
 /* Attribute selectors: a class on the buttons would break the tag shape `press` matches. */
 button[value="authorize"] { background: var(--deep); color: #fff; border: 2px solid var(--deep); }
 button[value="deny"] { background: #fff; color: var(--text); border: 2px solid #71717a; }
 button:hover { filter: brightness(.92); }
 :focus-visible { outline: 3px solid var(--focus); outline-offset: 2px; }
 footer { text-align: center; font-size: .875rem; color: var(--muted); padding: 0 1rem 1.5rem; }
</style>
</head>
<body>
<header>
 <p class="sandbox">Sandbox: a simulator of {{ platform }}, no real account. Nothing here reaches
  {{ platform }}.</p>
</header>
<main>
 <div class="card">
  <p class="platform">
   <span class="mark" aria-hidden="true">{{ brand.letters }}</span>{{ platform }}
  </p>
{% block content %}{% endblock %}
 </div>
</main>
<footer><p>Simulated by shopkeys for tests and demos.</p></footer>
</body>
</html>
"""

_AUTHORIZE = """{% extends "base.html" %}
{% block title %}{{ platform }} (sandbox): {{ verb | lower }} {{ app_name }}{% endblock %}
{% block content %}
  <h1>{{ verb }} {{ app_name }}</h1>
  {% if error %}<p class="error" role="alert">{{ error }}</p>{% endif %}
  <p><strong>{{ app_name }}</strong> asks for access to your {{ platform }} store
  {%- if scopes %}:{% else %}.{% endif %}</p>
  {% if scopes %}
  <ul class="scopes" aria-label="Access asked for">
   {% for scope in scopes %}<li><code>{{ scope }}</code></li>
   {% endfor %}
  </ul>
  {% endif %}
  <form method="post" action="{{ action }}">
   <label for="login">Store login</label>
   <input id="login" name="login" value="{{ login }}" autocomplete="username"
    autocapitalize="none" spellcheck="false">
   <label for="password">Password</label>
   <input id="password" name="password" type="password" value="sandbox"
    autocomplete="current-password" aria-describedby="password-hint">
   <p id="password-hint" class="hint">Any password works in the sandbox.</p>
   <div class="buttons">
    <button type="submit" name="decision" value="authorize">{{ verb }}</button>
    <button type="submit" name="decision" value="deny">{{ deny_label }}</button>
   </div>
  </form>
{% endblock %}
"""

_ERROR = """{% extends "base.html" %}
{% block title %}{{ platform }}: error{% endblock %}
{% block content %}
  <h1>{{ message }}</h1>
{% endblock %}
"""

_PAGES = Environment(
    loader=DictLoader({"base.html": _BASE, "authorize.html": _AUTHORIZE, "error.html": _ERROR}),
    autoescape=select_autoescape(default=True),
    undefined=StrictUndefined,
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
    brand: Brand | None = None,
) -> HTMLResponse:
    """The page, posting back to the same address with the same query string."""
    action = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    html = _PAGES.get_template("authorize.html").render(
        platform=platform,
        brand=brand or brand_of(platform),
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
    html = _PAGES.get_template("error.html").render(
        platform=platform, brand=brand_of(platform), message=message
    )
    return HTMLResponse(html, status_code=status_code)


async def read_decision(request: Request) -> Decision:
    """The button pressed and the login typed, from the posted form."""
    form = await request.form()
    decision = form.get("decision")
    login = form.get("login")
    login_text = login.strip() if isinstance(login, str) and login.strip() else DEFAULT_LOGIN
    return Decision(approved=decision == "authorize", login=login_text)
