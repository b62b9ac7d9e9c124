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
    interface_xml,
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


def test_interfaces_in_order_with_network_names(tmp_path: Path) -> None:
    """One <interface type='bridge'> per port, in the order compute-api sent them, with the
    network agent's bridge and tap names."""
    from control.network import naming

    net = "5d1c2f0e-7a8b-4c3d-9e0f-112233445566"
    ports = ["a1b2c3d4-0000-4000-8000-000000000001", "a1b2c3d4-1111-4000-8000-000000000002"]
    vifs = [
        NetworkInterface.from_dict(
            {
                "port_id": port,
                "network_id": net,
                "mac_address": f"fa:16:3e:00:00:0{index}",
                "mtu": 1450,
                "bridge": naming.bridge(net),
                "tap": naming.tap(port),
                "fixed_ips": [{"ip_address": f"10.0.0.{index + 10}", "version": 4}],
            }
        )
        for index, port in enumerate(ports)
    ]
    spec = make_spec(ImageFiles("img", tmp_path / "base.qcow2"), interfaces=vifs)
    dom = parse(build_domain_xml(spec, DomainLayout("qemu", tmp_path / UUID, None)))
    found = dom.findall("devices/interface")
    assert len(found) == 2
    for index, (interface, port) in enumerate(zip(found, ports, strict=True)):
        assert interface.get("type") == "bridge"
        assert interface.find("mac").get("address") == f"fa:16:3e:00:00:0{index}"  # type: ignore[union-attr]
        assert interface.find("source").get("bridge") == "brq5d1c2f0e-7a"  # type: ignore[union-attr]
        assert interface.find("target").get("dev") == "tap" + port[:11]  # type: ignore[union-attr]
        assert interface.find("model").get("type") == "virtio"  # type: ignore[union-attr]
        assert interface.find("mtu").get("size") == "1450"  # type: ignore[union-attr]
        assert len(interface.find("target").get("dev") or "") <= 15  # type: ignore[union-attr]


def test_ensure_bridge_is_idempotent_and_argv_only() -> None:
    import subprocess

    import pytest

    from agents.compute.driver import DriverError
    from agents.compute.libvirt.driver import ensure_bridge

    calls: list[list[str]] = []
    existing: set[str] = set()

    def run(argv: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
        assert isinstance(argv, list)
        assert kwargs.get("check") is False
        calls.append(argv)
        name = argv[4]
        if argv[2] == "show":
            return subprocess.CompletedProcess(argv, 0 if name in existing else 1, "", "")
        if argv[2] == "add":
            existing.add(name)
        return subprocess.CompletedProcess(argv, 0, "", "")

    assert ensure_bridge("brq5d1c2f0e-7a", run) is True
    add = ["ip", "link", "add", "name", "brq5d1c2f0e-7a", "type", "bridge"]
    assert calls == [
        ["ip", "link", "show", "dev", "brq5d1c2f0e-7a"],
        [*add, "stp_state", "0", "forward_delay", "0"],
        ["ip", "link", "set", "dev", "brq5d1c2f0e-7a", "up"],
    ]
    calls.clear()
    assert ensure_bridge("brq5d1c2f0e-7a", run) is False
    assert [c[2] for c in calls] == ["show", "set"]
    with pytest.raises(DriverError):
        ensure_bridge("eth0; rm -rf /", run)


def test_hotplug_interface_xml_matches_the_domain_s() -> None:
    vif = NetworkInterface("port1", "fa:16:3e:00:00:09", "brq1", "tap1", mtu=1400)
    element = parse(interface_xml(vif))
    assert element.tag == "interface"
    assert element.get("type") == "bridge"
    assert element.find("mac").get("address") == "fa:16:3e:00:00:09"  # type: ignore[union-attr]
    assert element.find("source").get("bridge") == "brq1"  # type: ignore[union-attr]
    assert element.find("target").get("dev") == "tap1"  # type: ignore[union-attr]
    assert element.find("model").get("type") == "virtio"  # type: ignore[union-attr]
    assert element.find("mtu").get("size") == "1400"  # type: ignore[union-attr]


# -- volumes ---------------------------------------------------------------------------------

VOLUME_ID = "5f0e7a7c-0d6b-4d54-9f1a-2f6c3d4e5a6b"
NBD = {
    "driver_volume_type": "nbd",
    "data": {
        "host": "192.0.2.10",
        "port": 10811,
        "export_name": f"volume-{VOLUME_ID}",
        "volume_id": VOLUME_ID,
        "attachment_id": "att-1",
    },
}


def test_volume_disk_xml_is_the_contracts() -> None:
    from agents.compute.libvirt.config import volume_xml

    disk = parse(volume_xml(NBD, "/dev/vdb"))
    assert disk.tag == "disk"
    assert disk.attrib == {"type": "network", "device": "disk"}
    assert disk.find("driver").attrib == {"name": "qemu", "type": "raw", "cache": "none"}  # type: ignore[union-attr]
    source = disk.find("source")
    assert source is not None
    assert source.attrib == {"protocol": "nbd", "name": f"volume-{VOLUME_ID}"}
    assert source.find("host").attrib == {"name": "192.0.2.10", "port": "10811"}  # type: ignore[union-attr]
    assert disk.find("target").attrib == {"dev": "vdb", "bus": "virtio"}  # type: ignore[union-attr]
    assert disk.findtext("serial") == VOLUME_ID[:20]
    assert disk.find("boot") is None


def test_volume_disk_xml_refuses_bad_input() -> None:
    import pytest

    from agents.compute.driver import DriverError
    from agents.compute.libvirt.config import volume_xml

    with pytest.raises(DriverError, match="only nbd"):
        volume_xml({"driver_volume_type": "iscsi", "data": {}}, "vdb")
    with pytest.raises(DriverError, match="lacks the NBD host or port"):
        volume_xml({"driver_volume_type": "nbd", "data": {"host": "h"}}, "vdb")
    with pytest.raises(DriverError, match="invalid device name"):
        volume_xml(NBD, "/dev/sdb")
    with pytest.raises(DriverError, match="invalid device name"):
        volume_xml(NBD, "vd1'/><x")
    # A name without an export name (the default export) and text that needs escaping.
    odd = {"driver_volume_type": "nbd", "data": {"host": "h<&>", "port": "10809"}}
    disk = parse(volume_xml(odd, "vdc", volume_id="v<1>&"))
    assert "name" not in disk.find("source").attrib  # type: ignore[union-attr]
    assert disk.find("source/host").get("name") == "h<&>"  # type: ignore[union-attr]
    assert disk.findtext("serial") == "v<1>&"


def test_domain_with_volumes_and_boot_from_volume(tmp_path: Path) -> None:
    from agents.compute.driver import BlockDevice

    boot = BlockDevice(VOLUME_ID, "/dev/vda", NBD, boot_index=0)
    data = {**NBD, "data": {**NBD["data"], "volume_id": "other-volume-id"}}  # type: ignore[dict-item]
    extra = BlockDevice("other-volume-id", "/dev/vdb", data)
    spec = make_spec(ImageFiles(image_id="", disk=None), block_devices=[extra, boot])
    assert spec.boot_volume() is boot
    layout = DomainLayout(virt_type="qemu", instance_dir=tmp_path, root_disk=None)
    domain = parse(build_domain_xml(spec, layout))
    assert domain.find("os/boot") is None  # per-device boot order instead
    disks = domain.findall("devices/disk")
    assert [d.find("target").get("dev") for d in disks] == ["vda", "vdb"]  # type: ignore[union-attr]
    assert all(d.get("type") == "network" for d in disks)
    assert disks[0].find("boot").get("order") == "1"  # type: ignore[union-attr]
    assert disks[1].find("boot") is None
    assert disks[1].findtext("serial") == "other-volume-id"

    # An image boot with a volume: the local root disk is vda, the volume vdb, boot dev=hd.
    spec = make_spec(ImageFiles("img", tmp_path / "base.qcow2"), block_devices=[extra])
    layout = DomainLayout(virt_type="qemu", instance_dir=tmp_path, root_disk=tmp_path / "disk")
    domain = parse(build_domain_xml(spec, layout))
    assert domain.find("os/boot").get("dev") == "hd"  # type: ignore[union-attr]
    assert [d.get("type") for d in domain.findall("devices/disk")] == ["file", "network"]
