"""Endpoint dispatch: find the method a request names and check its API version.

An endpoint is any object; its public methods (no leading underscore) are callable over RPC as
``endpoint.<method>(ctxt, **args)``. It may declare ``target_version = "1.3"``; otherwise the
server's version applies. A request at version X.Y is served by an endpoint at X.Z with Y <= Z.
The first endpoint that has the method at a compatible version wins.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from control.common.rpc.envelope import Request, parse_version, version_compatible
from control.common.rpc.errors import UnknownMethod, UnsupportedVersion


class Dispatcher:
    def __init__(self, topic: str, endpoints: Sequence[object], default_version: str) -> None:
        parse_version(default_version)
        self.topic = topic
        self.endpoints = list(endpoints)
        self.default_version = default_version
        for endpoint in self.endpoints:
            parse_version(self.version_of(endpoint))  # fail at start-up, not at the first call

    def version_of(self, endpoint: object) -> str:
        return str(getattr(endpoint, "target_version", self.default_version))

    def find(self, method: str, version: str) -> Callable[..., Any]:
        """The bound method serving ``method`` at ``version``; raises UnknownMethod or
        UnsupportedVersion (both answered to the caller, never dropped)."""
        candidates: list[tuple[str, Callable[..., Any]]] = []
        if method.isidentifier() and not method.startswith("_"):
            for endpoint in self.endpoints:
                func = getattr(endpoint, method, None)
                if callable(func):
                    candidates.append((self.version_of(endpoint), func))
        if not candidates:
            raise UnknownMethod(f"unknown method '{method}' on topic '{self.topic}'")
        for supported, func in candidates:
            if version_compatible(version, supported):
                return func
        offered = ", ".join(sorted({v for v, _ in candidates}))
        raise UnsupportedVersion(
            f"method '{method}' on topic '{self.topic}' was called at version {version}, "
            f"but the endpoints implement version {offered}"
        )

    def dispatch(self, request: Request) -> Any:
        func = self.find(request.method, request.version)
        return func(request.context, **request.args)
