"""The libvirt domain XML (agents/compute/libvirt/config.py): no libvirt needed."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from agents.compute.driver import ImageFiles, InstanceSpec, NetworkInterface
from agents.compute.libvirt.config import (
    CIRRUS_NS,
    DomainLayout,
    build_domain_xml,
    cirrus_metadata,
    parse_metadata,
)

UUID = "0b0c6a43-6a1f-4f4b-9d3e-6f1b7e0c2a11"


def make_spec(image: ImageFiles, **kwargs: object) -> InstanceSpec:
    fields: dict[str, object] = {
        "uuid": UUID,
        "name": "web <1> & 'x'",
        "vcpus": 2,
        "memory_mb": 512,
        "root_gb": 1,
        "image": image,
        "project_id": "proj",
        "user_id": "user",
        "flavor_id": "m1.tiny",
    }
    fields.update(kwargs)
    return InstanceSpec(**fields)  # type: ignore[arg-type]


def parse(xml: str) -> ET.Element:
    return ET.fromstring(xml)  # noqa: S314 - our own output


def test_disk_boot_domain(tmp_path: Path) -> None:
    spec = make_spec(ImageFiles("img", tmp_path / "base.qcow2"))
    layout = DomainLayout("qemu", tmp_path / UUID, tmp_path / UUID / "disk", "/usr/bin/qemu")
    dom = parse(build_domain_xml(spec, layout))
    assert dom.get("type") == "qemu"
    assert dom.findtext("name") == f"instance-{UUID}"
    assert dom.findtext("uuid") == UUID
    assert dom.findtext("title") == "web <1> & 'x'"  # escaped on the wire, intact when parsed
    assert dom.findtext("memory") == "512"
    assert dom.find("memory").get("unit") == "MiB"  # type: ignore[union-attr]
    assert dom.findtext("vcpu") == "2"
    assert dom.find("os/boot").get("dev") == "hd"  # type: ignore[union-attr]
    assert dom.find("os/kernel") is None
    assert dom.find("cpu") is None  # TCG: QEMU's default model
    disk = dom.find("devices/disk")
    assert disk is not None
    assert disk.find("source").get("file") == str(tmp_path / UUID / "disk")  # type: ignore[union-attr]
    assert disk.find("target").get("bus") == "virtio"  # type: ignore[union-attr]
    serial_log = dom.find("devices/serial/log")
    assert serial_log is not None
    assert serial_log.get("file") == str(tmp_path / UUID / "console.log")
    assert dom.find("devices/graphics") is None
    assert dom.find("devices/rng").get("model") == "virtio"  # type: ignore[union-attr]
    assert dom.findtext("devices/emulator") == "/usr/bin/qemu"
    assert dom.findall("devices/interface") == []
    meta = dom.find(f"metadata/{{{CIRRUS_NS}}}instance")
    assert meta is not None
    assert meta.findtext(f"{{{CIRRUS_NS}}}project") == "proj"
    assert meta.findtext(f"{{{CIRRUS_NS}}}flavor") == "m1.tiny"


def test_kernel_boot_kvm_and_interfaces(tmp_path: Path) -> None:
    image = ImageFiles(
        "aki", None, kernel=tmp_path / "vmlinuz", ramdisk=tmp_path / "initrd",
        kernel_cmdline="console=ttyS0 root=/dev/vda",
    )  # fmt: skip
    vif = NetworkInterface("port1", "fa:16:3e:00:00:01", "brq1", "tap1", mtu=1450)
    spec = make_spec(image, interfaces=[vif])
    dom = parse(build_domain_xml(spec, DomainLayout("kvm", tmp_path / UUID, None)))
    assert dom.get("type") == "kvm"
    assert dom.find("cpu").get("mode") == "host-passthrough"  # type: ignore[union-attr]
    assert dom.findtext("os/kernel") == str(tmp_path / "vmlinuz")
    assert dom.findtext("os/initrd") == str(tmp_path / "initrd")
    assert dom.findtext("os/cmdline") == "console=ttyS0 root=/dev/vda"
    assert dom.find("os/boot") is None
    assert dom.find("devices/disk") is None
    interface = dom.find("devices/interface")
    assert interface is not None
    assert interface.get("type") == "bridge"
    assert interface.find("mac").get("address") == "fa:16:3e:00:00:01"  # type: ignore[union-attr]
    assert interface.find("source").get("bridge") == "brq1"  # type: ignore[union-attr]
    assert interface.find("target").get("dev") == "tap1"  # type: ignore[union-attr]
    assert interface.find("mtu").get("size") == "1450"  # type: ignore[union-attr]


def test_metadata_round_trip() -> None:
    spec = make_spec(ImageFiles("img", None))
    xml = ET.tostring(cirrus_metadata(spec), encoding="unicode")
    meta = parse_metadata(xml)
    assert meta["name"] == "web <1> & 'x'"
    assert meta["project"] == "proj"
    assert meta["user"] == "user"
    assert meta["image"] == "img"
