"""The boot floor: how fast this machine gets the tiny guest to its ready line.

    python bench/boot_floor.py [--runs 3] [--uri URI] [--timeout 120]

Starts a private libvirtd (tests/fixtures/libvirt_daemon.py, as the integration tests do) unless
``--uri`` names one, builds or reuses the guest image (tools/guest-image/build.py), then times,
for the bootable qcow2 disk and for direct kernel boot:

- floor: ``virDomainCreateXML`` (what ``virsh create`` calls) of the driver's own domain XML, on
  a qcow2 overlay prepared beforehand, until ``CIRRUS-GUEST-READY`` is in the console log;
- spawn: ``LibvirtDriver.spawn`` (overlay, define, start) until the same line.

The compute benchmark compares API-to-ACTIVE against the floor. It prints figures and asserts
nothing about time; a run that does not reach the line within ``--timeout`` prints "timeout".
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agents.compute.driver import ImageFiles, InstanceSpec  # noqa: E402
from tests.fixtures.libvirt_daemon import (  # noqa: E402
    LibvirtDaemon,
    build_guest_image,
    unavailable_reason,
)

READY = "CIRRUS-GUEST-READY"


def wait_for_line(path: Path, started: float, timeout: float) -> float | None:
    while time.monotonic() - started < timeout:
        try:
            if READY in path.read_text(errors="replace"):
                return time.monotonic() - started
        except FileNotFoundError:
            pass
        time.sleep(0.02)
    return None


def image_files(manifest: dict[str, str], mode: str) -> ImageFiles:
    if mode == "disk":
        return ImageFiles(image_id="cirrus-tiny", disk=Path(manifest["disk"]))
    return ImageFiles(
        image_id="cirrus-tiny-aki",
        disk=None,
        kernel=Path(manifest["vmlinuz"]),
        ramdisk=Path(manifest["initrd"]),
        kernel_cmdline="console=ttyS0 quiet",
    )


def make_spec(image: ImageFiles) -> InstanceSpec:
    return InstanceSpec(
        uuid=str(uuid.uuid4()), name="bench", vcpus=1, memory_mb=256, root_gb=0, image=image
    )


def floor_run(
    driver: Any, conn: Any, image: ImageFiles, timeout: float
) -> tuple[float | None, float]:
    from agents.compute.libvirt.config import DomainLayout, build_domain_xml

    spec = make_spec(image)
    instance_dir = driver.instances_path / spec.uuid
    instance_dir.mkdir(parents=True)
    root_disk = None
    if image.disk is not None:
        root_disk = instance_dir / "disk"
        subprocess.run(
            ["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", str(image.disk),
             str(root_disk)],
            check=True,
        )  # fmt: skip
    layout = DomainLayout(
        virt_type=driver.virt_type,
        instance_dir=instance_dir,
        root_disk=root_disk,
        emulator=driver.emulator,
    )
    xml = build_domain_xml(spec, layout)
    started = time.monotonic()
    dom = conn.createXML(xml, 0)
    created = time.monotonic() - started
    try:
        return wait_for_line(instance_dir / "console.log", started, timeout), created
    finally:
        dom.destroy()
        subprocess.run(["rm", "-rf", str(instance_dir)], check=False)


def spawn_run(driver: Any, image: ImageFiles, timeout: float) -> tuple[float | None, float]:
    spec = make_spec(image)
    started = time.monotonic()
    try:
        driver.spawn(spec)
        spawned = time.monotonic() - started
        return wait_for_line(driver.instances_path / spec.uuid / "console.log", started, timeout), (
            spawned
        )
    finally:
        driver.destroy(spec.uuid)


def fmt(values: list[float | None]) -> str:
    done = [v for v in values if v is not None]
    runs = " ".join("timeout" if v is None else f"{v:.2f}" for v in values)
    median = f"median {statistics.median(done):.2f} s" if done else "no run finished"
    return f"{median}  (runs: {runs})"


def bench(uri: str, runs: int, timeout: float) -> None:
    import libvirt

    from agents.compute.libvirt.driver import LibvirtDriver

    started = time.monotonic()
    manifest = build_guest_image()
    print(
        f"guest image {manifest['key']}: {'cached' if manifest.get('cached') else 'built'} in "
        f"{time.monotonic() - started:.1f} s; kernel {manifest['kernel_version']}"
    )
    with tempfile.TemporaryDirectory(prefix="cirrus-bench-instances-") as instances:
        driver = LibvirtDriver(connection_uri=uri, instances_path=instances)
        driver.init_host("bench")
        conn = libvirt.open(uri)
        print(f"virt_type {driver.virt_type}, emulator {driver.emulator}")
        try:
            for mode in ("kernel", "disk"):
                image = image_files(manifest, mode)
                floors = [floor_run(driver, conn, image, timeout) for _ in range(runs)]
                spawns = [spawn_run(driver, image, timeout) for _ in range(runs)]
                print(f"[{mode} boot] floor createXML -> {READY}: {fmt([f[0] for f in floors])}")
                print(f"[{mode} boot] floor createXML returned:   {fmt([f[1] for f in floors])}")
                print(f"[{mode} boot] driver spawn -> {READY}:    {fmt([s[0] for s in spawns])}")
                print(f"[{mode} boot] driver spawn() returned:   {fmt([s[1] for s in spawns])}")
        finally:
            conn.close()
            driver.cleanup_host()


def main() -> int:
    parser = argparse.ArgumentParser(description="tiny guest boot floor under libvirt")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--uri", help="an existing libvirt to use instead of a private one")
    parser.add_argument("--timeout", type=float, default=120.0)
    args = parser.parse_args()
    if args.uri:
        bench(args.uri, args.runs, args.timeout)
        return 0
    reason = unavailable_reason()
    if reason:
        print(f"boot_floor: skipped: {reason}")
        return 0
    with LibvirtDaemon() as daemon:
        bench(daemon.uri, args.runs, args.timeout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
