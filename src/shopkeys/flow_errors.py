"""What the use cases (connect, import, claim) refuse, by kind.

Each class is a kind of refusal; `code` is the stable word apps and pages see, and the message says
why and what to do. The flows know nothing of HTTP: the web layer maps each kind to a status in one
table (`shopkeys.web.problems`).
"""

from __future__ import annotations

from typing import ClassVar

from shopkeys.errors import ShopkeysError


class FlowError(ShopkeysError):
    """A request a use case cannot carry out; `code` names the reason."""

    code: ClassVar[str] = "refused"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        # The class gives the usual code; a few kinds have several, named where they are raised.
        self.reason = code or type(self).code


class InvalidRequest(FlowError):
    """The request or callback is wrong as sent (a missing parameter, a disallowed return_to)."""

    code = "invalid_request"


class NotConfigured(FlowError):
    """The platform has no app credentials here."""

    code = "not_configured"


class IncompleteConfiguration(FlowError):
    """The platform is configured, but not enough to send merchants to it."""

    code = "incomplete_configuration"


class UnknownLink(FlowError):
    """The connect link is not one we issued."""

    code = "unknown_session"


class LinkClosed(FlowError):
    """The connect link was used, or has expired, or has nothing left to confirm."""

    code = "used_session"


class WrongBrowser(FlowError):
    """The link waits for the browser that first opened it."""

    code = "other_browser"


class StateRejected(FlowError):
    """The callback's state is unknown, expired or used: it may be forged or replayed."""

    code = "unknown_state"


class AlreadyCompleted(FlowError):
    """The one-time step was done before (an app market install's code)."""

    code = "reused_code"


class PlatformRefused(FlowError):
    """The platform refused the exchange, or failed during it."""

    code = "platform_error"


class ImportRefused(InvalidRequest):
    """The token cannot be imported as sent (no account id, or the platform refuses it)."""

    code = "invalid_token"
