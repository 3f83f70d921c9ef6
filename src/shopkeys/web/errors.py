"""JSON errors in one shape, `{"error": {"code", "message"}}`, for every API failure."""

from __future__ import annotations

from typing import Any

from starlette.responses import JSONResponse


class ApiError(Exception):
    """An error the API answers with directly."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def error_response(status: int, code: str, message: str, **headers: str) -> JSONResponse:
    return JSONResponse(
        {"error": {"code": code, "message": message}}, status_code=status, headers=headers or None
    )


def responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` entries for error statuses, all with the error model."""
    from shopkeys.web.schemas import ErrorResponse

    descriptions = {
        400: "Bad request",
        401: "Missing or invalid API key",
        403: "The API key's scope does not allow this",
        404: "Not found",
        409: "Conflict: the connection needs re-authorization or has nothing to refresh, or "
        "the platform's configuration is incomplete",
        413: "The request body is larger than 64 KiB",
        429: "The platform rate-limits this app",
        502: "The platform failed or refused",
    }
    return {s: {"model": ErrorResponse, "description": descriptions[s]} for s in statuses}
