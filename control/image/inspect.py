"""Inspection of uploaded image data with ``qemu-img info``.

Every upload is inspected before it becomes active, because compute hosts hand image files to
QEMU: a qcow2 that names a backing file or an external data file would make QEMU open a file of
the host's choosing (OSSA-2024-001, CVE-2024-32498), and a file whose real format differs from its
``disk_format`` would be opened with the wrong driver.

1. The first bytes are read in Python first: a qcow2 header with a backing file or the external
   data file feature, and a VMDK text descriptor (which names extent files), are refused before
   ``qemu-img`` opens anything.
2. ``qemu-img info --output=json --force-share FILE`` runs as an argument list (never a shell),
   with a timeout and, where ``prlimit`` exists, limits on address space and CPU time. Its format
   probe is compared with ``disk_format``; a backing file or data file in its answer is refused
   again; its ``virtual-size`` becomes the image's ``virtual_size``.

How a ``disk_format`` must match what qemu-img finds:

=========== =====================================================================
qcow2       ``qcow2``
raw         ``raw`` (anything qemu-img does not recognise: MBR, GPT, ISO 9660...)
iso         ``raw``, with the ISO 9660 signature ``CD001`` at byte 32769
vhd         ``vpc``, or ``raw`` with a fixed-VHD footer (``conectix``) at the end
vhdx, vdi   ``vhdx``, ``vdi``
vmdk        ``vmdk`` of create type ``monolithicSparse`` or ``streamOptimized`` whose only
            extent is the file itself
ploop       ``parallels``
ami ari aki not compared (as Glance and Nova: these may hold several things)
=========== =====================================================================

For container formats other than ``bare`` (``ovf``, ``ova``, ``docker``, ``compressed``) the data is
an archive, so the format is not compared; the safety checks still apply.
"""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: qemu-img's format name -> Glance's disk_format.
QEMU_FORMATS = {
    "qcow2": "qcow2",
    "raw": "raw",
    "vmdk": "vmdk",
    "vdi": "vdi",
    "vhdx": "vhdx",
    "vpc": "vhd",
    "parallels": "ploop",
}
UNCOMPARED_DISK_FORMATS = frozenset({"ami", "ari", "aki"})
COMPARED_CONTAINERS = frozenset({"bare", "ami", "ari", "aki"})
VMDK_CREATE_TYPES = frozenset({"monolithicSparse", "streamOptimized"})

QCOW2_MAGIC = b"QFI\xfb"
QCOW2_EXTERNAL_DATA_FILE = 1 << 2
VMDK_SPARSE_MAGIC = b"KDMV"
ISO_SIGNATURE_OFFSET = 32769
ISO_SIGNATURE = b"CD001"
VHD_FOOTER = b"conectix"


class InspectionError(Exception):
    """The data is refused; the message says why and is meant for the user."""


class InspectorUnavailable(Exception):
    """``qemu-img`` is missing or failed for a reason that is not the data's fault."""


@dataclass
class Inspection:
    """What was found: qemu-img's format and the image's virtual size in bytes."""

    qemu_format: str
    disk_format: str | None
    virtual_size: int | None
    info: dict[str, Any] = field(default_factory=dict)


@dataclass
class Inspector:
    qemu_img: str = "qemu-img"
    timeout: float = 30.0
    memory_limit: int = 1024 * 1024 * 1024  # bytes of address space for qemu-img
    cpu_limit: int = 30  # seconds of CPU time for qemu-img

    def command(self, path: Path) -> list[str]:
        binary = shutil.which(self.qemu_img)
        if binary is None:
            raise InspectorUnavailable(
                f"{self.qemu_img} is not installed on the image service host "
                "(Debian package qemu-utils), so uploaded data cannot be inspected"
            )
        argv = [binary, "info", "--output=json", "--force-share", str(path)]
        prlimit = shutil.which("prlimit")
        if prlimit is not None:
            argv = [prlimit, f"--as={self.memory_limit}", f"--cpu={self.cpu_limit}", "--", *argv]
        return argv

    def qemu_img_info(self, path: Path) -> dict[str, Any]:
        """``qemu-img info`` of ``path`` as a dictionary."""
        argv = self.command(path)
        try:
            result = subprocess.run(
                argv,
                capture_output=True,
                text=True,
                timeout=self.timeout,
                check=False,
                stdin=subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired:
            raise InspectionError(
                f"qemu-img could not read the data within {self.timeout:g} s"
            ) from None
        except OSError as exc:
            raise InspectorUnavailable(f"qemu-img could not be run: {exc}") from None
        if result.returncode != 0:
            reason = (result.stderr.strip().splitlines() or ["no reason given"])[-1]
            # qemu-img prefixes its messages with its path and the file name: keep the reason.
            reason = reason.split(f"{path}': ", 1)[-1].removeprefix("qemu-img: ")
            raise InspectionError(f"qemu-img cannot read the data: {reason}")
        try:
            info = json.loads(result.stdout)
        except ValueError:
            raise InspectorUnavailable("qemu-img printed something that is not JSON") from None
        if not isinstance(info, dict):
            raise InspectorUnavailable("qemu-img printed JSON that is not an object")
        return info

    def inspect(self, path: Path, disk_format: str, container_format: str) -> Inspection:
        """Inspect the data at ``path``; raise :class:`InspectionError` when it is refused."""
        check_header(path)
        info = self.qemu_img_info(path)
        qemu_format = str(info.get("format", ""))
        backing = info.get("backing-filename") or info.get("full-backing-filename")
        if backing:
            raise InspectionError(f"it is a {qemu_format} image with a backing file ({backing})")
        data_file = _format_data(info).get("data-file")
        if data_file:
            raise InspectionError(
                f"it is a {qemu_format} image with an external data file ({data_file})"
            )
        if qemu_format == "vmdk":
            _check_vmdk(info, path)
        detected = QEMU_FORMATS.get(qemu_format)
        virtual_size = _int_or_none(info.get("virtual-size"))
        if container_format not in COMPARED_CONTAINERS:
            # An archive: its own size says nothing about the disk inside.
            return Inspection(qemu_format, detected, None, info)
        if disk_format not in UNCOMPARED_DISK_FORMATS:
            _check_match(path, disk_format, qemu_format)
        if qemu_format == "raw":
            # qemu rounds raw sizes up to whole sectors; the exact size is the file's.
            virtual_size = path.stat().st_size
            if disk_format == "vhd":
                virtual_size -= 512
        return Inspection(qemu_format, detected, virtual_size, info)


def _format_data(info: dict[str, Any]) -> dict[str, Any]:
    specific = info.get("format-specific")
    if isinstance(specific, dict) and isinstance(specific.get("data"), dict):
        data: dict[str, Any] = specific["data"]
        return data
    return {}


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _read_at(path: Path, offset: int, length: int) -> bytes:
    with path.open("rb") as handle:
        handle.seek(offset)
        return handle.read(length)


def check_header(path: Path) -> None:
    """Refuse, from the first bytes alone, what qemu-img must not even open."""
    head = _read_at(path, 0, 4096)
    if head[:4] == QCOW2_MAGIC and len(head) >= 16:
        version, backing_offset = struct.unpack(">IQ", head[4:16])
        if backing_offset:
            raise InspectionError("it is a qcow2 image with a backing file")
        if version >= 3 and len(head) >= 80:
            (incompatible,) = struct.unpack(">Q", head[72:80])
            if incompatible & QCOW2_EXTERNAL_DATA_FILE:
                raise InspectionError("it is a qcow2 image with an external data file")
    if head[:4] != VMDK_SPARSE_MAGIC and head.lstrip().startswith(b"# Disk DescriptorFile"):
        raise InspectionError(
            "it is a VMDK descriptor file, which names other files as its extents; "
            "upload a monolithicSparse or streamOptimized VMDK"
        )


def _check_vmdk(info: dict[str, Any], path: Path) -> None:
    data = _format_data(info)
    create_type = data.get("create-type")
    if create_type not in VMDK_CREATE_TYPES:
        raise InspectionError(
            f"it is a VMDK of create type {create_type}; only "
            f"{' and '.join(sorted(VMDK_CREATE_TYPES))} are accepted"
        )
    for extent in data.get("extents") or []:
        filename = extent.get("filename") if isinstance(extent, dict) else None
        if filename and Path(filename).name != path.name:
            raise InspectionError(f"it is a VMDK with an extent in another file ({filename})")


def _check_match(path: Path, disk_format: str, qemu_format: str) -> None:
    found = QEMU_FORMATS.get(qemu_format, qemu_format)
    if disk_format == "iso":
        if qemu_format != "raw":
            raise InspectionError(f"its data is in {found} format but disk_format is iso")
        if _read_at(path, ISO_SIGNATURE_OFFSET, len(ISO_SIGNATURE)) != ISO_SIGNATURE:
            raise InspectionError(
                "disk_format is iso but the data has no ISO 9660 signature (CD001 at byte 32769)"
            )
        return
    if disk_format == "vhd" and qemu_format == "raw":
        size = path.stat().st_size
        if size >= 512 and _read_at(path, size - 512, len(VHD_FOOTER)) == VHD_FOOTER:
            return
    if found != disk_format:
        raise InspectionError(
            f"its data is in {found} format (as qemu-img detects it) but disk_format is "
            f"{disk_format}; upload {disk_format} data or create the image with "
            f"disk_format {found}"
        )
