"""The one family of API errors. Every service raises these; one handler renders them as
``{"error": {"code", "title", "message"}}``."""

from __future__ import annotations


class APIError(Exception):
    code = 500
    title = "Internal Server Error"

    def __init__(self, message: str | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(message or self.title)
        self.message = message or self.title
        self.headers = headers or {}

    def to_dict(self) -> dict[str, dict[str, object]]:
        return {"error": {"code": self.code, "title": self.title, "message": self.message}}


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
