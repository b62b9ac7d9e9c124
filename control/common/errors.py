"""The one family of API errors. Every service raises these; one handler renders them as
``{"error": {"code", "title", "message"}}``, or in the body style the app installed as
``app.extensions["cirrus.error_style"]`` (a function of the error, e.g. Neutron's
``{"NeutronError": {"type", "message", "detail"}}``). ``error_type`` is the service's own name of
the error (``NetworkNotFound``), for styles that show one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import current_app, has_app_context


class APIError(Exception):
    code = 500
    title = "Internal Server Error"

    def __init__(
        self,
        message: str | None = None,
        headers: dict[str, str] | None = None,
        error_type: str | None = None,
    ) -> None:
        super().__init__(message or self.title)
        self.message = message or self.title
        self.headers = headers or {}
        self.error_type = error_type

    def to_dict(self) -> dict[str, Any]:
        style: ErrorStyle | None = (
            current_app.extensions.get("cirrus.error_style") if has_app_context() else None
        )
        if style is not None:
            return style(self)
        return {"error": {"code": self.code, "title": self.title, "message": self.message}}


ErrorStyle = Callable[[APIError], dict[str, Any]]


class BadRequest(APIError):
    code = 400
    title = "Bad Request"


class Unauthorized(APIError):
    code = 401
    title = "Unauthorized"

    def __init__(self, message: str | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(message or "The request you have made requires authentication.", headers)


class Forbidden(APIError):
    code = 403
    title = "Forbidden"


class NotFound(APIError):
    code = 404
    title = "Not Found"


class MethodNotAllowed(APIError):
    code = 405
    title = "Method Not Allowed"


class Conflict(APIError):
    code = 409
    title = "Conflict"


class PayloadTooLarge(APIError):
    code = 413
    title = "Request Entity Too Large"


class UnsupportedMediaType(APIError):
    code = 415
    title = "Unsupported Media Type"


class ServiceUnavailable(APIError):
    code = 503
    title = "Service Unavailable"
