"""The HTTP layer (FastAPI): the only place that knows status codes and JSON shapes."""

from even.api.app import create_app

__all__ = ["create_app"]
