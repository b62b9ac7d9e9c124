"""One service calling another's API over HTTP with a token (compute-api calling the network and
volume APIs): a JSON request, and an error that carries the other service's own words.

A service's client subclasses :class:`ServiceClient` and sets ``service`` (named in messages),
``prefix`` (the API version's path), ``headers`` (a microversion), ``timeout`` and ``error`` (its
:class:`ServiceAPIError` subclass, which callers catch).
"""

from __future__ import annotations

from typing import Any, ClassVar

import requests


class ServiceAPIError(Exception):
    """The other API answered with an error (``status``) or not at all (``status`` 0)."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


class ServiceClient:
    """Another service's API at ``url`` with one token."""

    service: ClassVar[str] = "the service"
    prefix: ClassVar[str] = ""
    headers: ClassVar[dict[str, str]] = {}
    timeout: ClassVar[float] = 30.0
    error: ClassVar[type[ServiceAPIError]] = ServiceAPIError

    def __init__(self, url: str, token: str) -> None:
        self.url = url.rstrip("/")
        self.token = token

    def call(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        params: dict[str, Any] | list[tuple[str, str]] | None = None,
        expect: tuple[int, ...] = (200,),
    ) -> Any:
        """Send one request; the decoded JSON answer (``None`` when empty). Raises ``error``."""
        try:
            response = requests.request(
                method,
                f"{self.url}{self.prefix}{path}",
                json=body,
                params=params,
                headers={"X-Auth-Token": self.token, **self.headers},
                timeout=self.timeout,
            )
        except requests.RequestException as exc:
            raise self.error(f"{self.service} did not answer: {exc}") from None
        if response.status_code not in expect:
            raise self.error(error_message(response, self.service), response.status_code)
        if response.status_code == 204 or not response.content:
            return None
        return response.json()


def error_message(response: requests.Response, service: str) -> str:
    """The message of an OpenStack error body, whatever its wrapper (``NeutronError``,
    ``badRequest``, ``error``...), else the status."""
    try:
        body = response.json()
    except ValueError:
        return f"{service} answered {response.status_code}"
    if isinstance(body, dict):
        for value in body.values():
            if isinstance(value, dict) and value.get("message"):
                return str(value["message"])
        if body.get("message"):
            return str(body["message"])
    return f"{service} answered {response.status_code}"
