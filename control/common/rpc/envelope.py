"""The JSON envelope of requests and replies, and API version compatibility. Never pickle.

Request::

    {"cirrus.version": "1.0", "version": "1.3", "method": "build", "args": {...},
     "context": {...RequestContext.to_dict()...}, "msg_id": "<hex>", "request_id": "req-..."}

Reply (to a call only)::

    {"cirrus.version": "1.0", "msg_id": "<hex>", "result": <any JSON>}
    {"cirrus.version": "1.0", "msg_id": "<hex>",
     "failure": {"exc_type": "...", "message": "...", "traceback": "..."}}
"""

from __future__ import annotations

import json
import traceback
from dataclasses import dataclass
from typing import Any

from control.common.context import RequestContext
from control.common.rpc.errors import InvalidMessage, RemoteError

PROTOCOL_VERSION = "1.0"
CONTENT_TYPE = "application/json"


def parse_version(version: str) -> tuple[int, int]:
    """``"1.3"`` -> ``(1, 3)``; ``"2"`` -> ``(2, 0)``. Raises ValueError on anything else."""
    major, _, minor = str(version).partition(".")
    return int(major), int(minor or 0)


def version_compatible(requested: str, supported: str) -> bool:
    """True if an endpoint at ``supported`` can serve a message sent at ``requested``: same
    major version, and the requested minor is not newer than the endpoint's."""
    try:
        req_major, req_minor = parse_version(requested)
        sup_major, sup_minor = parse_version(supported)
    except ValueError:
        return False
    return req_major == sup_major and req_minor <= sup_minor


def _dumps(data: dict[str, Any]) -> bytes:
    return json.dumps(data, separators=(",", ":")).encode()


@dataclass(frozen=True)
class Request:
    msg_id: str
    method: str
    args: dict[str, Any]
    version: str
    context: RequestContext

    @property
    def request_id(self) -> str:
        return self.context.request_id


def encode_request(
    ctxt: RequestContext, method: str, args: dict[str, Any], version: str, msg_id: str
) -> bytes:
    """Serialise a request; a TypeError here means an argument is not JSON-serialisable."""
    return _dumps(
        {
            "cirrus.version": PROTOCOL_VERSION,
            "version": version,
            "method": method,
            "args": args,
            "context": ctxt.to_dict(),
            "msg_id": msg_id,
            "request_id": ctxt.request_id,
        }
    )


def decode_request(body: bytes) -> Request:
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidMessage(f"message body is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise InvalidMessage("message body is not a JSON object")
    proto = data.get("cirrus.version")
    if not isinstance(proto, str) or not version_compatible(proto, PROTOCOL_VERSION):
        raise InvalidMessage(
            f"envelope version {proto!r} is not supported (this server speaks {PROTOCOL_VERSION})"
        )
    method, args, version = data.get("method"), data.get("args", {}), data.get("version", "1.0")
    msg_id, context = data.get("msg_id"), data.get("context", {})
    if not isinstance(method, str) or not method:
        raise InvalidMessage("message has no method")
    if not isinstance(args, dict) or not all(isinstance(k, str) for k in args):
        raise InvalidMessage("message args must be an object")
    if not isinstance(version, str) or not isinstance(msg_id, str) or not isinstance(context, dict):
        raise InvalidMessage("message version, msg_id or context is malformed")
    if "request_id" not in context and isinstance(data.get("request_id"), str):
        context = {**context, "request_id": data["request_id"]}
    try:
        ctxt = RequestContext.from_dict(context)
    except TypeError as exc:
        raise InvalidMessage(f"message context is malformed: {exc}") from None
    return Request(msg_id=msg_id, method=method, args=args, version=version, context=ctxt)


def encode_result(msg_id: str, result: Any) -> bytes:
    """Serialise a call's result; a result that is not JSON becomes a failure reply."""
    try:
        return _dumps({"cirrus.version": PROTOCOL_VERSION, "msg_id": msg_id, "result": result})
    except (TypeError, ValueError) as exc:
        return encode_failure(msg_id, TypeError(f"the result is not JSON-serialisable: {exc}"))


def encode_failure(msg_id: str, exc: BaseException) -> bytes:
    tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return _dumps(
        {
            "cirrus.version": PROTOCOL_VERSION,
            "msg_id": msg_id,
            "failure": {"exc_type": type(exc).__name__, "message": str(exc), "traceback": tb},
        }
    )


def decode_reply(body: bytes) -> Any:
    """Return the result of a reply, or raise :class:`RemoteError` for a failure reply."""
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RemoteError("InvalidMessage", f"reply is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise RemoteError("InvalidMessage", "reply is not a JSON object")
    failure = data.get("failure")
    if failure is not None:
        if not isinstance(failure, dict):
            raise RemoteError("InvalidMessage", "reply failure is malformed")
        raise RemoteError(
            str(failure.get("exc_type", "Exception")),
            str(failure.get("message", "")),
            failure.get("traceback"),
        )
    return data.get("result")
