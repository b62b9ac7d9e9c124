"""The contract between the compute agent's manager and a hypervisor driver.

The manager (``agents/compute/manager.py``) owns everything that is not the hypervisor: RPC, the
conductor, fetching and caching images, ports, state reporting. A driver only turns an
:class:`InstanceSpec` into a running guest and answers about the guests it holds. Two drivers
implement it: ``libvirt`` (real QEMU/KVM guests) and ``fake`` (in memory, for unit and scale tests).

Rules every driver keeps:

- Methods are **idempotent**: ``spawn`` of a guest that already runs, ``destroy`` of one that is
  gone, ``power_off`` of one that is off, all succeed without doing anything. The manager may call
  them again after a crash or a redelivered RPC message.
- Failures raise :class:`DriverError` (or a subclass) with a message an operator can act on; the
  manager copies it into the server's ``fault``.
- Guests are named by the instance UUID; a driver must never touch a guest it did not create
  (libvirt: only domains whose name starts with ``instance-`` and carry Cirrus metadata).
- Required methods raise ``NotImplementedError`` here; optional ones have safe defaults and a
  capability flag says whether a driver really supports them.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar


class DriverError(Exception):
    """A hypervisor operation failed; the message is shown to the user as the server fault."""


class InstanceNotFound(DriverError):
    pass


class PowerState(enum.IntEnum):
    """Nova's power states, as ``OS-EXT-STS:power_state`` shows them."""

    NOSTATE = 0
    RUNNING = 1
    PAUSED = 3
    SHUTDOWN = 4
    CRASHED = 6
    SUSPENDED = 7


@dataclass
class ImageFiles:
    """Local files of a cached image, ready for the hypervisor (read-only: never write to them).

    ``disk`` is a bootable disk image (``disk_format`` qcow2 or raw), or, for images booted
    directly from a kernel (``kernel_id``/``ramdisk_id`` properties), the root disk may be absent
    and ``kernel``/``ramdisk`` are set.
    """

    image_id: str
    disk: Path | None
    disk_format: str = "qcow2"
    kernel: Path | None = None
    ramdisk: Path | None = None
    kernel_cmdline: str = "console=ttyS0"


@dataclass
class NetworkInterface:
    """One port to plug: compute-api made and bound it and sent it with ``build_instance``.

    ``bridge`` and ``tap_name`` are :mod:`control.network.naming`'s names: the guest's tap
    (created by the hypervisor) goes into the network's Linux bridge, which the network agent
    adopts if the driver had to create it first.
    """

    port_id: str
    mac_address: str
    bridge: str
    tap_name: str
    mtu: int = 1500
    network_id: str = ""
    fixed_ips: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> NetworkInterface:
        """From one entry of ``build_instance``'s ``interfaces``."""
        return cls(
            port_id=str(data["port_id"]),
            mac_address=str(data["mac_address"]),
            bridge=str(data["bridge"]),
            tap_name=str(data["tap"]),
            mtu=int(data.get("mtu") or 1500),
            network_id=str(data.get("network_id") or ""),
            fixed_ips=list(data.get("fixed_ips") or []),
        )


@dataclass
class BlockDevice:
    """One volume the guest gets at spawn (``build_instance``'s ``block_devices``).

    ``connection_info`` is what the volume API's ``os-initialize_connection`` answered, e.g.
    ``{"driver_volume_type": "nbd", "data": {"host", "port", "export_name", "volume_id",
    "attachment_id"}}``; ``device`` is the guest device (``/dev/vda`` for the boot volume).
    """

    volume_id: str
    device: str
    connection_info: dict[str, Any]
    boot_index: int | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BlockDevice:
        boot_index = data.get("boot_index")
        return cls(
            volume_id=str(data["volume_id"]),
            device=str(data["device"]),
            connection_info=dict(data.get("connection_info") or {}),
            boot_index=None if boot_index is None else int(boot_index),
        )

    @property
    def dev(self) -> str:
        """The device name without ``/dev/`` (``vdb``), as libvirt's ``<target dev>``."""
        return device_name(self.device)


def device_name(device: str) -> str:
    """``/dev/vdb`` -> ``vdb``; refuses anything that is not a virtio disk name."""
    name = device.removeprefix("/dev/")
    if not name.startswith("vd") or not name[2:].isalpha() or not name[2:].islower():
        raise DriverError(f"invalid device name {device!r}: expected /dev/vdX")
    return name


@dataclass
class InstanceSpec:
    uuid: str
    name: str
    vcpus: int
    memory_mb: int
    root_gb: int
    image: ImageFiles
    project_id: str = ""
    user_id: str = ""
    flavor_id: str = ""
    user_data: str | None = None  # base64, as the API received it
    metadata: dict[str, str] = field(default_factory=dict)
    key_data: str | None = None
    interfaces: list[NetworkInterface] = field(default_factory=list)
    #: Volumes attached at spawn; one with device ``/dev/vda`` is the boot disk (no local root
    #: disk then, and ``image`` may have neither disk nor kernel).
    block_devices: list[BlockDevice] = field(default_factory=list)

    def boot_volume(self) -> BlockDevice | None:
        """The volume the guest boots from (device vda), if any."""
        for bdm in self.block_devices:
            if bdm.dev == "vda":
                return bdm
        return None


@dataclass
class HostResources:
    """What a host offers; the scheduler applies the allocation ratios."""

    hostname: str
    vcpus: int
    memory_mb: int
    local_gb: int
    hypervisor_type: str
    hypervisor_version: int = 0
    cpu_info: dict[str, Any] = field(default_factory=dict)


class ComputeDriver:
    """Base class of every driver. Subclasses set ``name`` and the capability flags."""

    name: ClassVar[str] = "base"
    capabilities: ClassVar[dict[str, bool]] = {
        "supports_attach_volume": False,
        "supports_attach_interface": False,
        "supports_kernel_boot": False,
    }

    def init_host(self, host: str) -> None:
        """Prepare the host (connect to the hypervisor, create directories). Called once."""
        raise NotImplementedError

    def get_available_resource(self) -> HostResources:
        """Total capacity of the host (not what is free: the scheduler tracks claims)."""
        raise NotImplementedError

    def list_instances(self) -> list[str]:
        """UUIDs of the Cirrus guests that exist on this host, running or not."""
        raise NotImplementedError

    def spawn(self, instance: InstanceSpec) -> None:
        """Create the guest's disks on top of ``instance.image`` and start it.

        Returns once the hypervisor reports the guest running. Idempotent: a guest that already
        exists is started if needed, never created twice. On failure nothing is left behind.
        """
        raise NotImplementedError

    def destroy(self, instance_uuid: str) -> None:
        """Stop the guest if it runs and remove it and its disks. Idempotent."""
        raise NotImplementedError

    def power_off(self, instance_uuid: str, timeout: float = 30.0) -> None:
        """Ask the guest to shut down (ACPI); force it off after ``timeout`` seconds."""
        raise NotImplementedError

    def power_on(self, instance_uuid: str) -> None:
        raise NotImplementedError

    def reboot(self, instance_uuid: str, hard: bool = False) -> None:
        """Soft: ask the guest to reboot, falling back to hard if it does not. Hard: reset."""
        raise NotImplementedError

    def get_power_state(self, instance_uuid: str) -> PowerState:
        """Raises :class:`InstanceNotFound` for a guest this host does not have."""
        raise NotImplementedError

    def get_console_output(self, instance_uuid: str, length: int | None = None) -> str:
        """The guest's serial console log, the last ``length`` lines when given."""
        raise NotImplementedError

    # Optional operations: the default says the driver cannot do them.

    def attach_volume(
        self, instance_uuid: str, connection: dict[str, Any], device: str, volume_id: str = ""
    ) -> None:
        """Give the guest (running or not) the volume of ``connection`` (the volume API's
        connection info) as ``device`` (``/dev/vdb``), live and in its persistent definition.
        Idempotent: the same volume already there as ``device`` is success; another disk there
        is a :class:`DriverError`."""
        raise DriverError(f"the {self.name} driver cannot attach volumes")

    def detach_volume(self, instance_uuid: str, device: str, volume_id: str = "") -> None:
        """Take ``device`` away from the guest, live and persistent; returns once the guest has
        released it (a timeout is a :class:`DriverError`). A device that is not there is not an
        error."""
        raise DriverError(f"the {self.name} driver cannot detach volumes")

    def attach_interface(self, instance_uuid: str, vif: NetworkInterface) -> None:
        """Plug one more NIC into the guest (running or not); idempotent by MAC address."""
        raise DriverError(f"the {self.name} driver cannot attach interfaces")

    def detach_interface(self, instance_uuid: str, vif: NetworkInterface) -> None:
        """Unplug a NIC; a NIC that is not there is not an error."""
        raise DriverError(f"the {self.name} driver cannot detach interfaces")

    def cleanup_host(self) -> None:
        """Release hypervisor connections when the agent stops."""
