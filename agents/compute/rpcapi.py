"""Client side of the compute agent's RPC API (topic ``compute.<host>``), used by compute-api.

Versions:
    1.0 - build_instance, stop_instance, start_instance, reboot_instance, delete_instance,
          get_console_output
    1.1 - attach_interface, detach_interface
"""

from __future__ import annotations

from typing import Any

from control.common import rpc
from control.common.context import RequestContext

TOPIC = "compute"
VERSION = "1.1"


def topic(host: str) -> str:
    return f"{TOPIC}.{host}"


class ComputeAPI:
    def __init__(self, transport: rpc.Transport, timeout: float = 30.0) -> None:
        self.client = rpc.RPCClient(transport, TOPIC, version=VERSION, timeout=timeout)

    def _at(self, host: str, timeout: float | None = None, version: str = "1.0") -> rpc.RPCClient:
        return self.client.prepare(topic=topic(host), version=version, timeout=timeout)

    def build_instance(
        self, ctxt: RequestContext, host: str, instance: dict[str, Any], token: str | None
    ) -> None:
        """Cast: fetch the image (with the user's ``token``) and spawn the guest."""
        self._at(host).cast(ctxt, "build_instance", instance=instance, token=token)

    def stop_instance(self, ctxt: RequestContext, host: str, instance_uuid: str) -> None:
        self._at(host).cast(ctxt, "stop_instance", instance_uuid=instance_uuid)

    def start_instance(self, ctxt: RequestContext, host: str, instance_uuid: str) -> None:
        self._at(host).cast(ctxt, "start_instance", instance_uuid=instance_uuid)

    def reboot_instance(
        self, ctxt: RequestContext, host: str, instance_uuid: str, hard: bool
    ) -> None:
        self._at(host).cast(ctxt, "reboot_instance", instance_uuid=instance_uuid, hard=hard)

    def delete_instance(self, ctxt: RequestContext, host: str, instance_uuid: str) -> None:
        self._at(host).cast(ctxt, "delete_instance", instance_uuid=instance_uuid)

    def get_console_output(
        self, ctxt: RequestContext, host: str, instance_uuid: str, length: int | None
    ) -> str:
        """Call: the guest's console log (the last ``length`` lines)."""
        return str(
            self._at(host, timeout=30.0).call(
                ctxt, "get_console_output", instance_uuid=instance_uuid, length=length
            )
        )

    def attach_interface(
        self, ctxt: RequestContext, host: str, instance_uuid: str, interface: dict[str, Any]
    ) -> None:
        """Call: plug ``interface`` (as ``build_instance``'s ``interfaces`` entries)."""
        self._at(host, timeout=60.0, version="1.1").call(
            ctxt, "attach_interface", instance_uuid=instance_uuid, interface=interface
        )

    def detach_interface(
        self, ctxt: RequestContext, host: str, instance_uuid: str, interface: dict[str, Any]
    ) -> None:
        """Call: unplug ``interface``."""
        self._at(host, timeout=60.0, version="1.1").call(
            ctxt, "detach_interface", instance_uuid=instance_uuid, interface=interface
        )
