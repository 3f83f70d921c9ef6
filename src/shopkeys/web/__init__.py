"""The HTTP face of shopkeys: FastAPI app, JSON API, pages."""

from shopkeys.web.app import create_app

__all__ = ["create_app"]
