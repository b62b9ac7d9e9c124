"""Client side of the scheduler's RPC API (topic ``scheduler``).

Versions:
    1.0 - select_destination
"""

from __future__ import annotations

from typing import Any

from control.common import rpc
from control.common.context import RequestContext

TOPIC = "scheduler"
VERSION = "1.0"


class SchedulerAPI:
    def __init__(self, transport: rpc.Transport, timeout: float = 60.0) -> None:
        self.client = rpc.RPCClient(transport, TOPIC, version=VERSION, timeout=timeout)

    def select_destination(
        self, ctxt: RequestContext, request_spec: dict[str, Any]
    ) -> dict[str, Any]:
        """Call: choose a host and claim the resources; ``{"host", "node"}``. Raises
        ``RemoteError`` with ``exc_type == "NoValidHost"`` when nothing fits."""
        result: dict[str, Any] = self.client.prepare(version="1.0").call(
            ctxt, "select_destination", request_spec=request_spec
        )
        return result
