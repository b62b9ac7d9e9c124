"""Exceptions of the RPC layer. Everything the client raises derives from :class:`RPCError`."""

from __future__ import annotations


class RPCError(Exception):
    """Base class of every error raised by :mod:`control.common.rpc`."""


class RPCTimeout(RPCError):
    """No reply arrived for a call within its timeout (the outcome on the server is unknown)."""

    def __init__(self, topic: str, method: str, timeout: float, detail: str | None = None) -> None:
        self.topic = topic
        self.method = method
        self.timeout = timeout
        message = (
            f"no reply from topic '{topic}' to method '{method}' within {timeout:g}s: "
            "is the service consuming that queue running?"
        )
        if detail:
            message = f"{message} ({detail})"
        super().__init__(message)


class MessageDeliveryFailure(RPCError):
    """The broker did not accept (confirm) a cast or fanout message within the client's timeout."""


class RemoteError(RPCError):
    """The endpoint raised; carries the remote exception's type name, message and traceback.

    ``str()`` shows only ``"<type>: <message>"``; the traceback stays in ``remote_traceback``
    for logs and is never meant for API users.
    """

    def __init__(self, exc_type: str, message: str, remote_traceback: str | None = None) -> None:
        self.exc_type = exc_type
        self.message = message
        self.remote_traceback = remote_traceback
        super().__init__(f"{exc_type}: {message}")


class InvalidMessage(RPCError):
    """A message that is not a valid Cirrus RPC envelope (answered or dropped, never retried)."""

    rpc_expected = True


class UnknownMethod(RPCError):
    """No endpoint of the server has a public method of the requested name."""

    rpc_expected = True


class UnsupportedVersion(RPCError):
    """The endpoints implement the method, but not at the requested API version."""

    rpc_expected = True
