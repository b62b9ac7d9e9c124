"""Client side of the compute agent's RPC API (topic ``compute.<host>``), used by compute-api.

Versions:
    1.0 - build_instance, stop_instance, start_instance, reboot_instance, delete_instance,
          get_console_output
    1.1 - attach_interface, detach_interface
    1.2 - attach_volume, detach_volume; build_instance's payload gains ``block_devices``
"""

from __future__ import annotations

from typing import Any

from control.common import rpc
from control.common.context import RequestContext

TOPIC = "compute"
VERSION = "1.2"

#: How long compute-api waits for a volume attach or detach (a detach waits for the guest to
#: release the disk: the libvirt driver's ``device_detach_timeout``, 60 s by default).
VOLUME_ATTACH_TIMEOUT = 60.0
VOLUME_DETACH_TIMEOUT = 120.0


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

    def attach_volume(
        self,
        ctxt: RequestContext,
        host: str,
        instance_uuid: str,
        volume_id: str,
        connection_info: dict[str, Any],
        device: str,
    ) -> None:
        """Call: give the guest the volume (``connection_info`` from the volume API)."""
        self._at(host, timeout=VOLUME_ATTACH_TIMEOUT, version="1.2").call(
            ctxt,
            "attach_volume",
            instance_uuid=instance_uuid,
            volume_id=volume_id,
            connection_info=connection_info,
            device=device,
        )

    def detach_volume(
        self, ctxt: RequestContext, host: str, instance_uuid: str, volume_id: str, device: str
    ) -> None:
        """Call: take the disk away; returns once the guest released it."""
        self._at(host, timeout=VOLUME_DETACH_TIMEOUT, version="1.2").call(
            ctxt, "detach_volume", instance_uuid=instance_uuid, volume_id=volume_id, device=device
        )

    def delete_instance_sync(
        self, ctxt: RequestContext, host: str, instance_uuid: str, timeout: float = 60.0
    ) -> None:
        """``delete_instance`` as a call: returns once the guest is gone (server delete of a
        server with volumes, whose exports are stopped only after that)."""
        self._at(host, timeout=timeout).call(ctxt, "delete_instance", instance_uuid=instance_uuid)
