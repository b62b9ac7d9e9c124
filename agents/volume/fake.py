"""A backend that keeps volumes, snapshots and exports in memory: for unit and API tests.

It follows the driver contract (idempotent by id, :class:`DriverError` on failure) and has test
hooks: ``fail`` (operation name -> message: that operation raises), ``delay`` (seconds each
create, snapshot and extend takes) and ``gate`` (those operations wait until the event is set).
Exports get ports from ``port_min`` upwards and are remembered across "restarts" only when the
same object is reused. :class:`FakeImageFetcher` stands in for the image download.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from agents.volume.driver import (
    Capacity,
    DriverError,
    Export,
    SnapshotNotFound,
    VolumeDriver,
    VolumeNotFound,
    valid_id,
    valid_size,
)
from agents.volume.nbd import export_name


@dataclass
class FakeVolume:
    size_gb: int
    data: bytes = b""  # what a test "wrote" (copied by snapshots and clones)
    source: str = "blank"


class FakeDriver(VolumeDriver):
    name: ClassVar[str] = "fake"

    def __init__(
        self,
        total_gb: float = 1000.0,
        volume_format: str = "raw",
        address: str = "127.0.0.1",
        port_min: int = 10809,
        port_max: int = 10999,
    ) -> None:
        self.total_gb = total_gb
        self.volume_format = volume_format
        self.address = address
        self.port_min = port_min
        self.port_max = port_max
        self.volumes: dict[str, FakeVolume] = {}
        self.snapshots: dict[str, FakeVolume] = {}
        self.exports: dict[str, Export] = {}
        self.fail: dict[str, str] = {}
        self.delay = 0.0
        self.gate: threading.Event | None = None
        self.calls: list[tuple[str, str]] = []
        self._lock = threading.RLock()

    def _hook(self, operation: str, target: str) -> None:
        self.calls.append((operation, target))
        if self.gate is not None:
            self.gate.wait()
        if self.delay:
            time.sleep(self.delay)
        message = self.fail.get(operation)
        if message:
            raise DriverError(message)

    # -- volumes ---------------------------------------------------------------------------------

    def volume_exists(self, volume_id: str) -> bool:
        return volume_id in self.volumes

    def volume_size(self, volume_id: str) -> int:
        try:
            return self.volumes[volume_id].size_gb
        except KeyError:
            raise VolumeNotFound(f"volume {volume_id} does not exist") from None

    def list_volumes(self) -> list[str]:
        return sorted(self.volumes)

    def _add(self, volume_id: str, size_gb: int, data: bytes, source: str) -> None:
        valid_id(volume_id)
        valid_size(size_gb)
        self._hook("create_volume", volume_id)
        with self._lock:
            used = sum(v.size_gb for v in self.volumes.values())
            if used + size_gb > self.total_gb:
                raise DriverError(f"not enough space for {size_gb} GiB")
            self.volumes.setdefault(volume_id, FakeVolume(size_gb, data, source))

    def create_volume(self, volume_id: str, size_gb: int) -> None:
        if volume_id not in self.volumes:
            self._add(volume_id, size_gb, b"", "blank")

    def create_volume_from_snapshot(self, volume_id: str, size_gb: int, snapshot_id: str) -> None:
        if volume_id in self.volumes:
            return
        snap = self.snapshots.get(snapshot_id)
        if snap is None:
            raise SnapshotNotFound(f"snapshot {snapshot_id} does not exist")
        if snap.size_gb > size_gb:
            raise DriverError(f"snapshot {snapshot_id} is larger than {size_gb} GiB")
        self._add(volume_id, size_gb, snap.data, f"snapshot:{snapshot_id}")

    def create_volume_from_volume(self, volume_id: str, size_gb: int, source_id: str) -> None:
        if volume_id in self.volumes:
            return
        src = self.volumes.get(source_id)
        if src is None:
            raise VolumeNotFound(f"source volume {source_id} does not exist")
        if src.size_gb > size_gb:
            raise DriverError(f"volume {source_id} is larger than {size_gb} GiB")
        self._add(volume_id, size_gb, src.data, f"volume:{source_id}")

    def create_volume_from_image(
        self, volume_id: str, size_gb: int, image_file: Path, disk_format: str
    ) -> None:
        if volume_id in self.volumes:
            return
        data = image_file.read_bytes() if image_file.is_file() else b""
        self._add(volume_id, size_gb, data, f"image:{disk_format}")

    def delete_volume(self, volume_id: str) -> bool:
        self._hook("delete_volume", volume_id)
        with self._lock:
            return self.volumes.pop(volume_id, None) is not None

    def extend_volume(self, volume_id: str, new_size_gb: int) -> None:
        valid_size(new_size_gb, "new size")
        self._hook("extend_volume", volume_id)
        with self._lock:
            vol = self.volumes.get(volume_id)
            if vol is None:
                raise VolumeNotFound(f"volume {volume_id} does not exist")
            vol.size_gb = max(vol.size_gb, new_size_gb)

    # -- snapshots -------------------------------------------------------------------------------

    def snapshot_exists(self, snapshot_id: str) -> bool:
        return snapshot_id in self.snapshots

    def create_snapshot(self, snapshot_id: str, volume_id: str) -> None:
        if snapshot_id in self.snapshots:
            return
        valid_id(snapshot_id, "snapshot id")
        self._hook("create_snapshot", snapshot_id)
        with self._lock:
            vol = self.volumes.get(volume_id)
            if vol is None:
                raise VolumeNotFound(f"volume {volume_id} does not exist")
            self.snapshots[snapshot_id] = FakeVolume(vol.size_gb, vol.data, f"volume:{volume_id}")

    def delete_snapshot(self, snapshot_id: str) -> bool:
        self._hook("delete_snapshot", snapshot_id)
        with self._lock:
            return self.snapshots.pop(snapshot_id, None) is not None

    # -- capacity --------------------------------------------------------------------------------

    def capacity(self) -> Capacity:
        with self._lock:
            provisioned = float(
                sum(v.size_gb for v in self.volumes.values())
                + sum(s.size_gb for s in self.snapshots.values())
            )
            used = float(sum(v.size_gb for v in self.volumes.values()))
        return Capacity(self.total_gb, max(0.0, self.total_gb - used), provisioned)

    # -- exports ---------------------------------------------------------------------------------

    def start_export(self, volume_id: str, attachment_id: str) -> Export:
        valid_id(attachment_id, "attachment id")
        with self._lock:
            if volume_id not in self.volumes:
                raise VolumeNotFound(f"volume {volume_id} does not exist")
            export = self.exports.get(attachment_id)
            if export is not None:
                if export.volume_id != volume_id:
                    raise DriverError(
                        f"attachment {attachment_id} already exports volume {export.volume_id}"
                    )
                return export
            self._hook("start_export", attachment_id)
            used = {e.port for e in self.exports.values()}
            port = next((p for p in range(self.port_min, self.port_max + 1) if p not in used), None)
            if port is None:
                raise DriverError(f"no free NBD port in {self.port_min}-{self.port_max}")
            export = Export(volume_id, attachment_id, self.address, port, export_name(volume_id))
            self.exports[attachment_id] = export
            return export

    def stop_export(self, attachment_id: str) -> bool:
        with self._lock:
            return self.exports.pop(attachment_id, None) is not None

    def list_exports(self) -> list[Export]:
        with self._lock:
            return list(self.exports.values())


class FakeImageFetcher:
    """Stands in for :class:`agents.volume.file.ImageDownloader`: no HTTP; the metadata is
    ``images[image_id]`` when a test set it, else just the id; ``fail`` makes fetches raise."""

    def __init__(self) -> None:
        self.images: dict[str, dict[str, Any]] = {}
        self.fail: str | None = None
        self.fetched: list[str] = []

    @contextlib.contextmanager
    def fetch(self, source: dict[str, Any]) -> Iterator[tuple[Path, dict[str, Any]]]:
        image_id = valid_id(source.get("image_id"), "image id")
        self.fetched.append(image_id)
        if self.fail:
            raise DriverError(self.fail)
        yield Path("/nonexistent/fake-image"), dict(self.images.get(image_id, {"id": image_id}))

    def close(self) -> None:
        pass
