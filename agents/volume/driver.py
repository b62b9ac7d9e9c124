"""The contract between the volume agent's manager and a storage backend.

The manager (``agents/volume/manager.py``) owns RPC, reporting outcomes on the ``volume`` topic,
image downloads and reconciliation; a driver only keeps volume and snapshot data and exports it.
Two drivers implement it: ``file`` (one disk file per volume or snapshot, handled with
``qemu-img``, exported with ``qemu-nbd``: :mod:`agents.volume.file`) and ``fake`` (in memory,
for unit and API tests: :mod:`agents.volume.fake`).

Rules every driver keeps:

- Methods are **idempotent** by id: creating a volume that exists, deleting one that is gone,
  starting an export that runs or stopping one that is stopped all succeed without doing
  anything. The manager calls them again after a crash or a redelivered RPC message.
- A create is atomic: either the volume (or snapshot) exists complete, or it does not exist at
  all (the file backend writes a temporary file and renames it).
- Failures raise :class:`DriverError` with a message an operator can act on; the manager copies
  it into the volume's last error.
- Sizes are whole GiB; capacities are floats in GiB.
- Required methods raise ``NotImplementedError`` here; optional ones have safe defaults.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

GiB = 1024**3

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$")


class DriverError(Exception):
    """A storage operation failed; the message is kept as the volume's last error."""

    rpc_expected = True  # the RPC server logs it as one line, not as a traceback


class VolumeNotFound(DriverError):
    pass


class SnapshotNotFound(DriverError):
    pass


def valid_id(value: Any, what: str = "volume id") -> str:
    """An id that is safe in a file name (``volume-<id>``): letters, digits, ``-`` and ``_``."""
    if not isinstance(value, str) or not _ID.match(value):
        raise DriverError(f"invalid {what} {value!r}")
    return value


def valid_size(value: Any, what: str = "size") -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise DriverError(f"invalid {what} {value!r}: a whole number of GiB, at least 1")
    return value


@dataclass(frozen=True)
class Capacity:
    total_gb: float
    free_gb: float
    provisioned_gb: float


@dataclass(frozen=True)
class Export:
    """One live export of a volume for one attachment (a ``qemu-nbd`` on the file backend)."""

    volume_id: str
    attachment_id: str
    host: str
    port: int
    export_name: str
    pid: int | None = None

    def connection_info(self) -> dict[str, Any]:
        """What ``initialize_connection`` answers (the contract's ``nbd`` connection info)."""
        return {
            "driver_volume_type": "nbd",
            "data": {
                "host": self.host,
                "port": self.port,
                "export_name": self.export_name,
                "volume_id": self.volume_id,
                "attachment_id": self.attachment_id,
            },
        }


class VolumeDriver:
    """The backend interface. ``volume_format`` is what the files (or fake records) hold."""

    name: ClassVar[str] = "base"
    volume_format: str = "raw"

    # -- life cycle ------------------------------------------------------------------------------

    def start(self) -> None:
        """Prepare (directories) and adopt what survived a restart (live exports). Optional."""

    def close(self) -> None:
        """Release what the process holds (never the exports: they outlive the agent)."""

    # -- volumes ---------------------------------------------------------------------------------

    def volume_exists(self, volume_id: str) -> bool:
        raise NotImplementedError

    def volume_size(self, volume_id: str) -> int:
        """The size the guest sees, in whole GiB (rounded up); :class:`VolumeNotFound`."""
        raise NotImplementedError

    def list_volumes(self) -> list[str]:
        """Ids of the volumes this backend holds."""
        raise NotImplementedError

    def create_volume(self, volume_id: str, size_gb: int) -> None:
        """A blank volume (zeroes, thin/sparse where the backend can)."""
        raise NotImplementedError

    def create_volume_from_snapshot(self, volume_id: str, size_gb: int, snapshot_id: str) -> None:
        """A copy of the snapshot's data, grown to ``size_gb`` (never smaller than it)."""
        raise NotImplementedError

    def create_volume_from_volume(self, volume_id: str, size_gb: int, source_id: str) -> None:
        """A copy of another volume (possibly attached: the copy is crash-consistent at best)."""
        raise NotImplementedError

    def create_volume_from_image(
        self, volume_id: str, size_gb: int, image_file: Path, disk_format: str
    ) -> None:
        """The image file (in ``disk_format``) converted into the volume, grown to ``size_gb``.
        An image larger than ``size_gb`` is refused with :class:`DriverError`."""
        raise NotImplementedError

    def delete_volume(self, volume_id: str) -> bool:
        """Remove the volume's data; False when there was none. The caller stops its exports
        first."""
        raise NotImplementedError

    def extend_volume(self, volume_id: str, new_size_gb: int) -> None:
        """Grow the volume to ``new_size_gb`` (no-op when already that large)."""
        raise NotImplementedError

    # -- snapshots -------------------------------------------------------------------------------

    def snapshot_exists(self, snapshot_id: str) -> bool:
        raise NotImplementedError

    def create_snapshot(self, snapshot_id: str, volume_id: str) -> None:
        """A full, independent copy of the volume's current data."""
        raise NotImplementedError

    def delete_snapshot(self, snapshot_id: str) -> bool:
        """False when the snapshot was already gone."""
        raise NotImplementedError

    # -- capacity --------------------------------------------------------------------------------

    def capacity(self) -> Capacity:
        raise NotImplementedError

    # -- exports ---------------------------------------------------------------------------------

    def start_export(self, volume_id: str, attachment_id: str) -> Export:
        """Serve the volume for this attachment; the running export when there is one."""
        raise NotImplementedError

    def stop_export(self, attachment_id: str) -> bool:
        """Stop the attachment's export; False when none ran."""
        raise NotImplementedError

    def list_exports(self) -> list[Export]:
        raise NotImplementedError

    def stop_volume_exports(self, volume_id: str) -> int:
        """Stop every export of a volume; how many were stopped."""
        stopped = 0
        for export in self.list_exports():
            if export.volume_id == volume_id and self.stop_export(export.attachment_id):
                stopped += 1
        return stopped
