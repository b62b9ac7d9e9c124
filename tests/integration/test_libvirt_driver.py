"""The libvirt driver against a private libvirtd booting the tiny guest image under QEMU.

Everything goes through the driver API; a second, independent libvirt connection plays "the
outside world" (a guest killed behind the agent's back, a domain Cirrus did not create).
Waits poll with a bound and never assert timing. Skipped, with the reason, only when libvirt
cannot run here (not root, libvirtd or the binding missing).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agents.compute.driver import DriverError, ImageFiles, InstanceSpec, PowerState
from tests.fixtures.libvirt_daemon import LibvirtDaemon, build_guest_image, unavailable_reason

pytestmark = [pytest.mark.libvirt, pytest.mark.slow]

READY = "CIRRUS-GUEST-READY"
BOOT_WAIT = 120.0  # generous bound for TCG on a busy 2-core machine


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LibvirtDaemon]:
    reason = unavailable_reason()
    if reason:
        pytest.skip(f"libvirt integration tests skipped: {reason}")
    base = tmp_path_factory.mktemp("libvirtd")
    with LibvirtDaemon(base) as running:
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
    )
    drv.init_host("libvirt-test-host")
    yield drv
    drv.cleanup_host()


@pytest.fixture
def clean(driver: Any) -> Iterator[Any]:
    """The driver, and every instance a test left behind destroyed afterwards."""
    yield driver
    for instance_uuid in driver.list_instances():
        driver.destroy(instance_uuid)


@pytest.fixture
def outside(daemon: LibvirtDaemon) -> Iterator[Any]:
    import libvirt

    conn = libvirt.open(daemon.uri)
    yield conn
    conn.close()


def disk_image(manifest: dict[str, str]) -> ImageFiles:
    return ImageFiles(image_id="cirrus-tiny", disk=Path(manifest["disk"]), disk_format="qcow2")


def kernel_image(manifest: dict[str, str]) -> ImageFiles:
    return ImageFiles(
        image_id="cirrus-tiny-aki",
        disk=None,
        kernel=Path(manifest["vmlinuz"]),
        ramdisk=Path(manifest["initrd"]),
        kernel_cmdline="console=ttyS0 quiet",
    )


def spec(image: ImageFiles, name: str = "vm1") -> InstanceSpec:
    return InstanceSpec(
        uuid=str(uuid.uuid4()),
        name=name,
        vcpus=1,
        memory_mb=256,
        root_gb=1,
        image=image,
        project_id="project-a",
        user_id="user-a",
        flavor_id="m1.tiny",
    )


def wait_ready(driver: Any, instance_uuid: str, count: int = 1) -> str:
    """Poll the console until the ready line has appeared ``count`` times."""
    deadline = time.monotonic() + BOOT_WAIT
    output = ""
    while time.monotonic() < deadline:
        output = driver.get_console_output(instance_uuid)
        if output.count(READY) >= count:
            return output
        time.sleep(0.2)
    pytest.fail(f"{READY} x{count} not on the console within {BOOT_WAIT} s:\n{output[-3000:]}")


def test_host_resources(clean: Any) -> None:
    resources = clean.get_available_resource()
    assert resources.vcpus >= 1
    assert resources.memory_mb > 0
    assert resources.local_gb > 0
    assert resources.hypervisor_type == "QEMU"
    assert resources.cpu_info["virt_type"] in ("kvm", "qemu")
    assert clean.capabilities["supports_kernel_boot"] is True


def test_disk_image_lifecycle(clean: Any, guest_image: dict[str, str]) -> None:
    instance = spec(disk_image(guest_image))
    clean.spawn(instance)
    assert clean.get_power_state(instance.uuid) == PowerState.RUNNING
    assert instance.uuid in clean.list_instances()
    output = wait_ready(clean, instance.uuid)
    assert f"uuid={instance.uuid}" in output
    instance_dir = clean.instances_path / instance.uuid
    assert (instance_dir / "disk").is_file()
    last = clean.get_console_output(instance.uuid, length=3)
    assert len(last.splitlines()) <= 3

    clean.power_off(instance.uuid, timeout=60)
    assert clean.get_power_state(instance.uuid) == PowerState.SHUTDOWN
    clean.power_off(instance.uuid)  # idempotent

    clean.power_on(instance.uuid)
    assert clean.get_power_state(instance.uuid) == PowerState.RUNNING
    wait_ready(clean, instance.uuid, count=2)
    clean.power_on(instance.uuid)  # idempotent

    clean.reboot(instance.uuid, hard=True)
    assert clean.get_power_state(instance.uuid) == PowerState.RUNNING
    wait_ready(clean, instance.uuid, count=3)

    clean.destroy(instance.uuid)
    assert instance.uuid not in clean.list_instances()
    assert not instance_dir.exists()
    clean.destroy(instance.uuid)  # idempotent


def test_kernel_boot_and_soft_reboot(clean: Any, guest_image: dict[str, str]) -> None:
    instance = spec(kernel_image(guest_image))
    clean.spawn(instance)
    assert clean.get_power_state(instance.uuid) == PowerState.RUNNING
    wait_ready(clean, instance.uuid)
    clean.reboot(instance.uuid, hard=False)
    assert clean.get_power_state(instance.uuid) == PowerState.RUNNING
    wait_ready(clean, instance.uuid, count=2)
    clean.destroy(instance.uuid)
    assert instance.uuid not in clean.list_instances()


def test_spawn_twice_is_idempotent(clean: Any, guest_image: dict[str, str], outside: Any) -> None:
    instance = spec(kernel_image(guest_image))
    clean.spawn(instance)
    domain_id = outside.lookupByUUIDString(instance.uuid).ID()
    clean.spawn(instance)
    assert clean.list_instances().count(instance.uuid) == 1
    assert outside.lookupByUUIDString(instance.uuid).ID() == domain_id  # not restarted
    # A defined but stopped guest is started by a second spawn, not recreated.
    clean.power_off(instance.uuid, timeout=0)
    clean.spawn(instance)
    assert clean.get_power_state(instance.uuid) == PowerState.RUNNING


def test_missing_image_file_leaves_nothing(clean: Any, tmp_path: Path) -> None:
    missing = tmp_path / "no-such-image.qcow2"
    instance = spec(ImageFiles(image_id="gone", disk=missing))
    with pytest.raises(DriverError, match="no-such-image.qcow2 does not exist"):
        clean.spawn(instance)
    assert instance.uuid not in clean.list_instances()
    assert not (clean.instances_path / instance.uuid).exists()

    kernel = spec(ImageFiles(image_id="gone-aki", disk=None, kernel=tmp_path / "vmlinuz"))
    with pytest.raises(DriverError, match="kernel file .* does not exist"):
        clean.spawn(kernel)
    assert kernel.uuid not in clean.list_instances()


def test_broken_image_fails_cleanly(clean: Any, tmp_path: Path) -> None:
    """A disk that is not an image of the declared format: DriverError, nothing left behind."""
    bogus = tmp_path / "bogus.qcow2"
    bogus.write_bytes(b"not a qcow2 image" * 100)
    instance = spec(ImageFiles(image_id="bogus", disk=bogus, disk_format="qcow2"))
    with pytest.raises(DriverError, match="qemu-img"):
        clean.spawn(instance)
    assert instance.uuid not in clean.list_instances()
    assert not (clean.instances_path / instance.uuid).exists()


def test_guest_killed_outside_is_shutdown(
    clean: Any, guest_image: dict[str, str], outside: Any
) -> None:
    instance = spec(kernel_image(guest_image))
    clean.spawn(instance)
    outside.lookupByUUIDString(instance.uuid).destroy()
    assert clean.get_power_state(instance.uuid) == PowerState.SHUTDOWN
    assert instance.uuid in clean.list_instances()


def test_foreign_domains_are_left_alone(clean: Any, outside: Any) -> None:
    from agents.compute.driver import InstanceNotFound

    foreign_uuid = str(uuid.uuid4())
    xml = (
        f"<domain type='qemu'><name>instance-{foreign_uuid}</name><uuid>{foreign_uuid}</uuid>"
        "<memory unit='MiB'>64</memory><os><type arch='x86_64'>hvm</type></os></domain>"
    )
    dom = outside.defineXML(xml)
    try:
        assert foreign_uuid not in clean.list_instances()
        with pytest.raises(DriverError, match="not created by Cirrus"):
            clean.destroy(foreign_uuid)
        assert outside.lookupByUUIDString(foreign_uuid) is not None
        with pytest.raises(InstanceNotFound):
            clean.get_power_state(str(uuid.uuid4()))
        with pytest.raises(DriverError, match="invalid instance uuid"):
            clean.destroy("../../etc")
    finally:
        dom.undefine()
