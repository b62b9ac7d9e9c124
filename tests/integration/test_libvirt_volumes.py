"""Volumes and the libvirt driver, for real: a private libvirtd boots the tiny guest image under
QEMU, ``qemu-nbd`` (started and stopped by PID here) exports a raw file on 127.0.0.1 as the
volume agent would, and the driver hot-plugs it, the guest writes to it, the driver unplugs it
and the host reads what the guest wrote. Then a guest boots from an NBD export (boot from
volume).

The guest learns what to do the way user-data would tell it, but without a metadata service
(this is the driver alone): the script is typed on the guest's serial console shell (busybox
init respawns one there) through a libvirt console stream from a second connection, and its
output lines carry the ``CIRRUS-USER-DATA:`` prefix user-data output has. Waits poll with a
bound and never assert timing; the times are printed (``-s``) for the docs.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from agents.compute.driver import BlockDevice, DriverError, ImageFiles, InstanceSpec, PowerState
from tests.fixtures.libvirt_daemon import LibvirtDaemon, build_guest_image, unavailable_reason

pytestmark = [pytest.mark.libvirt, pytest.mark.slow]

READY = "CIRRUS-GUEST-READY"
BOOT_WAIT = 120.0
GUEST_WAIT = 120.0
MIB = 1024 * 1024


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LibvirtDaemon]:
    reason = unavailable_reason()
    if reason:
        pytest.skip(f"libvirt integration tests skipped: {reason}")
    if subprocess.run(["which", "qemu-nbd"], capture_output=True, check=False).returncode:
        pytest.skip("qemu-nbd is missing: install qemu-utils")
    with LibvirtDaemon(tmp_path_factory.mktemp("libvirtd")) as running:
        # libvirtd locks the console's pty under /var/lock (-> /run/lock), which the private
        # daemon's /run (a bind mount of <base>/run) does not have yet.
        (running.base / "run" / "lock").mkdir(exist_ok=True)
        yield running


@pytest.fixture(scope="module")
def guest_image() -> dict[str, str]:
    return build_guest_image()


@pytest.fixture(scope="module")
def driver(daemon: LibvirtDaemon, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from agents.compute.libvirt.driver import LibvirtDriver

    drv = LibvirtDriver(
        connection_uri=daemon.uri,
        virt_type="auto",
        instances_path=tmp_path_factory.mktemp("instances"),
        spawn_timeout=60,
        soft_reboot_timeout=30,
        device_detach_timeout=90,
    )
    drv.init_host("libvirt-volume-host")
    yield drv
    for instance_uuid in drv.list_instances():
        drv.destroy(instance_uuid)
    drv.cleanup_host()


@pytest.fixture(scope="module")
def outside(daemon: LibvirtDaemon) -> Iterator[Any]:
    import libvirt

    conn = libvirt.open(daemon.uri)
    yield conn
    conn.close()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Export:
    """One ``qemu-nbd`` export, as a volume agent's ``initialize_connection`` makes it."""

    path: Path
    port: int
    name: str
    volume_id: str
    proc: subprocess.Popen[bytes]

    def connection_info(self) -> dict[str, Any]:
        return {
            "driver_volume_type": "nbd",
            "data": {
                "host": "127.0.0.1",
                "port": self.port,
                "export_name": self.name,
                "volume_id": self.volume_id,
                "attachment_id": str(uuid.uuid4()),
            },
        }

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@contextlib.contextmanager
def nbd_export(path: Path) -> Iterator[Export]:
    """``qemu-nbd`` serving ``path`` (raw) on 127.0.0.1; stopped by its PID afterwards."""
    port = _free_port()
    volume_id = str(uuid.uuid4())
    log_path = path.with_suffix(".qemu-nbd.log")
    log = log_path.open("wb")
    name = f"volume-{volume_id}"
    proc = subprocess.Popen(
        ["qemu-nbd", "--format=raw", "--bind=127.0.0.1", f"--port={port}",
         f"--export-name={name}", "--persistent", "--shared=4", "--cache=none", str(path)],
        stdout=subprocess.DEVNULL,
        stderr=log,
    )  # fmt: skip
    export = Export(path, port, name, volume_id, proc)
    try:
        deadline = time.monotonic() + 15
        while True:
            if proc.poll() is not None:
                pytest.fail(f"qemu-nbd exited: {log_path.read_text(errors='replace')}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                break
            if time.monotonic() > deadline:
                pytest.fail("qemu-nbd did not listen within 15 s")
            time.sleep(0.05)
        yield export
    finally:
        export.stop()
        log.close()


def wait_console(driver: Any, instance_uuid: str, text: str, timeout: float = GUEST_WAIT) -> str:
    deadline = time.monotonic() + timeout
    output = ""
    while time.monotonic() < deadline:
        output = driver.get_console_output(instance_uuid)
        if text in output:
            return output
        time.sleep(0.1)
    pytest.fail(f"{text!r} not on the console within {timeout:g} s:\n{output[-3000:]}")


def type_on_console(driver: Any, outside: Any, instance_uuid: str, line: str, echo: str) -> None:
    """Type ``line`` on the guest's serial console shell (a libvirt console stream), once the
    shell's prompt is there; typed again (bounded) until the console shows its echo."""
    import libvirt

    wait_console(driver, instance_uuid, "/ # ")
    dom = outside.lookupByUUIDString(instance_uuid)
    for _attempt in range(5):
        stream = outside.newStream(0)
        dom.openConsole(None, stream, libvirt.VIR_DOMAIN_CONSOLE_FORCE)
        try:
            for chunk in ("\r", line, "\r"):
                data = chunk.encode()
                while data:
                    data = data[stream.send(data) :]
                time.sleep(0.3)
        finally:
            with contextlib.suppress(libvirt.libvirtError):
                stream.finish()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if echo in driver.get_console_output(instance_uuid).replace("\r", ""):
                return
            time.sleep(0.2)
    output = driver.get_console_output(instance_uuid)
    pytest.fail(f"the guest's shell never echoed what was typed:\n{output[-2000:]}")


def disks(outside: Any, instance_uuid: str, inactive: bool) -> dict[str, ET.Element]:
    import libvirt

    dom = outside.lookupByUUIDString(instance_uuid)
    flags = libvirt.VIR_DOMAIN_XML_INACTIVE if inactive else 0
    root = ET.fromstring(dom.XMLDesc(flags))  # noqa: S314 - from the test's own libvirtd
    return {
        str(d.find("target").get("dev")): d  # type: ignore[union-attr]
        for d in root.findall("devices/disk")
    }


def spec(image: ImageFiles, **extra: Any) -> InstanceSpec:
    return InstanceSpec(
        uuid=str(uuid.uuid4()),
        name="vol-vm",
        vcpus=1,
        memory_mb=256,
        root_gb=1,
        image=image,
        project_id="project-a",
        user_id="user-a",
        flavor_id="m1.tiny",
        **extra,
    )


# The "user-data": waits for the hot-plugged disk, shows its serial, writes a marker to its
# first sector, reads it back, then waits until the disk is gone again.
GUEST_SCRIPT = (
    "( while [ ! -b /dev/vdb ]; do sleep 0.2; done; "
    'echo "CIRRUS-USER-DATA: vdb serial=$(cat /sys/block/vdb/serial)"; '
    "echo {marker} | dd of=/dev/vdb bs=512 count=1 conv=sync 2>/dev/null; sync; "
    'echo "CIRRUS-USER-DATA: wrote $(dd if=/dev/vdb bs=512 count=1 2>/dev/null | head -c {n})"; '
    "while [ -b /dev/vdb ]; do sleep 0.2; done; "
    'echo "CIRRUS-USER-DATA: vdb gone" ) &'
)


def test_hotplug_volume_into_running_guest(
    driver: Any, outside: Any, guest_image: dict[str, str], tmp_path: Path
) -> None:
    assert driver.capabilities["supports_attach_volume"] is True
    instance = spec(ImageFiles("cirrus-tiny", Path(guest_image["disk"]), "qcow2"))
    driver.spawn(instance)
    wait_console(driver, instance.uuid, READY, BOOT_WAIT)
    marker = f"CIRRUS-MARKER-{uuid.uuid4().hex[:12]}"
    type_on_console(
        driver, outside, instance.uuid, GUEST_SCRIPT.format(marker=marker, n=len(marker)), marker
    )

    backing = tmp_path / "volume.raw"
    with backing.open("wb") as f:
        f.truncate(16 * MIB)
    with nbd_export(backing) as export:
        connection = export.connection_info()
        started = time.monotonic()
        driver.attach_volume(instance.uuid, connection, "/dev/vdb", export.volume_id)
        attach_call = time.monotonic() - started
        output = wait_console(
            driver, instance.uuid, f"CIRRUS-USER-DATA: vdb serial={export.volume_id[:20]}"
        )
        seen = time.monotonic() - started
        output = wait_console(driver, instance.uuid, f"CIRRUS-USER-DATA: wrote {marker}")

        live = disks(outside, instance.uuid, inactive=False)
        persistent = disks(outside, instance.uuid, inactive=True)
        for defined in (live, persistent):
            disk = defined["vdb"]
            assert disk.get("type") == "network"
            assert disk.find("source").get("protocol") == "nbd"  # type: ignore[union-attr]
            assert disk.findtext("serial") == export.volume_id[:20]
        # Idempotent: the same volume again is a no-op.
        driver.attach_volume(instance.uuid, connection, "/dev/vdb", export.volume_id)
        assert len([d for d in disks(outside, instance.uuid, False) if d == "vdb"]) == 1
        # Another volume on the same device is refused.
        with pytest.raises(DriverError, match="already another disk"):
            driver.attach_volume(instance.uuid, connection, "/dev/vdb", str(uuid.uuid4()))

        started = time.monotonic()
        driver.detach_volume(instance.uuid, "/dev/vdb", export.volume_id)
        detach_call = time.monotonic() - started
        assert "vdb" not in disks(outside, instance.uuid, inactive=False)
        assert "vdb" not in disks(outside, instance.uuid, inactive=True)
        output = wait_console(driver, instance.uuid, "CIRRUS-USER-DATA: vdb gone")
        driver.detach_volume(instance.uuid, "/dev/vdb")  # idempotent
    # What the guest wrote is in the file on the host.
    assert backing.read_bytes()[: len(marker)] == marker.encode(), output[-2000:]
    assert driver.get_power_state(instance.uuid) == PowerState.RUNNING
    print(
        f"\nvolume attach: driver call {attach_call:.2f} s, guest saw vdb after {seen:.2f} s; "
        f"detach (guest released it) {detach_call:.2f} s"
    )
    driver.destroy(instance.uuid)


def test_attach_to_stopped_guest_is_persistent(
    driver: Any, outside: Any, guest_image: dict[str, str], tmp_path: Path
) -> None:
    instance = spec(ImageFiles("cirrus-tiny", Path(guest_image["disk"]), "qcow2"))
    driver.spawn(instance)
    driver.power_off(instance.uuid, timeout=0)
    backing = tmp_path / "cold.raw"
    with backing.open("wb") as f:
        f.truncate(4 * MIB)
    with nbd_export(backing) as export:
        driver.attach_volume(instance.uuid, export.connection_info(), "/dev/vdc", export.volume_id)
        assert "vdc" in disks(outside, instance.uuid, inactive=True)
        driver.power_on(instance.uuid)
        assert "vdc" in disks(outside, instance.uuid, inactive=False)
        driver.power_off(instance.uuid, timeout=0)
        driver.detach_volume(instance.uuid, "/dev/vdc", export.volume_id)
        assert "vdc" not in disks(outside, instance.uuid, inactive=True)
    driver.destroy(instance.uuid)


def test_boot_from_volume(
    driver: Any, outside: Any, guest_image: dict[str, str], tmp_path: Path
) -> None:
    """The guest image copied into a raw "volume", exported over NBD, booted as vda with no
    local root disk and no image file."""
    backing = tmp_path / "boot.raw"
    subprocess.run(
        ["qemu-img", "convert", "-f", "qcow2", "-O", "raw", guest_image["disk"], str(backing)],
        check=True,
        capture_output=True,
    )
    with nbd_export(backing) as export:
        instance = spec(
            ImageFiles(image_id="", disk=None),
            block_devices=[
                BlockDevice(
                    volume_id=export.volume_id,
                    device="/dev/vda",
                    connection_info=export.connection_info(),
                    boot_index=0,
                )
            ],
        )
        driver.spawn(instance)
        output = wait_console(driver, instance.uuid, READY, BOOT_WAIT)
        assert f"uuid={instance.uuid}" in output
        vda = disks(outside, instance.uuid, inactive=False)["vda"]
        assert vda.get("type") == "network"
        assert not (driver.instances_path / instance.uuid / "disk").exists()
        driver.destroy(instance.uuid)
