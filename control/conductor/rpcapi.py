"""Client side of the conductor's RPC API (topic ``conductor``), used by compute agents.

Versions:
    1.0 - service_heartbeat, instance_update, instance_build_failed, instance_destroyed,
          action_event, get_host_instances
"""

from __future__ import annotations

from typing import Any

from control.common import rpc
from control.common.context import RequestContext

TOPIC = "conductor"
VERSION = "1.0"


class ConductorAPI:
    def __init__(self, transport: rpc.Transport, timeout: float = 30.0) -> None:
        self.client = rpc.RPCClient(transport, TOPIC, version=VERSION, timeout=timeout)

    def service_heartbeat(
        self,
        ctxt: RequestContext,
        host: str,
        binary: str,
        availability_zone: str | None = None,
        resources: dict[str, Any] | None = None,
        power_states: dict[str, int] | None = None,
    ) -> dict[str, Any]:
        """Call: record that ``binary`` on ``host`` is alive (and its capacity for a compute
        host); answers ``{"disabled": bool}``."""
        result: dict[str, Any] = self.client.prepare(version="1.0").call(
            ctxt,
            "service_heartbeat",
            host=host,
            binary=binary,
            availability_zone=availability_zone,
            resources=resources,
            power_states=power_states,
        )
        return result

    def instance_update(
        self,
        ctxt: RequestContext,
        instance_uuid: str,
        updates: dict[str, Any],
        expected_task_state: list[str | None] | None = None,
    ) -> bool:
        """Call: change a server's states; False when the server is gone (or its task state
        is not one of ``expected_task_state``)."""
        return bool(
            self.client.prepare(version="1.0").call(
                ctxt,
                "instance_update",
                instance_uuid=instance_uuid,
                updates=updates,
                expected_task_state=expected_task_state,
            )
        )

    def instance_build_failed(
        self, ctxt: RequestContext, instance_uuid: str, message: str, details: str | None = None
    ) -> None:
        """Call: ERROR with a fault, and the claim released."""
        self.client.prepare(version="1.0").call(
            ctxt,
            "instance_build_failed",
            instance_uuid=instance_uuid,
            message=message,
            details=details,
        )

    def instance_destroyed(self, ctxt: RequestContext, instance_uuid: str) -> None:
        """Call: the guest is gone: release the claim and delete the record."""
        self.client.prepare(version="1.0").call(
            ctxt, "instance_destroyed", instance_uuid=instance_uuid
        )

    def action_event(
        self,
        ctxt: RequestContext,
        instance_uuid: str,
        event: str,
        host: str,
        result: str | None = None,
    ) -> None:
        """Cast: the start (``result`` None) or end (``Success``/``Error``) of an event of the
        action whose request id is the context's."""
        self.client.prepare(version="1.0").cast(
            ctxt, "action_event", instance_uuid=instance_uuid, event=event, host=host, result=result
        )

    def get_host_instances(self, ctxt: RequestContext, host: str) -> dict[str, dict[str, Any]]:
        """Call: the servers the database places on ``host`` (uuid -> states)."""
        result: dict[str, dict[str, Any]] = self.client.prepare(version="1.0").call(
            ctxt, "get_host_instances", host=host
        )
        return result
