"""The file backend: one disk file per volume and per snapshot, exported with ``qemu-nbd``.

Files live in ``volumes_dir``: ``volume-<id>`` and ``snapshot-<id>``, all in the configured
``volume_format`` (``raw``: sparse files; ``qcow2``: thin, grown by QEMU). Every change goes
through ``qemu-img`` with an argv list and an explicit ``-f``/``-O`` (a file's format is never
probed: a guest could write a qcow2 header into a raw volume). A create writes ``.tmp-<name>``
and renames it, so a file with the final name is always complete; leftovers of an interrupted
create are removed when the same create runs again.

Snapshots and clones are full copies (``qemu-img convert -U``: the source may be in use by a
``qemu-nbd`` export). Images are converted from their ``disk_format``; an image with a backing
file or an external data file is refused (it would make ``qemu-img`` read another host file).

:class:`ImageDownloader` streams an image from the image API
(``GET {image_api_url}/v2/images/{id}/file`` with the user's token) to a temporary file, checking
the size and checksums when known.

The volume format must not change while volumes exist: files are read in the configured format.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import requests

from agents.volume import nbd
from agents.volume.driver import (
    Capacity,
    DriverError,
    Export,
    GiB,
    SnapshotNotFound,
    VolumeDriver,
    VolumeNotFound,
    valid_id,
    valid_size,
)

LOG = logging.getLogger("cirrus.volume.file")

FORMATS = ("raw", "qcow2")
# Glance disk_format -> qemu-img format name
IMAGE_FORMATS = {
    "raw": "raw",
    "qcow2": "qcow2",
    "vmdk": "vmdk",
    "vdi": "vdi",
    "vhd": "vpc",
    "vhdx": "vhdx",
    "iso": "raw",
}
QEMU_IMG_TIMEOUT = 3600.0  # a copy of a large volume takes a while
INFO_TIMEOUT = 60.0


def qemu_img(args: list[str], timeout: float = QEMU_IMG_TIMEOUT, binary: str = "qemu-img") -> str:
    """Run ``qemu-img`` with ``args`` (never through a shell); its stdout, or DriverError."""
    argv = [binary, *args]
    LOG.debug("running %s", argv)
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    except FileNotFoundError:
        raise DriverError(f"{binary} is not installed (package qemu-utils)") from None
    except subprocess.TimeoutExpired:
        raise DriverError(f"{binary} {args[0]} took longer than {timeout:g}s") from None
    if proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip().splitlines()
        raise DriverError(f"qemu-img {args[0]} failed: {detail[-1] if detail else proc.returncode}")
    return proc.stdout


def image_info(path: Path, fmt: str) -> dict[str, Any]:
    """``qemu-img info`` of ``path`` read as ``fmt`` (``-U``: the file may be in use)."""
    out = qemu_img(["info", "-U", "-f", fmt, "--output=json", str(path)], timeout=INFO_TIMEOUT)
    info: dict[str, Any] = json.loads(out)
    return info


def _gib(size_bytes: int) -> int:
    return max(1, math.ceil(size_bytes / GiB))


class FileDriver(VolumeDriver):
    name: ClassVar[str] = "file"

    def __init__(
        self,
        volumes_dir: str | Path,
        volume_format: str = "raw",
        exports: nbd.NbdExports | None = None,
    ) -> None:
        if volume_format not in FORMATS:
            raise ValueError(f"volume_format must be one of {', '.join(FORMATS)}")
        self.dir = Path(volumes_dir)
        self.volume_format = volume_format
        self.exports = exports

    # -- paths -----------------------------------------------------------------------------------

    def volume_path(self, volume_id: str) -> Path:
        return self.dir / f"volume-{valid_id(volume_id)}"

    def snapshot_path(self, snapshot_id: str) -> Path:
        return self.dir / f"snapshot-{valid_id(snapshot_id, 'snapshot id')}"

    def _tmp(self, final: Path) -> Path:
        return final.with_name(f".tmp-{final.name}")

    @contextlib.contextmanager
    def _creating(self, final: Path) -> Iterator[Path]:
        """A temporary path renamed to ``final`` when the block succeeds, removed otherwise."""
        tmp = self._tmp(final)
        tmp.unlink(missing_ok=True)  # an interrupted earlier attempt
        try:
            yield tmp
            os.chmod(tmp, 0o600)
            os.replace(tmp, final)
        finally:
            tmp.unlink(missing_ok=True)

    # -- life cycle ------------------------------------------------------------------------------

    def start(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        if self.exports is not None:
            self.exports.adopt()

    # -- volumes ---------------------------------------------------------------------------------

    def volume_exists(self, volume_id: str) -> bool:
        return self.volume_path(volume_id).is_file()

    def _virtual_size(self, path: Path) -> int:
        if self.volume_format == "raw":
            return path.stat().st_size
        return int(image_info(path, self.volume_format)["virtual-size"])

    def volume_size(self, volume_id: str) -> int:
        path = self.volume_path(volume_id)
        if not path.is_file():
            raise VolumeNotFound(f"volume {volume_id} has no file {path}")
        return _gib(self._virtual_size(path))

    def list_volumes(self) -> list[str]:
        if not self.dir.is_dir():
            return []
        return sorted(p.name[len("volume-") :] for p in self.dir.glob("volume-*") if p.is_file())

    def _create_blank(self, path: Path, size_gb: int) -> None:
        args = ["create", "-q", "-f", self.volume_format]
        if self.volume_format == "qcow2":
            args += ["-o", "preallocation=off,lazy_refcounts=on"]
        qemu_img([*args, str(path), f"{size_gb}G"])

    def create_volume(self, volume_id: str, size_gb: int) -> None:
        final = self.volume_path(volume_id)
        valid_size(size_gb)
        if final.is_file():
            return
        with self._creating(final) as tmp:
            self._create_blank(tmp, size_gb)
        LOG.info(
            "volume %s: created %s (%d GiB, %s)", volume_id, final, size_gb, self.volume_format
        )

    def _copy(self, source: Path, source_format: str, target: Path, unlocked: bool) -> None:
        args = ["convert", "-q"]
        if unlocked:
            args.append("-U")
        args += ["-f", source_format, "-O", self.volume_format]
        if self.volume_format == "qcow2":
            args += ["-o", "lazy_refcounts=on"]
        qemu_img([*args, str(source), str(target)])

    def _grow(self, path: Path, size_gb: int) -> None:
        current = self._virtual_size(path)
        if current < size_gb * GiB:
            qemu_img(["resize", "-q", "-f", self.volume_format, str(path), f"{size_gb}G"])

    def _clone(self, volume_id: str, size_gb: int, source: Path, what: str) -> None:
        final = self.volume_path(volume_id)
        valid_size(size_gb)
        if final.is_file():
            return
        source_size = self._virtual_size(source)
        if source_size > size_gb * GiB:
            raise DriverError(
                f"{what} is {_gib(source_size)} GiB, larger than the {size_gb} GiB volume"
            )
        with self._creating(final) as tmp:
            self._copy(source, self.volume_format, tmp, unlocked=True)
            self._grow(tmp, size_gb)
        LOG.info("volume %s: created from %s (%d GiB)", volume_id, what, size_gb)

    def create_volume_from_snapshot(self, volume_id: str, size_gb: int, snapshot_id: str) -> None:
        source = self.snapshot_path(snapshot_id)
        if not self.volume_path(volume_id).is_file() and not source.is_file():
            raise SnapshotNotFound(f"snapshot {snapshot_id} has no file on this host")
        self._clone(volume_id, size_gb, source, f"snapshot {snapshot_id}")

    def create_volume_from_volume(self, volume_id: str, size_gb: int, source_id: str) -> None:
        source = self.volume_path(source_id)
        if not self.volume_path(volume_id).is_file() and not source.is_file():
            raise VolumeNotFound(f"source volume {source_id} has no file on this host")
        self._clone(volume_id, size_gb, source, f"volume {source_id}")

    def create_volume_from_image(
        self, volume_id: str, size_gb: int, image_file: Path, disk_format: str
    ) -> None:
        final = self.volume_path(volume_id)
        valid_size(size_gb)
        if final.is_file():
            return
        fmt = IMAGE_FORMATS.get(disk_format)
        if fmt is None:
            raise DriverError(
                f"disk_format {disk_format!r} cannot be written to a volume "
                f"(supported: {', '.join(sorted(IMAGE_FORMATS))})"
            )
        info = image_info(image_file, fmt)
        for key in ("backing-filename", "full-backing-filename"):
            if info.get(key):
                raise DriverError("the image has a backing file: refused")
        if (info.get("format-specific") or {}).get("data", {}).get("data-file"):
            raise DriverError("the image has an external data file: refused")
        virtual = int(info.get("virtual-size") or 0)
        if virtual > size_gb * GiB:
            raise DriverError(
                f"the image's virtual size is {_gib(virtual)} GiB "
                f"({virtual} bytes), larger than the {size_gb} GiB volume"
            )
        with self._creating(final) as tmp:
            self._copy(image_file, fmt, tmp, unlocked=False)
            self._grow(tmp, size_gb)
        LOG.info("volume %s: created from a %s image (%d GiB)", volume_id, disk_format, size_gb)

    def delete_volume(self, volume_id: str) -> bool:
        path = self.volume_path(volume_id)
        self._tmp(path).unlink(missing_ok=True)
        try:
            path.unlink()
        except FileNotFoundError:
            return False
        LOG.info("volume %s: deleted %s", volume_id, path)
        return True

    def extend_volume(self, volume_id: str, new_size_gb: int) -> None:
        valid_size(new_size_gb, "new size")
        path = self.volume_path(volume_id)
        if not path.is_file():
            raise VolumeNotFound(f"volume {volume_id} has no file {path}")
        if self.exports is not None and any(e.volume_id == volume_id for e in self.exports.live()):
            raise DriverError(f"volume {volume_id} is exported (attached): detach it to extend")
        self._grow(path, new_size_gb)
        LOG.info("volume %s: extended to %d GiB", volume_id, new_size_gb)

    # -- snapshots -------------------------------------------------------------------------------

    def snapshot_exists(self, snapshot_id: str) -> bool:
        return self.snapshot_path(snapshot_id).is_file()

    def create_snapshot(self, snapshot_id: str, volume_id: str) -> None:
        final = self.snapshot_path(snapshot_id)
        if final.is_file():
            return
        source = self.volume_path(volume_id)
        if not source.is_file():
            raise VolumeNotFound(f"volume {volume_id} has no file {source}")
        with self._creating(final) as tmp:
            self._copy(source, self.volume_format, tmp, unlocked=True)
        LOG.info("snapshot %s of volume %s: created %s", snapshot_id, volume_id, final)

    def delete_snapshot(self, snapshot_id: str) -> bool:
        path = self.snapshot_path(snapshot_id)
        self._tmp(path).unlink(missing_ok=True)
        try:
            path.unlink()
        except FileNotFoundError:
            return False
        LOG.info("snapshot %s: deleted %s", snapshot_id, path)
        return True

    # -- capacity --------------------------------------------------------------------------------

    def capacity(self) -> Capacity:
        self.dir.mkdir(parents=True, exist_ok=True)
        st = os.statvfs(self.dir)
        total = st.f_blocks * st.f_frsize / GiB
        free = st.f_bavail * st.f_frsize / GiB
        provisioned = 0
        for path in [*self.dir.glob("volume-*"), *self.dir.glob("snapshot-*")]:
            try:
                provisioned += self._virtual_size(path)
            except (OSError, DriverError, ValueError, KeyError):
                continue  # deleted meanwhile, or unreadable: not counted
        return Capacity(round(total, 2), round(free, 2), round(provisioned / GiB, 2))

    # -- exports ---------------------------------------------------------------------------------

    def _exports(self) -> nbd.NbdExports:
        if self.exports is None:
            raise DriverError("this file backend has no NBD exporter configured")
        return self.exports

    def start_export(self, volume_id: str, attachment_id: str) -> Export:
        path = self.volume_path(volume_id)
        if not path.is_file():
            raise VolumeNotFound(f"volume {volume_id} has no file {path}")
        return self._exports().start(
            volume_id, valid_id(attachment_id, "attachment id"), path, self.volume_format
        )

    def stop_export(self, attachment_id: str) -> bool:
        return self._exports().stop(valid_id(attachment_id, "attachment id"))

    def list_exports(self) -> list[Export]:
        return self.exports.live() if self.exports is not None else []


class ImageDownloader:
    """Fetches images from the image API into temporary files under ``directory``."""

    def __init__(self, directory: str | Path, timeout: float = 60.0) -> None:
        self.directory = Path(directory)
        self.timeout = timeout

    def _headers(self, token: str | None) -> dict[str, str]:
        return {"X-Auth-Token": token} if token else {}

    def metadata(self, base_url: str, image_id: str, token: str | None) -> dict[str, Any]:
        """The image record (``GET /v2/images/{id}``); {} when it cannot be read."""
        url = f"{base_url.rstrip('/')}/v2/images/{valid_id(image_id, 'image id')}"
        try:
            resp = requests.get(url, headers=self._headers(token), timeout=self.timeout)
            if resp.status_code == 200:
                body: dict[str, Any] = resp.json()
                return body
            LOG.warning("image %s: GET %s answered %s", image_id, url, resp.status_code)
        except (requests.RequestException, ValueError) as exc:
            LOG.warning("image %s: GET %s failed: %s", image_id, url, exc)
        return {}

    @contextlib.contextmanager
    def fetch(self, source: dict[str, Any]) -> Iterator[tuple[Path, dict[str, Any]]]:
        """Download the image of a ``{"type": "image", ...}`` source; yields the file (removed
        afterwards) and the image's metadata (what the image API told, or {})."""
        image_id = valid_id(source.get("image_id"), "image id")
        base = str(source.get("image_api_url") or "")
        if not base:
            raise DriverError(f"image {image_id}: no image_api_url to download it from")
        token = source.get("token")
        meta = self.metadata(base, image_id, token)
        expected_size = source.get("size", meta.get("size"))
        md5_expected = source.get("checksum", meta.get("checksum"))
        algo = source.get("os_hash_algo", meta.get("os_hash_algo"))
        hash_expected = source.get("os_hash_value", meta.get("os_hash_value"))
        url = f"{base.rstrip('/')}/v2/images/{image_id}/file"
        self.directory.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f".image-{image_id}-", dir=self.directory)
        path = Path(name)
        try:
            md5 = hashlib.md5(usedforsecurity=False)
            strong = None
            if algo and hash_expected:
                try:
                    strong = hashlib.new(str(algo))
                except ValueError:
                    LOG.warning("image %s: unknown os_hash_algo %r, not checked", image_id, algo)
            written = 0
            with os.fdopen(fd, "wb") as out:
                try:
                    resp = requests.get(  # one connection per download: workers run in parallel
                        url, headers=self._headers(token), stream=True, timeout=self.timeout
                    )
                except requests.RequestException as exc:
                    raise DriverError(f"image {image_id}: download failed: {exc}") from None
                with resp:
                    if resp.status_code != 200:
                        raise DriverError(
                            f"image {image_id}: GET {url} answered {resp.status_code}"
                        )
                    try:
                        for chunk in resp.iter_content(1024 * 1024):
                            out.write(chunk)
                            md5.update(chunk)
                            if strong is not None:
                                strong.update(chunk)
                            written += len(chunk)
                    except requests.RequestException as exc:
                        raise DriverError(f"image {image_id}: download broken: {exc}") from None
            if expected_size is not None and int(expected_size) != written:
                raise DriverError(
                    f"image {image_id}: got {written} bytes, the image API said {expected_size}"
                )
            if md5_expected and md5.hexdigest() != md5_expected:
                raise DriverError(f"image {image_id}: md5 checksum mismatch")
            if strong is not None and strong.hexdigest() != hash_expected:
                raise DriverError(f"image {image_id}: {algo} checksum mismatch")
            LOG.info("image %s: downloaded %d bytes", image_id, written)
            yield path, meta
        finally:
            path.unlink(missing_ok=True)

    def close(self) -> None:
        """Nothing held between downloads."""
