"""A driver that keeps guests in memory: for unit, API and scale tests.

Capacity is configurable, so hundreds of fake hosts (one driver each) can run in one process.
It follows the contract's rules (idempotent methods, :class:`DriverError` on failure) and has a
few test hooks: ``fail_spawn`` (spawns fail with that message), ``spawn_delay`` (seconds each
spawn takes), ``spawn_gate`` (spawns wait until that event is set), :meth:`crash` (a guest
dies behind the manager's back), ``fail_attach_volume``/``fail_detach_volume`` (volume attach or
detach fails with that message). Attached volumes are kept in :attr:`volumes`.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any, ClassVar

from agents.compute.driver import (
    ComputeDriver,
    DriverError,
    HostResources,
    InstanceNotFound,
    InstanceSpec,
    NetworkInterface,
    PowerState,
    device_name,
)


@dataclass
class FakeGuest:
    spec: InstanceSpec
    state: PowerState = PowerState.RUNNING
    console: list[str] = field(default_factory=list)
    boots: int = 0


class FakeDriver(ComputeDriver):
    name = "fake"
    capabilities: ClassVar[dict[str, bool]] = {
        "supports_attach_volume": True,
        "supports_attach_interface": True,
        "supports_kernel_boot": False,
    }

    def __init__(
        self,
        vcpus: int = 16,
        memory_mb: int = 32768,
        local_gb: int = 1000,
        spawn_delay: float = 0.0,
    ) -> None:
        self.vcpus = vcpus
        self.memory_mb = memory_mb
        self.local_gb = local_gb
        self.spawn_delay = spawn_delay
        self.fail_spawn: str | None = None
        self.spawn_gate: threading.Event | None = None
        self.host = "fake-host"
        self.guests: dict[str, FakeGuest] = {}
        #: The NICs plugged into each guest (as the libvirt driver would plug its taps), and
        #: every bridge a spawn made sure of.
        self.interfaces: dict[str, list[NetworkInterface]] = {}
        self.bridges: set[str] = set()
        #: Each guest's disks from volumes: ``{instance: {"vdb": {"volume_id", "connection"}}}``.
        self.volumes: dict[str, dict[str, dict[str, Any]]] = {}
        self.fail_attach_volume: str | None = None
        self.fail_detach_volume: str | None = None
        self._lock = threading.Lock()

    def init_host(self, host: str) -> None:
        self.host = host

    def get_available_resource(self) -> HostResources:
        return HostResources(
            hostname=self.host,
            vcpus=self.vcpus,
            memory_mb=self.memory_mb,
            local_gb=self.local_gb,
            hypervisor_type="fake",
            hypervisor_version=1000,
            cpu_info={"arch": "x86_64", "model": "fake"},
        )

    def list_instances(self) -> list[str]:
        with self._lock:
            return list(self.guests)

    def _guest(self, instance_uuid: str) -> FakeGuest:
        guest = self.guests.get(instance_uuid)
        if guest is None:
            raise InstanceNotFound(f"instance {instance_uuid} is not on host {self.host}")
        return guest

    def _boot(self, guest: FakeGuest) -> None:
        guest.boots += 1
        guest.state = PowerState.RUNNING
        guest.console.append(f"[fake] {guest.spec.name} boot {guest.boots}: cirrus guest up")

    def spawn(self, instance: InstanceSpec) -> None:
        if self.spawn_delay:
            time.sleep(self.spawn_delay)
        gate = self.spawn_gate
        if gate is not None and not gate.wait(timeout=120):
            raise DriverError("fake spawn gate never opened")
        with self._lock:
            if self.fail_spawn is not None:
                raise DriverError(self.fail_spawn)
            guest = self.guests.get(instance.uuid)
            if guest is None:
                guest = FakeGuest(instance)
                self.guests[instance.uuid] = guest
                self.bridges.update(vif.bridge for vif in instance.interfaces)
                self.interfaces[instance.uuid] = list(instance.interfaces)
                self.volumes[instance.uuid] = {
                    bdm.dev: {"volume_id": bdm.volume_id, "connection": bdm.connection_info}
                    for bdm in instance.block_devices
                }
                self._boot(guest)
            elif guest.state != PowerState.RUNNING:
                self._boot(guest)

    def destroy(self, instance_uuid: str) -> None:
        with self._lock:
            self.guests.pop(instance_uuid, None)
            self.interfaces.pop(instance_uuid, None)
            self.volumes.pop(instance_uuid, None)

    def attach_volume(
        self, instance_uuid: str, connection: dict[str, Any], device: str, volume_id: str = ""
    ) -> None:
        dev = device_name(device)
        with self._lock:
            self._guest(instance_uuid)
            if self.fail_attach_volume is not None:
                raise DriverError(self.fail_attach_volume)
            disks = self.volumes.setdefault(instance_uuid, {})
            present = disks.get(dev)
            if present is not None:
                if volume_id and present["volume_id"] != volume_id:
                    raise DriverError(f"{dev} is already another disk ({present['volume_id']})")
                return
            disks[dev] = {"volume_id": volume_id, "connection": connection}

    def detach_volume(self, instance_uuid: str, device: str, volume_id: str = "") -> None:
        dev = device_name(device)
        with self._lock:
            self._guest(instance_uuid)
            if self.fail_detach_volume is not None:
                raise DriverError(self.fail_detach_volume)
            self.volumes.get(instance_uuid, {}).pop(dev, None)

    def attach_interface(self, instance_uuid: str, vif: NetworkInterface) -> None:
        with self._lock:
            self._guest(instance_uuid)
            plugged = self.interfaces.setdefault(instance_uuid, [])
            if all(p.mac_address != vif.mac_address for p in plugged):
                self.bridges.add(vif.bridge)
                plugged.append(vif)

    def detach_interface(self, instance_uuid: str, vif: NetworkInterface) -> None:
        with self._lock:
            self._guest(instance_uuid)
            plugged = self.interfaces.get(instance_uuid, [])
            plugged[:] = [p for p in plugged if p.mac_address != vif.mac_address]

    def power_off(self, instance_uuid: str, timeout: float = 30.0) -> None:
        with self._lock:
            guest = self._guest(instance_uuid)
            if guest.state == PowerState.RUNNING:
                guest.console.append("[fake] power off")
            guest.state = PowerState.SHUTDOWN

    def power_on(self, instance_uuid: str) -> None:
        with self._lock:
            guest = self._guest(instance_uuid)
            if guest.state != PowerState.RUNNING:
                self._boot(guest)

    def reboot(self, instance_uuid: str, hard: bool = False) -> None:
        with self._lock:
            guest = self._guest(instance_uuid)
            guest.console.append(f"[fake] {'hard' if hard else 'soft'} reboot")
            self._boot(guest)

    def get_power_state(self, instance_uuid: str) -> PowerState:
        with self._lock:
            return self._guest(instance_uuid).state

    def get_console_output(self, instance_uuid: str, length: int | None = None) -> str:
        with self._lock:
            lines = self._guest(instance_uuid).console
            return "\n".join(lines[-length:] if length else lines) + "\n"

    # -- test hooks ----------------------------------------------------------------------------

    def crash(self, instance_uuid: str) -> None:
        """The guest dies (as a QEMU process killed from outside would)."""
        with self._lock:
            self._guest(instance_uuid).state = PowerState.SHUTDOWN

    def cleanup_host(self) -> None:
        return None
