"""Libvirt domain XML for a Cirrus instance, built with ``xml.etree`` (never by pasting strings).

Everything that comes from a user (the server name, project and user ids, the flavor id) only
ever lands in element text or attribute values, which ElementTree escapes.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agents.compute.driver import (
    BlockDevice,
    DriverError,
    InstanceSpec,
    NetworkInterface,
    device_name,
)

# The namespace of the <metadata> element that marks a domain as Cirrus's.
CIRRUS_NS = "https://cirrus.dev/xmlns/libvirt/instance/1.0"
CIRRUS_NS_PREFIX = "cirrus"
DOMAIN_PREFIX = "instance-"

CONSOLE_LOG = "console.log"
ROOT_DISK = "disk"


def domain_name(instance_uuid: str) -> str:
    return f"{DOMAIN_PREFIX}{instance_uuid}"


@dataclass
class DomainLayout:
    """Host-side choices the driver makes for one instance (paths, virt type)."""

    virt_type: str  # "kvm" or "qemu"
    instance_dir: Path
    root_disk: Path | None  # qcow2 overlay; None: no disk at all
    emulator: str | None = None
    machine: str = "pc"


def _sub(parent: ET.Element, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
    element = ET.SubElement(parent, tag, attrs)
    if text is not None:
        element.text = text
    return element


def cirrus_metadata(spec: InstanceSpec) -> ET.Element:
    ns = f"{{{CIRRUS_NS}}}"
    root = ET.Element(f"{ns}instance")
    _sub(root, f"{ns}name", spec.name)
    _sub(root, f"{ns}project", spec.project_id)
    _sub(root, f"{ns}user", spec.user_id)
    _sub(root, f"{ns}flavor", spec.flavor_id, vcpus=str(spec.vcpus), memory_mb=str(spec.memory_mb),
         root_gb=str(spec.root_gb))  # fmt: skip
    _sub(root, f"{ns}image", spec.image.image_id)
    return root


def interface_element(vif: NetworkInterface) -> ET.Element:
    """A port's NIC: its tap (named by :func:`control.network.naming.tap`) in the network's
    Linux bridge, virtio, the port's MAC and the network's MTU."""
    interface = ET.Element("interface", type="bridge")
    _sub(interface, "mac", address=vif.mac_address)
    _sub(interface, "source", bridge=vif.bridge)
    _sub(interface, "target", dev=vif.tap_name)
    _sub(interface, "model", type="virtio")
    _sub(interface, "mtu", size=str(vif.mtu))
    return interface


def interface_xml(vif: NetworkInterface) -> str:
    """:func:`interface_element` as the XML ``attachDeviceFlags`` takes (hot-plug)."""
    return ET.tostring(interface_element(vif), encoding="unicode")


def volume_element(connection: dict[str, Any], device: str, volume_id: str = "") -> ET.Element:
    """A volume's disk from the volume API's connection info (``driver_volume_type`` ``nbd``):
    a network disk, raw (the export serves the guest-visible bytes), no host cache, virtio,
    the volume id's first 20 characters as the serial (what Nova sets; the guest sees it in
    ``/sys/block/vdX/serial`` and ``/dev/disk/by-id/virtio-<serial>``)."""
    kind = connection.get("driver_volume_type")
    data = connection.get("data") or {}
    if kind != "nbd":
        raise DriverError(f"volume connection type {kind!r} is not supported (only nbd)")
    host = str(data.get("host") or "")
    port = data.get("port")
    if not host or port in (None, ""):
        raise DriverError(f"volume connection info lacks the NBD host or port: {data!r}")
    try:
        port_number = int(port)
    except (TypeError, ValueError):
        raise DriverError(f"volume connection info has an invalid NBD port {port!r}") from None
    volume_id = volume_id or str(data.get("volume_id") or "")
    disk = ET.Element("disk", type="network", device="disk")
    _sub(disk, "driver", name="qemu", type="raw", cache="none")
    source_attrs = {"protocol": "nbd"}
    if data.get("export_name"):
        source_attrs["name"] = str(data["export_name"])
    source = _sub(disk, "source", **source_attrs)
    _sub(source, "host", name=host, port=str(port_number))
    _sub(disk, "target", dev=device_name(device), bus="virtio")
    if volume_id:
        _sub(disk, "serial", volume_id[:20])
    return disk


def volume_xml(connection: dict[str, Any], device: str, volume_id: str = "") -> str:
    """:func:`volume_element` as the XML ``attachDeviceFlags`` takes (hot-plug)."""
    return ET.tostring(volume_element(connection, device, volume_id), encoding="unicode")


def _block_device_element(bdm: BlockDevice) -> ET.Element:
    return volume_element(bdm.connection_info, bdm.device, bdm.volume_id)


def build_domain_xml(spec: InstanceSpec, layout: DomainLayout) -> str:
    """The domain definition of ``spec``: see docs/libvirt.md for the mapping."""
    ET.register_namespace(CIRRUS_NS_PREFIX, CIRRUS_NS)
    domain = ET.Element("domain", type=layout.virt_type)
    _sub(domain, "name", domain_name(spec.uuid))
    _sub(domain, "uuid", spec.uuid)
    _sub(domain, "title", spec.name)
    metadata = _sub(domain, "metadata")
    metadata.append(cirrus_metadata(spec))
    _sub(domain, "memory", str(spec.memory_mb), unit="MiB")
    _sub(domain, "currentMemory", str(spec.memory_mb), unit="MiB")
    _sub(domain, "vcpu", str(spec.vcpus), placement="static")

    sysinfo = _sub(domain, "sysinfo", type="smbios")
    system = _sub(sysinfo, "system")
    _sub(system, "entry", "Cirrus", name="manufacturer")
    _sub(system, "entry", "Cirrus Compute", name="product")
    _sub(system, "entry", spec.uuid, name="serial")
    _sub(system, "entry", spec.uuid, name="uuid")

    os_el = _sub(domain, "os")
    _sub(os_el, "type", "hvm", arch="x86_64", machine=layout.machine)
    image = spec.image
    if image.kernel is not None:
        _sub(os_el, "kernel", str(image.kernel))
        if image.ramdisk is not None:
            _sub(os_el, "initrd", str(image.ramdisk))
        _sub(os_el, "cmdline", image.kernel_cmdline)
    elif layout.root_disk is not None or spec.boot_volume() is None:
        _sub(os_el, "boot", dev="hd")
    # else: the boot volume's <disk> carries <boot order='1'/> (exclusive with <os><boot>).
    _sub(os_el, "smbios", mode="sysinfo")

    features = _sub(domain, "features")
    _sub(features, "acpi")
    _sub(features, "apic")
    if layout.virt_type == "kvm":
        _sub(domain, "cpu", mode="host-passthrough")
    _sub(domain, "clock", offset="utc")
    _sub(domain, "on_poweroff", "destroy")
    _sub(domain, "on_reboot", "restart")
    _sub(domain, "on_crash", "destroy")

    devices = _sub(domain, "devices")
    if layout.emulator:
        _sub(devices, "emulator", layout.emulator)
    if layout.root_disk is not None:
        disk = _sub(devices, "disk", type="file", device="disk")
        _sub(disk, "driver", name="qemu", type="qcow2", cache="none", discard="unmap")
        _sub(disk, "source", file=str(layout.root_disk))
        _sub(disk, "target", dev="vda", bus="virtio")
    # Volumes: the boot volume (vda, when there is no local root disk) first, so that the BIOS
    # boots it, then the others in device order.
    boot_volume = spec.boot_volume() if layout.root_disk is None else None
    for bdm in sorted(spec.block_devices, key=lambda b: (len(b.dev), b.dev)):
        disk = _block_device_element(bdm)
        if bdm is boot_volume and image.kernel is None:
            _sub(disk, "boot", order="1")
        devices.append(disk)

    for vif in spec.interfaces:
        devices.append(interface_element(vif))

    # The serial console: a pty (for an interactive console later) whose output QEMU also
    # appends to console.log, which get_console_output reads.
    serial = _sub(devices, "serial", type="pty")
    _sub(serial, "log", file=str(layout.instance_dir / CONSOLE_LOG), append="on")
    _sub(serial, "target", port="0")
    console = _sub(devices, "console", type="pty")
    _sub(console, "target", type="serial", port="0")

    rng = _sub(devices, "rng", model="virtio")
    _sub(rng, "backend", "/dev/urandom", model="random")
    _sub(devices, "memballoon", model="virtio")
    # No <graphics>: the serial console is the only console; no video card either.
    video = _sub(devices, "video")
    _sub(video, "model", type="none")

    ET.indent(domain)
    return ET.tostring(domain, encoding="unicode")


def parse_metadata(xml: str) -> dict[str, str]:
    """The Cirrus metadata of a domain's ``<cirrus:instance>`` element (as ``virDomainGetMetadata``
    returns it) as a flat dict."""
    root = ET.fromstring(xml)  # noqa: S314 - written by this module, read back from libvirt
    result: dict[str, str] = {}
    for child in root:
        tag = child.tag.split("}", 1)[-1]
        result[tag] = child.text or ""
    return result
