"""What every operator page shares: the signed-in operator, a checked form, the page itself,
the fixed notices a redirect may ask for, and the 404 of something gone."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import Depends, Request
from fastapi.responses import RedirectResponse, Response
from starlette.datastructures import FormData

from shopkeys.api_keys import allows
from shopkeys.web.operator_session import Operator, SessionCookies, SignInRequired, check_csrf
from shopkeys.web.schemas import unstorable_text
from shopkeys.web.security import runtime_of
from shopkeys.web.templating import render

SIGNIN_PATH = "/signin"


def cookies_of(request: Request) -> SessionCookies:
    """The app's session cookies, made on first use from the runtime's key ring."""
    found: SessionCookies | None = getattr(request.app.state, "operator_cookies", None)
    if found is None:
        runtime = runtime_of(request)
        settings = runtime.settings
        found = SessionCookies(
            lambda: runtime.vault.keys,
            lifetime=timedelta(seconds=settings.operator_session_lifetime),
            secure=settings.public_url.startswith("https://"),
            clock=runtime.clock,
        )
        request.app.state.operator_cookies = found
    return found


async def signed_in(request: Request) -> Operator:
    """The signed-in operator; `SignInRequired` (a redirect to sign in) otherwise.

    The key is looked up on every page, so a revoked key, or one no longer `admin`, ends its
    sessions at once.
    """
    session = cookies_of(request).read(request)
    if session is not None and session.key_id is not None:
        key = await runtime_of(request).vault.api_keys.by_id(session.key_id)
        if key is not None and key.revoked_at is None and allows(key, "admin"):
            return Operator(session, key)
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    raise SignInRequired(target if request.method == "GET" else "/")


SignedIn = Annotated[Operator, Depends(signed_in)]


async def posted_form(request: Request, operator: SignedIn) -> FormData:
    """The form of an operator's POST, once its CSRF token matched the session's."""
    form = await request.form()
    check_csrf(operator.session, form)
    return form


PostedForm = Annotated[FormData, Depends(posted_form)]


def operator_page(
    request: Request,
    operator: Operator,
    template: str,
    context: dict[str, Any],
    status_code: int = 200,
) -> Response:
    """An operator's page: it carries the session's CSRF token for its forms, and no cache."""
    return render(
        request,
        template,
        {"operator": operator.key, "csrf": operator.session.csrf, **context},
        status_code=status_code,
    )


def redirect_to_sign_in(next_path: str) -> Response:
    return RedirectResponse(f"{SIGNIN_PATH}?next={quote(next_path, safe='/')}", status_code=303)


#: Messages a redirect may ask a page to show, by code: never text from the address itself.
NOTICES = {
    "disconnected": "The connection was disconnected and its tokens deleted.",
    "redelivered": "The event will be sent again in a moment.",
}


def notice_of(request: Request) -> str | None:
    """The fixed message a redirect asked for with `?notice=`, if it is one we know."""
    return NOTICES.get(request.query_params.get("notice", ""))


class MissingPage(Exception):
    """An operator's page about something that does not exist (any more): a 404 page."""

    def __init__(self, what: str) -> None:
        super().__init__(f"no such {what}")
        self.what = what


class FormInvalid(Exception):
    """A field of an operator's form that cannot be used as sent: a 400 page saying why."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def form_text(form: FormData, name: str, label: str, *, max_length: int = 255) -> str | None:
    """The form's `name` field stripped, None when empty; `FormInvalid` for text that is too
    long or cannot be stored, rather than cutting it or failing in the database."""
    value = form.get(name)
    if not isinstance(value, str) or not value.strip():
        return None
    value = value.strip()
    if len(value) > max_length:
        raise FormInvalid(f"The {label} is longer than {max_length} characters.")
    problem = unstorable_text(value, f"The {label}")
    if problem is not None:
        raise FormInvalid(f"{problem}.")
    return value
