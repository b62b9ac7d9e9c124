"""The client of the volume agents (topic ``volume.<host>``, server ``agents/volume/manager.py``),
used by the volume API. Casts for the lifecycle (the agent reports the outcome on topic
``volume``, see :mod:`control.volume.rpc`); calls for the connections the API must answer with.

Versions:
    1.0 - create_volume, delete_volume, extend_volume, create_snapshot, delete_snapshot (casts);
          initialize_connection, terminate_connection (calls)
"""

from __future__ import annotations

import threading
from typing import Any

from control.common import rpc
from control.common.context import RequestContext

VERSION = "1.0"


def topic(host: str) -> str:
    return f"volume.{host}"


class VolumeAgentAPI:
    def __init__(self, transport: rpc.Transport, timeout: float = 60.0) -> None:
        self.client = rpc.RPCClient(transport, "volume", version=VERSION, timeout=timeout)

    def _to(self, host: str, timeout: float | None = None) -> rpc.RPCClient:
        return self.client.prepare(topic=topic(host), timeout=timeout)

    def create_volume(
        self, ctxt: RequestContext, host: str, volume: dict[str, Any], source: dict[str, Any]
    ) -> None:
        self._to(host).cast(ctxt, "create_volume", volume=volume, source=source)

    def delete_volume(self, ctxt: RequestContext, host: str, volume_id: str) -> None:
        self._to(host).cast(ctxt, "delete_volume", volume_id=volume_id)

    def extend_volume(self, ctxt: RequestContext, host: str, volume_id: str, new_size: int) -> None:
        self._to(host).cast(ctxt, "extend_volume", volume_id=volume_id, new_size=new_size)

    def create_snapshot(
        self, ctxt: RequestContext, host: str, snapshot: dict[str, Any], force: bool
    ) -> None:
        self._to(host).cast(ctxt, "create_snapshot", snapshot=snapshot, force=force)

    def delete_snapshot(self, ctxt: RequestContext, host: str, snapshot_id: str) -> None:
        self._to(host).cast(ctxt, "delete_snapshot", snapshot_id=snapshot_id)

    def initialize_connection(
        self,
        ctxt: RequestContext,
        host: str,
        volume_id: str,
        attachment_id: str,
        connector: dict[str, Any],
    ) -> dict[str, Any]:
        info: dict[str, Any] = self._to(host).call(
            ctxt,
            "initialize_connection",
            volume_id=volume_id,
            attachment_id=attachment_id,
            connector=connector,
        )
        return info

    def terminate_connection(
        self, ctxt: RequestContext, host: str, volume_id: str, attachment_id: str
    ) -> None:
        self._to(host).call(
            ctxt, "terminate_connection", volume_id=volume_id, attachment_id=attachment_id
        )


class LazyAgentAPI:
    """Creates the transport on first use, so that it is made in the gunicorn worker."""

    def __init__(self, url: str, exchange: str = "cirrus", timeout: float = 60.0) -> None:
        self.url = url
        self.exchange = exchange
        self.timeout = timeout
        self._api: VolumeAgentAPI | None = None
        self._transport: rpc.Transport | None = None
        self._lock = threading.Lock()

    def get(self) -> VolumeAgentAPI:
        with self._lock:
            if self._api is None:
                self._transport = rpc.Transport(self.url, exchange=self.exchange)
                self._api = VolumeAgentAPI(self._transport, timeout=self.timeout)
            return self._api

    def close(self) -> None:
        with self._lock:
            if self._transport is not None:
                self._transport.close()
            self._transport = None
            self._api = None
