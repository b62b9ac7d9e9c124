"""The compute agent's manager: the RPC endpoint of topic ``compute.<host>`` and the periodic
tasks (heartbeat with the host's capacity, power-state sync).

It receives its collaborators instead of importing them (nova's ``ComputeManager``/``virtapi``
pattern): a :class:`~agents.compute.driver.ComputeDriver`, a *conductor* object with the methods
of :class:`Conductor` (in production :class:`control.conductor.rpcapi.ConductorAPI`, in unit tests
anything with the same methods) and an :class:`~agents.compute.imagecache.ImageCache`.

Every handler is idempotent (RPC delivery is at least once): the driver's methods are, and the
state reported is absolute. Each user action's progress is recorded as an action event.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from typing import Any, Protocol

from agents.compute.driver import (
    BlockDevice,
    ComputeDriver,
    DriverError,
    ImageFiles,
    InstanceNotFound,
    InstanceSpec,
    NetworkInterface,
    PowerState,
)
from agents.compute.imagecache import ImageCache
from control.common.context import RequestContext

LOG = logging.getLogger("cirrus.compute.manager")

BINARY = "nova-compute"


class Conductor(Protocol):
    def service_heartbeat(
        self,
        ctxt: RequestContext,
        host: str,
        binary: str,
        availability_zone: str | None = None,
        resources: dict[str, Any] | None = None,
        power_states: dict[str, int] | None = None,
    ) -> dict[str, Any]: ...

    def instance_update(
        self,
        ctxt: RequestContext,
        instance_uuid: str,
        updates: dict[str, Any],
        expected_task_state: list[str | None] | None = None,
    ) -> bool: ...

    def instance_build_failed(
        self, ctxt: RequestContext, instance_uuid: str, message: str, details: str | None = None
    ) -> None: ...

    def instance_destroyed(self, ctxt: RequestContext, instance_uuid: str) -> None: ...

    def action_event(
        self,
        ctxt: RequestContext,
        instance_uuid: str,
        event: str,
        host: str,
        result: str | None = None,
    ) -> None: ...

    def get_host_instances(self, ctxt: RequestContext, host: str) -> dict[str, dict[str, Any]]: ...


def _message(exc: Exception) -> str:
    if isinstance(exc, DriverError):
        return str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {exc}"


class ComputeManager:
    target_version = "1.2"

    def __init__(
        self,
        host: str,
        driver: ComputeDriver,
        conductor: Conductor,
        image_cache: ImageCache,
        availability_zone: str = "nova",
        heartbeat_interval: float = 10.0,
        sync_interval: float = 10.0,
    ) -> None:
        self.host = host
        self.driver = driver
        self.conductor = conductor
        self.image_cache = image_cache
        self.availability_zone = availability_zone
        self.heartbeat_interval = heartbeat_interval
        self.sync_interval = sync_interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- life cycle ----------------------------------------------------------------------------

    def init_host(self) -> None:
        self.driver.init_host(self.host)

    def start_periodic(self) -> None:
        self._thread = threading.Thread(
            target=self._periodic, name=f"compute-periodic-{self.host}", daemon=True
        )
        self._thread.start()

    def stop_periodic(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None

    def _periodic(self) -> None:
        next_sync = 0.0
        elapsed = 0.0
        while not self._stop.is_set():
            try:
                self.heartbeat()
                if elapsed >= next_sync:
                    self.sync_power_states()
                    next_sync = elapsed + self.sync_interval
            except Exception:
                LOG.exception("periodic task failed on %s", self.host)
            self._stop.wait(self.heartbeat_interval)
            elapsed += self.heartbeat_interval

    def _admin(self) -> RequestContext:
        return RequestContext(roles=["admin", "service"])

    def heartbeat(self) -> dict[str, Any]:
        """Report the service alive, the host's capacity and its guests' power states."""
        res = self.driver.get_available_resource()
        states: dict[str, int] = {}
        for uuid in self.driver.list_instances():
            # A guest being defined or removed right now may not answer: it is left out of this
            # heartbeat, which must never fail because of one guest.
            with contextlib.suppress(InstanceNotFound, DriverError):
                states[uuid] = int(self.driver.get_power_state(uuid))
        return self.conductor.service_heartbeat(
            self._admin(),
            self.host,
            BINARY,
            availability_zone=self.availability_zone,
            resources={
                "hostname": res.hostname,
                "vcpus": res.vcpus,
                "memory_mb": res.memory_mb,
                "local_gb": res.local_gb,
                "hypervisor_type": res.hypervisor_type,
                "hypervisor_version": res.hypervisor_version,
                "cpu_info": res.cpu_info,
            },
            power_states=states,
        )

    def sync_power_states(self) -> list[str]:
        """Compare the guests the driver sees with what the database says: an ACTIVE server
        whose guest died goes SHUTOFF; a guest whose server no longer exists is removed.
        Returns the ids changed."""
        ctxt = self._admin()
        known = self.conductor.get_host_instances(ctxt, self.host)
        present = set(self.driver.list_instances())
        changed: list[str] = []
        for uuid, state in known.items():
            if state["vm_state"] != "active" or state["task_state"] is not None:
                continue
            try:
                power = self.driver.get_power_state(uuid) if uuid in present else None
            except InstanceNotFound:
                power = None
            except DriverError as exc:
                LOG.info("server %s: power state unknown this time (%s)", uuid, exc)
                continue
            if power == PowerState.RUNNING:
                continue
            LOG.warning("server %s: the guest is not running any more: SHUTOFF", uuid)
            if self.conductor.instance_update(
                ctxt,
                uuid,
                {"vm_state": "stopped", "power_state": int(power or PowerState.NOSTATE)},
                expected_task_state=[None],
            ):
                changed.append(uuid)
        for uuid in present - set(known):
            LOG.warning("removing guest %s: its server no longer exists", uuid)
            with contextlib.suppress(DriverError):
                self.driver.destroy(uuid)
            changed.append(uuid)
        return changed

    # -- RPC endpoint --------------------------------------------------------------------------

    def _event(self, ctxt: RequestContext, uuid: str, event: str, result: str | None) -> None:
        try:
            self.conductor.action_event(ctxt, uuid, event, self.host, result)
        except Exception:
            LOG.warning("could not record event %s of %s", event, uuid, exc_info=True)

    def build_instance(
        self, ctxt: RequestContext, instance: dict[str, Any], token: str | None = None
    ) -> None:
        """Fetch the image (cached), spawn the guest, report ACTIVE; on any failure ERROR with
        a fault (the conductor releases the claim) and nothing left behind."""
        uuid = str(instance["uuid"])
        event = "compute_build_and_run_instance"
        self._event(ctxt, uuid, event, None)
        try:
            block_devices = [
                BlockDevice.from_dict(bdm) for bdm in instance.get("block_devices") or []
            ]
            image = instance.get("image") or {}
            if image.get("id"):
                files = self.image_cache.image_files(image, token)
            else:
                # Volume-backed without an image: the guest boots from its vda volume.
                files = ImageFiles(image_id="", disk=None)
            spec = InstanceSpec(
                uuid=uuid,
                name=str(instance["name"]),
                vcpus=int(instance["vcpus"]),
                memory_mb=int(instance["memory_mb"]),
                root_gb=int(instance["root_gb"]),
                image=files,
                project_id=str(instance.get("project_id") or ""),
                user_id=str(instance.get("user_id") or ""),
                flavor_id=str(instance.get("flavor_id") or ""),
                user_data=instance.get("user_data"),
                metadata=dict(instance.get("metadata") or {}),
                key_data=instance.get("key_data"),
                interfaces=[
                    NetworkInterface.from_dict(vif) for vif in instance.get("interfaces") or []
                ],
                block_devices=block_devices,
            )
            self.driver.spawn(spec)
        except Exception as exc:
            LOG.warning("build of %s failed: %s", uuid, _message(exc), exc_info=True)
            with contextlib.suppress(Exception):
                self.driver.destroy(uuid)
            self.conductor.instance_build_failed(
                ctxt, uuid, f"Build failed: {_message(exc)}"[:255], _message(exc)
            )
            self._event(ctxt, uuid, event, "Error")
            return
        updated = self.conductor.instance_update(
            ctxt,
            uuid,
            {
                "vm_state": "active",
                "task_state": None,
                "power_state": int(PowerState.RUNNING),
                "launched_at": True,
            },
            expected_task_state=["spawning"],
        )
        if not updated:
            state = self.conductor.get_host_instances(ctxt, self.host).get(uuid)
            if state is None or state["vm_state"] == "error":
                LOG.info("server %s went away during its build: removing the guest", uuid)
                self.driver.destroy(uuid)
                self._event(ctxt, uuid, event, "Error")
                return
        self._event(ctxt, uuid, event, "Success")

    def _power_action(
        self,
        ctxt: RequestContext,
        uuid: str,
        event: str,
        action: Any,
        vm_state: str,
        power: PowerState,
    ) -> None:
        self._event(ctxt, uuid, event, None)
        try:
            action()
        except Exception as exc:
            LOG.warning("%s of %s failed: %s", event, uuid, _message(exc))
            self.conductor.instance_update(ctxt, uuid, {"task_state": None})
            self._event(ctxt, uuid, event, "Error")
            return
        self.conductor.instance_update(
            ctxt,
            uuid,
            {"vm_state": vm_state, "task_state": None, "power_state": int(power)},
        )
        self._event(ctxt, uuid, event, "Success")

    def stop_instance(self, ctxt: RequestContext, instance_uuid: str) -> None:
        self._power_action(
            ctxt,
            instance_uuid,
            "compute_stop_instance",
            lambda: self.driver.power_off(instance_uuid),
            "stopped",
            PowerState.SHUTDOWN,
        )

    def start_instance(self, ctxt: RequestContext, instance_uuid: str) -> None:
        self._power_action(
            ctxt,
            instance_uuid,
            "compute_start_instance",
            lambda: self.driver.power_on(instance_uuid),
            "active",
            PowerState.RUNNING,
        )

    def reboot_instance(self, ctxt: RequestContext, instance_uuid: str, hard: bool = False) -> None:
        self._power_action(
            ctxt,
            instance_uuid,
            "compute_reboot_instance",
            lambda: self.driver.reboot(instance_uuid, hard=hard),
            "active",
            PowerState.RUNNING,
        )

    def delete_instance(self, ctxt: RequestContext, instance_uuid: str) -> None:
        """Remove the guest, then the record (and its claim) through the conductor."""
        self._event(ctxt, instance_uuid, "compute_terminate_instance", None)
        self.driver.destroy(instance_uuid)
        self.conductor.instance_destroyed(ctxt, instance_uuid)

    def attach_interface(
        self, ctxt: RequestContext, instance_uuid: str, interface: dict[str, Any]
    ) -> None:
        """Call (1.1): plug a port compute-api made and bound to this host."""
        self.driver.attach_interface(instance_uuid, NetworkInterface.from_dict(interface))

    def detach_interface(
        self, ctxt: RequestContext, instance_uuid: str, interface: dict[str, Any]
    ) -> None:
        """Call (1.1): unplug a port; compute-api releases it afterwards."""
        self.driver.detach_interface(instance_uuid, NetworkInterface.from_dict(interface))

    def attach_volume(
        self,
        ctxt: RequestContext,
        instance_uuid: str,
        volume_id: str,
        connection_info: dict[str, Any],
        device: str,
    ) -> None:
        """Call (1.2): give the guest the volume compute-api connected to this host; returns
        once the guest has the disk. Idempotent (the driver's attach is)."""
        self.driver.attach_volume(instance_uuid, connection_info, device, volume_id)

    def detach_volume(
        self, ctxt: RequestContext, instance_uuid: str, volume_id: str, device: str
    ) -> None:
        """Call (1.2): take the disk away; returns once the guest has released it, so that
        compute-api may then stop the export. A disk already gone is success."""
        try:
            self.driver.detach_volume(instance_uuid, device, volume_id)
        except InstanceNotFound:
            LOG.info("detach of %s from %s: the guest is gone", volume_id, instance_uuid)

    def get_console_output(
        self, ctxt: RequestContext, instance_uuid: str, length: int | None = None
    ) -> str:
        return self.driver.get_console_output(instance_uuid, length)
