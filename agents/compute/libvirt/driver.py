"""The libvirt compute driver: Cirrus instances as QEMU guests (KVM where it works, else TCG).

See docs/libvirt.md for how each operation of :class:`~agents.compute.driver.ComputeDriver` maps
to libvirt. Configuration (section ``[libvirt]`` of the compute agent's file)::

    connection_uri = qemu:///system      # any libvirt URI
    virt_type = auto                     # auto | kvm | qemu
    instances_path = /var/lib/cirrus/instances
    spawn_timeout = 60                   # seconds to wait for a started guest to run
    soft_reboot_timeout = 30             # seconds before a soft reboot turns hard
    device_detach_timeout = 60           # seconds a running guest has to release a volume
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import uuid as uuidlib
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import libvirt

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
from agents.compute.libvirt.config import (
    CIRRUS_NS,
    CONSOLE_LOG,
    DOMAIN_PREFIX,
    ROOT_DISK,
    DomainLayout,
    build_domain_xml,
    domain_name,
    interface_xml,
    volume_xml,
)

LOG = logging.getLogger(__name__)

DEFAULT_URI = "qemu:///system"
DEFAULT_INSTANCES_PATH = "/var/lib/cirrus/instances"
CONSOLE_MAX_BYTES = 100 * 1024  # Nova's cap on console output
GiB = 1024**3

# Glance disk_format -> qemu-img format of the backing file ("ami" is a raw disk).
_BACKING_FORMATS = {
    "qcow2": "qcow2",
    "raw": "raw",
    "ami": "raw",
    "vmdk": "vmdk",
    "vdi": "vdi",
    "vhd": "vpc",
    "vhdx": "vhdx",
}

# Nova's mapping (nova/virt/libvirt/driver.py LIBVIRT_POWER_STATE).
_POWER_STATES = {
    libvirt.VIR_DOMAIN_NOSTATE: PowerState.NOSTATE,
    libvirt.VIR_DOMAIN_RUNNING: PowerState.RUNNING,
    libvirt.VIR_DOMAIN_BLOCKED: PowerState.RUNNING,
    libvirt.VIR_DOMAIN_PAUSED: PowerState.PAUSED,
    libvirt.VIR_DOMAIN_SHUTDOWN: PowerState.SHUTDOWN,
    libvirt.VIR_DOMAIN_SHUTOFF: PowerState.SHUTDOWN,
    libvirt.VIR_DOMAIN_CRASHED: PowerState.CRASHED,
    libvirt.VIR_DOMAIN_PMSUSPENDED: PowerState.SUSPENDED,
}

# A 512-byte boot sector that writes "K" to the first serial port and halts: booting it under
# KVM proves that KVM really runs guest code here (nested setups that refuse the CPU model pass
# every static check and then abort or hang).
_KVM_PROBE_SECTOR = (
    bytes([0xBA, 0xF8, 0x03, 0xB0, 0x4B, 0xEE, 0xFA, 0xF4, 0xEB, 0xFD]).ljust(510, b"\x00")
    + b"\x55\xaa"
)


_BRIDGE_NAME = re.compile(r"^brq[0-9a-f-]{1,11}$")


def ensure_bridge(name: str, run: Any = subprocess.run) -> bool:
    """Make sure the network's Linux bridge exists and is up before a guest's tap is put in it,
    as os-vif's linux_bridge plugin does; the network agent adopts the bridge (same name, from
    :func:`control.network.naming.bridge`). Idempotent; argv only. True if it was created."""
    if not _BRIDGE_NAME.match(name):
        raise DriverError(f"refusing to create bridge {name!r}: not a network bridge name")

    def ip(*args: str) -> Any:
        return run(["ip", *args], capture_output=True, text=True, check=False, timeout=30)

    created = False
    show = ip("link", "show", "dev", name)
    if show.returncode != 0:
        # STP off and forwarding at once, as the network agent makes its bridges.
        add = ip(
            "link", "add", "name", name, "type", "bridge", "stp_state", "0", "forward_delay", "0"
        )
        # Another spawn (or the network agent) may have made it meanwhile: "File exists".
        if add.returncode != 0 and "exists" not in (add.stderr or ""):
            raise DriverError(f"cannot create bridge {name}: {(add.stderr or '').strip()}")
        created = add.returncode == 0
    up = ip("link", "set", "dev", name, "up")
    if up.returncode != 0:
        raise DriverError(f"cannot set bridge {name} up: {(up.stderr or '').strip()}")
    return created


def _silence_libvirt(_ctx: object, _err: object) -> None:
    """libvirt prints every error to stderr by default; the driver raises them instead."""


libvirt.registerErrorHandler(_silence_libvirt, None)


def _error_code(exc: libvirt.libvirtError) -> int:
    return int(exc.get_error_code() or 0)


def _check_uuid(instance_uuid: str) -> str:
    """Instance UUIDs end up in paths and domain names: accept only real UUIDs."""
    try:
        return str(uuidlib.UUID(instance_uuid))
    except (ValueError, AttributeError, TypeError):
        raise DriverError(f"invalid instance uuid {instance_uuid!r}") from None


def probe_kvm(emulator: str, timeout: float = 5.0) -> bool:
    """Does KVM really run a guest here? Boots a one-sector guest with ``-cpu host``."""
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return False
    with tempfile.TemporaryDirectory(prefix="cirrus-kvm-probe-") as tmp:
        sector = Path(tmp) / "probe.img"
        sector.write_bytes(_KVM_PROBE_SECTOR)
        out = Path(tmp) / "serial.out"
        cmd = [
            emulator, "-machine", "pc,accel=kvm", "-cpu", "host", "-m", "16", "-nodefaults",
            "-display", "none", "-monitor", "none", "-serial", f"file:{out}",
            "-drive", f"file={sector},format=raw,if=floppy,readonly=on", "-boot", "a",
        ]  # fmt: skip
        try:
            proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        except OSError:
            return False
        try:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and proc.poll() is None:
                if out.exists() and b"K" in out.read_bytes():
                    return True
                time.sleep(0.05)
            return False
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait()


class LibvirtDriver(ComputeDriver):
    name: ClassVar[str] = "libvirt"
    capabilities: ClassVar[dict[str, bool]] = {
        "supports_attach_volume": True,
        "supports_attach_interface": True,
        "supports_kernel_boot": True,
    }

    def __init__(
        self,
        conf: Any = None,
        *,
        connection_uri: str | None = None,
        virt_type: str | None = None,
        instances_path: str | os.PathLike[str] | None = None,
        spawn_timeout: float | None = None,
        soft_reboot_timeout: float | None = None,
        device_detach_timeout: float | None = None,
    ) -> None:
        """``conf`` is a :class:`control.common.config.Config` (section ``[libvirt]``); keyword
        arguments win over it (tests and benchmarks pass them directly)."""

        def option(name: str, default: str) -> str:
            if conf is not None:
                return str(conf.get("libvirt", name, default))
            return default

        self.connection_uri = connection_uri or option("connection_uri", DEFAULT_URI)
        self.requested_virt_type = (virt_type or option("virt_type", "auto")).lower()
        if self.requested_virt_type not in ("auto", "kvm", "qemu"):
            raise DriverError(
                f"[libvirt] virt_type must be auto, kvm or qemu, not {self.requested_virt_type!r}"
            )
        self.instances_path = Path(
            instances_path or option("instances_path", DEFAULT_INSTANCES_PATH)
        )
        self.spawn_timeout = float(spawn_timeout or option("spawn_timeout", "60"))
        self.soft_reboot_timeout = float(soft_reboot_timeout or option("soft_reboot_timeout", "30"))
        self.device_detach_timeout = float(
            device_detach_timeout or option("device_detach_timeout", "60")
        )
        self.host = socket.gethostname()
        self.virt_type = "qemu"
        self.emulator: str | None = None
        self._conn: Any = None
        self._lock = threading.RLock()

    # --- connection ----------------------------------------------------------------------------

    def init_host(self, host: str) -> None:
        self.host = host
        try:
            self.instances_path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DriverError(f"cannot create instances_path {self.instances_path}: {exc}") from exc
        conn = self._connection()
        self.virt_type, self.emulator = self._choose_virt_type(conn)
        LOG.info(
            "libvirt driver on %s: %s, virt_type %s (asked %s), emulator %s",
            host, self.connection_uri, self.virt_type, self.requested_virt_type, self.emulator,
        )  # fmt: skip

    def cleanup_host(self) -> None:
        with self._lock:
            if self._conn is not None:
                with contextlib.suppress(libvirt.libvirtError):
                    self._conn.close()
                self._conn = None

    def _connection(self) -> Any:
        with self._lock:
            if self._conn is not None:
                try:
                    if self._conn.isAlive():
                        return self._conn
                except libvirt.libvirtError:
                    pass
                LOG.warning("libvirt connection to %s lost; reconnecting", self.connection_uri)
                self._conn = None
            try:
                self._conn = libvirt.open(self.connection_uri)
            except libvirt.libvirtError as exc:
                raise DriverError(
                    f"cannot connect to libvirt at {self.connection_uri}: {exc}"
                ) from exc
            return self._conn

    def _domain_caps(self, conn: Any, virt_type: str) -> ET.Element | None:
        try:
            xml = conn.getDomainCapabilities(None, "x86_64", None, virt_type, 0)
        except libvirt.libvirtError:
            return None
        return ET.fromstring(xml)  # noqa: S314 - from the local libvirt daemon

    def _choose_virt_type(self, conn: Any) -> tuple[str, str | None]:
        requested = self.requested_virt_type
        if requested in ("kvm", "auto"):
            caps = self._domain_caps(conn, "kvm")
            emulator = caps.findtext("path") if caps is not None else None
            if caps is not None and (requested == "kvm" or probe_kvm(emulator or "")):
                return "kvm", emulator
            if requested == "kvm":
                raise DriverError(
                    "[libvirt] virt_type = kvm but libvirt offers no KVM domain on this host"
                )
        caps = self._domain_caps(conn, "qemu")
        if caps is None:
            raise DriverError("libvirt offers neither kvm nor qemu domains for x86_64 on this host")
        return "qemu", caps.findtext("path")

    # --- lookups ---------------------------------------------------------------------------------

    def _instance_dir(self, instance_uuid: str) -> Path:
        return self.instances_path / _check_uuid(instance_uuid)

    def _is_cirrus(self, dom: Any) -> bool:
        if not str(dom.name()).startswith(DOMAIN_PREFIX):
            return False
        try:
            dom.metadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, CIRRUS_NS, 0)
        except libvirt.libvirtError:
            return False
        return True

    def _lookup(self, instance_uuid: str) -> Any | None:
        """The Cirrus domain of ``instance_uuid``, or None. Refuses domains Cirrus did not make."""
        name = domain_name(_check_uuid(instance_uuid))
        try:
            dom = self._connection().lookupByName(name)
        except libvirt.libvirtError as exc:
            if _error_code(exc) == libvirt.VIR_ERR_NO_DOMAIN:
                return None
            raise DriverError(f"libvirt lookup of {name} failed: {exc}") from exc
        if not self._is_cirrus(dom):
            raise DriverError(
                f"domain {name} exists but was not created by Cirrus; not touching it"
            )
        return dom

    def _get(self, instance_uuid: str) -> Any:
        dom = self._lookup(instance_uuid)
        if dom is None:
            raise InstanceNotFound(f"instance {instance_uuid} not found on host {self.host}")
        return dom

    @staticmethod
    def _state(dom: Any) -> int:
        try:
            return int(dom.state()[0])
        except libvirt.libvirtError as exc:
            if _error_code(exc) == libvirt.VIR_ERR_NO_DOMAIN:
                return int(libvirt.VIR_DOMAIN_SHUTOFF)
            raise

    def _wait_state(self, dom: Any, states: set[int], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while True:
            if self._state(dom) in states:
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)

    @contextlib.contextmanager
    def _errors(self, action: str, instance_uuid: str) -> Iterator[None]:
        try:
            yield
        except libvirt.libvirtError as exc:
            raise DriverError(f"{action} of instance {instance_uuid} failed: {exc}") from exc

    # --- host ------------------------------------------------------------------------------------

    def get_available_resource(self) -> HostResources:
        conn = self._connection()
        with self._errors("resource query", "-"):
            model, memory_mb, cpus, mhz, nodes, sockets, cores, threads = conn.getInfo()
            version = int(conn.getVersion())
            try:
                # /proc/meminfo's total; getInfo() counts NUMA node memory only.
                stats = conn.getMemoryStats(libvirt.VIR_NODE_MEMORY_STATS_ALL_CELLS, 0)
                memory_mb = max(int(memory_mb), int(stats["total"]) // 1024)
            except (libvirt.libvirtError, KeyError):
                pass
        usage = shutil.disk_usage(self.instances_path)
        return HostResources(
            hostname=self.host,
            vcpus=int(cpus),
            memory_mb=int(memory_mb),
            local_gb=int(usage.total // GiB),
            hypervisor_type="QEMU",
            hypervisor_version=version,
            cpu_info={
                "arch": str(model),
                "virt_type": self.virt_type,
                "mhz": int(mhz),
                "topology": {
                    "numa_nodes": int(nodes),
                    "sockets": int(sockets),
                    "cores": int(cores),
                    "threads": int(threads),
                },  # fmt: skip
                "disk_free_gb": int(usage.free // GiB),
            },
        )

    def list_instances(self) -> list[str]:
        conn = self._connection()
        with self._errors("listing", "-"):
            domains = conn.listAllDomains(0)
        result = []
        for dom in domains:
            try:
                if self._is_cirrus(dom):
                    result.append(str(dom.UUIDString()))
            except libvirt.libvirtError:
                continue  # vanished while we looked
        return result

    # --- spawn and destroy -----------------------------------------------------------------------

    def spawn(self, instance: InstanceSpec) -> None:
        instance_uuid = _check_uuid(instance.uuid)
        existing = self._lookup(instance_uuid)
        if existing is not None:
            if self._state(existing) not in (
                libvirt.VIR_DOMAIN_RUNNING,
                libvirt.VIR_DOMAIN_BLOCKED,
            ):
                self._start(existing, instance_uuid)
            return
        self._check_image(instance)
        instance_dir = self._instance_dir(instance_uuid)
        dom = None
        try:
            instance_dir.mkdir(parents=True, exist_ok=True)
            root_disk = self._create_root_disk(instance, instance_dir)
            layout = DomainLayout(
                virt_type=self.virt_type,
                instance_dir=instance_dir,
                root_disk=root_disk,
                emulator=self.emulator,
            )
            for vif in instance.interfaces:
                ensure_bridge(vif.bridge)
            xml = build_domain_xml(instance, layout)
            (instance_dir / "libvirt.xml").write_text(xml)
            with self._errors("define", instance_uuid):
                dom = self._connection().defineXML(xml)
            self._start(dom, instance_uuid)
        except BaseException as exc:
            self._remove(instance_uuid, dom)
            if isinstance(exc, DriverError):
                raise
            if isinstance(exc, Exception):
                raise DriverError(f"spawn of instance {instance_uuid} failed: {exc}") from exc
            raise

    def _check_image(self, instance: InstanceSpec) -> None:
        image = instance.image
        files = []
        if instance.boot_volume() is not None and image.kernel is None:
            return  # boots from the volume: the image (if any) gives no file
        if image.kernel is not None:
            files.append(("kernel", image.kernel))
            if image.ramdisk is not None:
                files.append(("ramdisk", image.ramdisk))
            if image.disk is not None:
                files.append(("disk", image.disk))
        elif image.disk is None:
            raise DriverError(f"image {image.image_id} has neither a disk nor a kernel to boot")
        else:
            files.append(("disk", image.disk))
        for kind, path in files:
            if not Path(path).is_file():
                raise DriverError(
                    f"image {image.image_id}: {kind} file {path} does not exist on host {self.host}"
                )
            if not os.access(path, os.R_OK):
                raise DriverError(f"image {image.image_id}: {kind} file {path} is not readable")

    def _create_root_disk(self, instance: InstanceSpec, instance_dir: Path) -> Path | None:
        """A qcow2 overlay on the cached base (never written), grown to ``root_gb`` if larger."""
        image = instance.image
        disk = instance_dir / ROOT_DISK
        if instance.boot_volume() is not None:
            return None  # volume-backed: vda is the volume, no local root disk
        wanted = instance.root_gb * GiB
        if image.disk is None:
            if wanted <= 0:
                return None
            self._qemu_img("create", "-f", "qcow2", str(disk), str(wanted))
            return disk
        backing_format = _BACKING_FORMATS.get(image.disk_format)
        if backing_format is None:
            raise DriverError(
                f"image {image.image_id}: disk_format {image.disk_format!r} cannot back a root "
                f"disk (supported: {', '.join(sorted(_BACKING_FORMATS))})"
            )
        base = Path(image.disk).resolve()
        info = json.loads(self._qemu_img("info", "--output=json", "-f", backing_format,
                                         str(base)))  # fmt: skip
        size = max(int(info["virtual-size"]), wanted)
        self._qemu_img(
            "create", "-f", "qcow2", "-F", backing_format, "-b", str(base), str(disk), str(size)
        )
        return disk

    @staticmethod
    def _qemu_img(*args: str) -> str:
        try:
            proc = subprocess.run(
                ["qemu-img", *args], check=True, capture_output=True, text=True, timeout=60
            )
        except subprocess.CalledProcessError as exc:
            raise DriverError(f"qemu-img {args[0]} failed: {exc.stderr.strip()}") from exc
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise DriverError(f"qemu-img {args[0]} failed: {exc}") from exc
        return proc.stdout

    def _start(self, dom: Any, instance_uuid: str) -> None:
        with self._errors("start", instance_uuid):
            if self._state(dom) in (libvirt.VIR_DOMAIN_RUNNING, libvirt.VIR_DOMAIN_BLOCKED):
                return
            if self._state(dom) == libvirt.VIR_DOMAIN_PAUSED:
                dom.resume()
            else:
                try:
                    dom.create()
                except libvirt.libvirtError as exc:
                    if _error_code(exc) != libvirt.VIR_ERR_OPERATION_INVALID:
                        raise  # OPERATION_INVALID: already running (a concurrent start)
            running = self._wait_state(
                dom, {libvirt.VIR_DOMAIN_RUNNING, libvirt.VIR_DOMAIN_BLOCKED}, self.spawn_timeout
            )
        if not running:
            raise DriverError(
                f"instance {instance_uuid} did not reach running within {self.spawn_timeout:.0f} s"
            )

    def destroy(self, instance_uuid: str) -> None:
        instance_uuid = _check_uuid(instance_uuid)
        self._remove(instance_uuid, self._lookup(instance_uuid))

    def _remove(self, instance_uuid: str, dom: Any | None) -> None:
        """Stop and undefine ``dom`` (if any) and delete the instance directory."""
        if dom is not None:
            with self._errors("destroy", instance_uuid):
                try:
                    if dom.isActive():
                        dom.destroy()
                except libvirt.libvirtError as exc:
                    if _error_code(exc) not in (
                        libvirt.VIR_ERR_OPERATION_INVALID,
                        libvirt.VIR_ERR_NO_DOMAIN,
                    ):
                        raise
                flags = (
                    libvirt.VIR_DOMAIN_UNDEFINE_NVRAM
                    | libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE
                    | libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA
                )
                try:
                    dom.undefineFlags(flags)
                except libvirt.libvirtError as exc:
                    if _error_code(exc) != libvirt.VIR_ERR_NO_DOMAIN:
                        raise
        instance_dir = self._instance_dir(instance_uuid)
        try:
            shutil.rmtree(instance_dir)
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise DriverError(f"cannot remove {instance_dir}: {exc}") from exc

    # --- interfaces ------------------------------------------------------------------------------

    def _has_mac(self, dom: Any, mac: str) -> bool:
        """Whether the persistent definition has a NIC with ``mac``."""
        root = ET.fromstring(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))  # noqa: S314
        return any(
            (m.get("address") or "").lower() == mac.lower()
            for m in root.findall("devices/interface/mac")
        )

    def _device_flags(self, dom: Any) -> int:
        flags = int(libvirt.VIR_DOMAIN_AFFECT_CONFIG)
        if self._state(dom) in (libvirt.VIR_DOMAIN_RUNNING, libvirt.VIR_DOMAIN_BLOCKED):
            flags |= int(libvirt.VIR_DOMAIN_AFFECT_LIVE)
        return flags

    def attach_interface(self, instance_uuid: str, vif: NetworkInterface) -> None:
        dom = self._get(instance_uuid)
        with self._errors("interface attach", instance_uuid):
            if self._has_mac(dom, vif.mac_address):
                return
            ensure_bridge(vif.bridge)
            dom.attachDeviceFlags(interface_xml(vif), self._device_flags(dom))

    def detach_interface(self, instance_uuid: str, vif: NetworkInterface) -> None:
        dom = self._get(instance_uuid)
        with self._errors("interface detach", instance_uuid):
            if not self._has_mac(dom, vif.mac_address):
                return
            dom.detachDeviceFlags(interface_xml(vif), self._device_flags(dom))

    # --- volumes ---------------------------------------------------------------------------------

    @staticmethod
    def _find_disk(dom: Any, dev: str, flags: int) -> ET.Element | None:
        """The ``<disk>`` whose target is ``dev`` in the live (``flags`` 0) or persistent
        (``VIR_DOMAIN_XML_INACTIVE``) definition."""
        root = ET.fromstring(dom.XMLDesc(flags))  # noqa: S314 - from the local libvirt daemon
        for disk in root.findall("devices/disk"):
            target = disk.find("target")
            if target is not None and target.get("dev") == dev:
                return disk
        return None

    def _running(self, dom: Any) -> bool:
        return self._state(dom) in (libvirt.VIR_DOMAIN_RUNNING, libvirt.VIR_DOMAIN_BLOCKED)

    @staticmethod
    def _same_volume(disk: ET.Element, volume_id: str) -> bool:
        serial = disk.findtext("serial") or ""
        return not volume_id or serial == volume_id[:20]

    def attach_volume(
        self, instance_uuid: str, connection: dict[str, Any], device: str, volume_id: str = ""
    ) -> None:
        """Hot-plug the NBD disk (live when the guest runs) and add it to the persistent
        definition, each only where it is missing (idempotent)."""
        dev = device_name(device)
        volume_id = volume_id or str((connection.get("data") or {}).get("volume_id") or "")
        xml = volume_xml(connection, dev, volume_id)
        dom = self._get(instance_uuid)
        with self._lock, self._errors(f"attach of volume {volume_id} as {dev}", instance_uuid):
            wanted = [(int(libvirt.VIR_DOMAIN_XML_INACTIVE), libvirt.VIR_DOMAIN_AFFECT_CONFIG)]
            if self._running(dom):
                wanted.insert(0, (0, libvirt.VIR_DOMAIN_AFFECT_LIVE))
            plugged_live = False
            try:
                for xml_flags, affect in wanted:
                    present = self._find_disk(dom, dev, xml_flags)
                    if present is not None:
                        if not self._same_volume(present, volume_id):
                            raise DriverError(
                                f"cannot attach volume {volume_id} to instance {instance_uuid}: "
                                f"{dev} is already another disk ({present.findtext('serial')})"
                            )
                        continue
                    dom.attachDeviceFlags(xml, int(affect))
                    plugged_live = plugged_live or affect == libvirt.VIR_DOMAIN_AFFECT_LIVE
            except BaseException:
                # All or nothing: compute-api gives the volume back, the guest must not keep it.
                if plugged_live:
                    with contextlib.suppress(libvirt.libvirtError):
                        dom.detachDeviceFlags(xml, int(libvirt.VIR_DOMAIN_AFFECT_LIVE))
                raise
        LOG.info("instance %s: volume %s attached as %s", instance_uuid, volume_id, dev)

    def detach_volume(self, instance_uuid: str, device: str, volume_id: str = "") -> None:
        """Unplug the disk from the running guest and wait until the guest has released it
        (libvirt drops it from the live XML once QEMU reports DEVICE_DELETED), re-sending the
        request now and then as Nova does; then drop it from the persistent definition."""
        dev = device_name(device)
        dom = self._get(instance_uuid)
        with self._errors(f"detach of {dev}", instance_uuid):
            if self._running(dom):
                live = self._find_disk(dom, dev, 0)
                if live is not None:
                    self._detach_live(dom, instance_uuid, dev, ET.tostring(live, "unicode"))
            config = self._find_disk(dom, dev, int(libvirt.VIR_DOMAIN_XML_INACTIVE))
            if config is not None:
                try:
                    dom.detachDeviceFlags(
                        ET.tostring(config, "unicode"), int(libvirt.VIR_DOMAIN_AFFECT_CONFIG)
                    )
                except libvirt.libvirtError as exc:
                    if _error_code(exc) != libvirt.VIR_ERR_DEVICE_MISSING:
                        raise
        LOG.info("instance %s: %s detached", instance_uuid, dev)

    def _detach_live(self, dom: Any, instance_uuid: str, dev: str, xml: str) -> None:
        deadline = time.monotonic() + self.device_detach_timeout
        resend_every = 10.0
        next_request = 0.0
        while True:
            now = time.monotonic()
            if now >= next_request:
                try:
                    dom.detachDeviceFlags(xml, int(libvirt.VIR_DOMAIN_AFFECT_LIVE))
                except libvirt.libvirtError as exc:
                    code = _error_code(exc)
                    if code == libvirt.VIR_ERR_DEVICE_MISSING:
                        return
                    # An unplug already in progress, or the guest stopped meanwhile: wait on.
                    if code not in (
                        libvirt.VIR_ERR_OPERATION_FAILED,
                        libvirt.VIR_ERR_OPERATION_INVALID,
                        libvirt.VIR_ERR_INTERNAL_ERROR,
                    ):
                        raise
                    LOG.debug("detach of %s from %s: %s", dev, instance_uuid, exc)
                next_request = now + resend_every
            if not self._running(dom) or self._find_disk(dom, dev, 0) is None:
                return
            if now >= deadline:
                raise DriverError(
                    f"the guest of instance {instance_uuid} did not release disk {dev} within "
                    f"{self.device_detach_timeout:.0f} s; it is still attached"
                )
            time.sleep(0.1)

    # --- power -----------------------------------------------------------------------------------

    def power_off(self, instance_uuid: str, timeout: float = 30.0) -> None:
        dom = self._get(instance_uuid)
        off = {libvirt.VIR_DOMAIN_SHUTOFF, libvirt.VIR_DOMAIN_CRASHED}
        if self._state(dom) in off:
            return
        with self._errors("power off", instance_uuid):
            if timeout > 0:
                try:
                    dom.shutdown()
                except libvirt.libvirtError as exc:
                    if _error_code(exc) != libvirt.VIR_ERR_OPERATION_INVALID:
                        raise
                if self._wait_state(dom, off, timeout):
                    return
                LOG.info("instance %s ignored ACPI shutdown for %.0f s; forcing off",
                         instance_uuid, timeout)  # fmt: skip
            try:
                dom.destroy()
            except libvirt.libvirtError as exc:
                if _error_code(exc) != libvirt.VIR_ERR_OPERATION_INVALID:
                    raise

    def power_on(self, instance_uuid: str) -> None:
        self._start(self._get(instance_uuid), _check_uuid(instance_uuid))

    def reboot(self, instance_uuid: str, hard: bool = False) -> None:
        dom = self._get(instance_uuid)
        running = self._state(dom) in (libvirt.VIR_DOMAIN_RUNNING, libvirt.VIR_DOMAIN_BLOCKED)
        if not hard and running:
            # Like Nova's soft reboot: a clean ACPI shutdown, then start again. A guest that
            # does not shut down in time gets a hard reboot.
            with self._errors("soft reboot", instance_uuid):
                try:
                    dom.shutdown()
                    off = self._wait_state(
                        dom,
                        {libvirt.VIR_DOMAIN_SHUTOFF, libvirt.VIR_DOMAIN_CRASHED},
                        self.soft_reboot_timeout,
                    )
                except libvirt.libvirtError as exc:
                    LOG.info("soft reboot of %s failed (%s); rebooting hard", instance_uuid, exc)
                    off = False
            if off:
                self._start(dom, instance_uuid)
                return
            LOG.info("instance %s did not shut down for a soft reboot; rebooting hard",
                     instance_uuid)  # fmt: skip
        with self._errors("hard reboot", instance_uuid):
            try:
                if dom.isActive():
                    dom.destroy()
            except libvirt.libvirtError as exc:
                if _error_code(exc) != libvirt.VIR_ERR_OPERATION_INVALID:
                    raise
        self._start(dom, instance_uuid)

    def get_power_state(self, instance_uuid: str) -> PowerState:
        dom = self._get(instance_uuid)
        with self._errors("state query", instance_uuid):
            return _POWER_STATES.get(self._state(dom), PowerState.NOSTATE)

    def get_console_output(self, instance_uuid: str, length: int | None = None) -> str:
        self._get(instance_uuid)
        path = self._instance_dir(instance_uuid) / CONSOLE_LOG
        try:
            with path.open("rb") as log:
                size = log.seek(0, os.SEEK_END)
                log.seek(max(0, size - CONSOLE_MAX_BYTES))
                data = log.read()
        except FileNotFoundError:
            return ""
        except OSError as exc:
            raise DriverError(f"cannot read the console log of {instance_uuid}: {exc}") from exc
        text = data.decode("utf-8", errors="replace").replace("\r\n", "\n")
        if length is not None:
            lines = text.splitlines(keepends=True)
            text = "".join(lines[-length:]) if length > 0 else ""
        return text
