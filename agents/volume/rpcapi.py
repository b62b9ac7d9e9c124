"""The volume agent's client of the ``volume`` topic (served by ``control/volume/rpc.py`` in
``cirrus-volume-rpc``): state reports, outcomes of the casts, and the host's volumes.

All are calls (the answer tells whether the record was there). Version 1.0, as in
docs/block-storage-contract.md.
"""

from __future__ import annotations

from typing import Any

from control.common import rpc
from control.common.context import RequestContext

TOPIC = "volume"
VERSION = "1.0"
BINARY = "cinder-volume"


class VolumeRPCAPI:
    def __init__(self, transport: rpc.Transport, timeout: float = 30.0) -> None:
        self.client = rpc.RPCClient(transport, TOPIC, version=VERSION, timeout=timeout)

    def report_state(
        self,
        ctxt: RequestContext,
        host: str,
        binary: str,
        availability_zone: str,
        capabilities: dict[str, Any],
    ) -> dict[str, Any]:
        result = self.client.call(
            ctxt,
            "report_state",
            host=host,
            binary=binary,
            availability_zone=availability_zone,
            capabilities=capabilities,
        )
        return dict(result or {})

    def volume_update(
        self,
        ctxt: RequestContext,
        volume_id: str,
        updates: dict[str, Any],
        message: str | None = None,
    ) -> bool:
        return bool(
            self.client.call(
                ctxt, "volume_update", volume_id=volume_id, updates=updates, message=message
            )
        )

    def volume_deleted(self, ctxt: RequestContext, volume_id: str) -> bool:
        return bool(self.client.call(ctxt, "volume_deleted", volume_id=volume_id))

    def snapshot_update(
        self,
        ctxt: RequestContext,
        snapshot_id: str,
        updates: dict[str, Any],
        message: str | None = None,
    ) -> bool:
        return bool(
            self.client.call(
                ctxt, "snapshot_update", snapshot_id=snapshot_id, updates=updates, message=message
            )
        )

    def snapshot_deleted(self, ctxt: RequestContext, snapshot_id: str) -> bool:
        return bool(self.client.call(ctxt, "snapshot_deleted", snapshot_id=snapshot_id))

    def get_host_volumes(self, ctxt: RequestContext, host: str) -> dict[str, dict[str, Any]]:
        result = self.client.call(ctxt, "get_host_volumes", host=host)
        return dict(result or {})
