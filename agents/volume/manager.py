"""The volume agent's RPC endpoint (topic ``volume.<host>``) and its loop.

The endpoint has exactly the methods of docs/block-storage-contract.md: the casts
``create_volume``, ``delete_volume``, ``extend_volume``, ``create_snapshot``,
``delete_snapshot`` report their outcome through the ``volume`` topic (``volume_update``,
``volume_deleted``, ``snapshot_update``, ``snapshot_deleted``); the calls
``initialize_connection`` and ``terminate_connection`` answer at once.

Every method is idempotent by id (a redelivered cast finds the work done and reports the same
outcome), and operations on one volume or snapshot are serialised by a per-id lock, while
different volumes proceed in parallel (the RPC server runs several worker threads: a long image
download does not hold up an attach).

The loop: at start, adopt the exports that survived (the driver's ``start``) and reconcile with
``get_host_volumes`` (retried until the volume RPC service answers), after the first
``report_state``; ``report_state`` goes every ``report_interval`` seconds with the backend's
capacity. Reconciliation:

- ``creating`` whose data exists: ``available`` (the outcome was lost); without data: nothing
  (the unacknowledged cast is redelivered by the broker and creates it);
- ``deleting``: delete again; ``extending``: ``available`` with the size the data has;
- a volume the service knows but whose data is missing, and data the service does not know:
  logged, never changed (a wrong ``volumes_dir`` must not destroy anything).

Collaborators come in: ``api`` has the methods of :class:`agents.volume.rpcapi.VolumeRPCAPI`,
``images`` fetches image files (:class:`agents.volume.file.ImageDownloader`).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol, TypeVar

from agents.volume.driver import DriverError, VolumeDriver, VolumeNotFound, valid_id, valid_size
from agents.volume.rpcapi import BINARY
from control.common.context import RequestContext

LOG = logging.getLogger("cirrus.volume.manager")

T = TypeVar("T")

REPORT_ATTEMPTS = 3
IMAGE_METADATA_KEYS = (
    "image_id",
    "image_name",
    "checksum",
    "container_format",
    "disk_format",
    "min_disk",
    "min_ram",
    "size",
)


class VolumeRPC(Protocol):
    def report_state(
        self,
        ctxt: RequestContext,
        host: str,
        binary: str,
        availability_zone: str,
        capabilities: dict[str, Any],
    ) -> dict[str, Any]: ...

    def volume_update(
        self,
        ctxt: RequestContext,
        volume_id: str,
        updates: dict[str, Any],
        message: str | None = None,
    ) -> bool: ...

    def volume_deleted(self, ctxt: RequestContext, volume_id: str) -> bool: ...

    def snapshot_update(
        self,
        ctxt: RequestContext,
        snapshot_id: str,
        updates: dict[str, Any],
        message: str | None = None,
    ) -> bool: ...

    def snapshot_deleted(self, ctxt: RequestContext, snapshot_id: str) -> bool: ...

    def get_host_volumes(self, ctxt: RequestContext, host: str) -> dict[str, dict[str, Any]]: ...


class ImageFetcher(Protocol):
    def fetch(
        self, source: dict[str, Any]
    ) -> contextlib.AbstractContextManager[tuple[Path, dict[str, Any]]]: ...

    def close(self) -> None: ...


def image_metadata(source: dict[str, Any], meta: dict[str, Any]) -> dict[str, str]:
    """Cinder's ``volume_image_metadata`` (string values) of a volume made from an image."""
    values = {
        "image_id": source.get("image_id"),
        "image_name": meta.get("name"),
        "checksum": meta.get("checksum"),
        "container_format": meta.get("container_format"),
        "disk_format": source.get("disk_format") or meta.get("disk_format"),
        "min_disk": meta.get("min_disk"),
        "min_ram": meta.get("min_ram"),
        "size": meta.get("size"),
    }
    return {k: str(v) for k in IMAGE_METADATA_KEYS if (v := values.get(k)) is not None}


class VolumeManager:
    target_version = "1.0"

    def __init__(
        self,
        host: str,
        driver: VolumeDriver,
        api: VolumeRPC,
        images: ImageFetcher,
        backend_name: str = "file",
        availability_zone: str = "nova",
        report_interval: float = 10.0,
        retry_delay: float = 1.0,
    ) -> None:
        self.host = host
        self.driver = driver
        self.api = api
        self.images = images
        self.backend_name = backend_name
        self.availability_zone = availability_zone
        self.report_interval = report_interval
        self.retry_delay = retry_delay
        self.reconciled = threading.Event()
        self._locks: dict[str, list[Any]] = {}  # key -> [lock, holders and waiters]
        self._locks_guard = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _ctxt(self) -> RequestContext:
        return RequestContext(roles=["admin", "service"])

    @contextlib.contextmanager
    def _locked(self, key: str) -> Iterator[None]:
        """Serialise the work on one id; the lock is forgotten once nobody holds or wants it."""
        with self._locks_guard:
            entry = self._locks.setdefault(key, [threading.Lock(), 0])
            entry[1] += 1
        try:
            with entry[0]:
                yield
        finally:
            with self._locks_guard:
                entry[1] -= 1
                if entry[1] == 0:
                    del self._locks[key]

    def _report(self, what: str, func: Callable[..., T], *args: Any, **kwargs: Any) -> T | None:
        """Send an outcome, retried a few times; None (and an error logged) when it failed."""
        for attempt in range(1, REPORT_ATTEMPTS + 1):
            try:
                return func(self._ctxt(), *args, **kwargs)
            except Exception as exc:
                if attempt == REPORT_ATTEMPTS:
                    LOG.error("%s: not reported to the volume service: %s", what, exc)
                    return None
                LOG.warning("%s: report failed (%s), retrying", what, exc)
                time.sleep(self.retry_delay * attempt)
        return None

    # -- casts: volumes ---------------------------------------------------------------------------

    def create_volume(
        self, ctxt: RequestContext, volume: dict[str, Any], source: dict[str, Any] | None = None
    ) -> None:
        volume_id = valid_id(volume.get("id"))
        source = dict(source or {"type": "blank"})
        kind = source.get("type", "blank")
        with self._locked(volume_id):
            try:
                updates = self._create(volume_id, valid_size(volume.get("size")), kind, source)
            except Exception as exc:
                message = str(exc) if isinstance(exc, DriverError) else f"unexpected error: {exc}"
                if not isinstance(exc, DriverError):
                    LOG.exception("volume %s: create failed", volume_id)
                else:
                    LOG.warning("volume %s: create failed: %s", volume_id, message)
                self._report(
                    f"volume {volume_id} error",
                    self.api.volume_update,
                    volume_id,
                    {"status": "error"},
                    message,
                )
                return
        self._report(f"volume {volume_id} available", self.api.volume_update, volume_id, updates)

    def _create(
        self, volume_id: str, size: int, kind: str, source: dict[str, Any]
    ) -> dict[str, Any]:
        updates: dict[str, Any] = {"status": "available"}
        if kind == "blank":
            self.driver.create_volume(volume_id, size)
            updates["bootable"] = False
        elif kind == "snapshot":
            snapshot_id = valid_id(source.get("snapshot_id"), "snapshot id")
            self.driver.create_volume_from_snapshot(volume_id, size, snapshot_id)
        elif kind == "volume":
            source_id = valid_id(source.get("volume_id"), "source volume id")
            with self._locked(f"clone-source:{source_id}"):
                self.driver.create_volume_from_volume(volume_id, size, source_id)
        elif kind == "image":
            updates["bootable"] = True
            disk_format = str(source.get("disk_format") or "raw")
            if self.driver.volume_exists(volume_id):
                updates["volume_image_metadata"] = image_metadata(source, {})
            else:
                with self.images.fetch(source) as (path, meta):
                    self.driver.create_volume_from_image(volume_id, size, path, disk_format)
                updates["volume_image_metadata"] = image_metadata(source, meta)
        else:
            raise DriverError(f"unknown volume source type {kind!r}")
        return updates

    def delete_volume(self, ctxt: RequestContext, volume_id: str) -> None:
        volume_id = valid_id(volume_id)
        with self._locked(volume_id):
            try:
                self._delete(volume_id)
            except Exception as exc:
                LOG.warning("volume %s: delete failed: %s", volume_id, exc)
                self._report(
                    f"volume {volume_id} error_deleting",
                    self.api.volume_update,
                    volume_id,
                    {"status": "error_deleting"},
                    str(exc),
                )
                return
        self._report(f"volume {volume_id} deleted", self.api.volume_deleted, volume_id)

    def _delete(self, volume_id: str) -> None:
        stopped = self.driver.stop_volume_exports(volume_id)
        if stopped:
            LOG.info("volume %s: %d export(s) stopped before the delete", volume_id, stopped)
        if not self.driver.delete_volume(volume_id):
            LOG.info("volume %s: no data to delete (already gone)", volume_id)

    def extend_volume(self, ctxt: RequestContext, volume_id: str, new_size: int) -> None:
        volume_id = valid_id(volume_id)
        with self._locked(volume_id):
            try:
                self.driver.extend_volume(volume_id, valid_size(new_size, "new size"))
            except Exception as exc:
                LOG.warning("volume %s: extend to %s GiB failed: %s", volume_id, new_size, exc)
                self._report(
                    f"volume {volume_id} extend failed",
                    self.api.volume_update,
                    volume_id,
                    {"status": "available"},
                    f"extend to {new_size} GiB failed: {exc}",
                )
                return
        self._report(
            f"volume {volume_id} extended",
            self.api.volume_update,
            volume_id,
            {"status": "available", "size": new_size},
        )

    # -- casts: snapshots -------------------------------------------------------------------------

    def create_snapshot(
        self, ctxt: RequestContext, snapshot: dict[str, Any], force: bool = False
    ) -> None:
        snapshot_id = valid_id(snapshot.get("id"), "snapshot id")
        volume_id = valid_id(snapshot.get("volume_id"))
        with self._locked(f"snapshot:{snapshot_id}"), self._locked(f"clone-source:{volume_id}"):
            try:
                self.driver.create_snapshot(snapshot_id, volume_id)
            except Exception as exc:
                LOG.warning("snapshot %s: create failed: %s", snapshot_id, exc)
                self._report(
                    f"snapshot {snapshot_id} error",
                    self.api.snapshot_update,
                    snapshot_id,
                    {"status": "error"},
                    str(exc),
                )
                return
        self._report(
            f"snapshot {snapshot_id} available",
            self.api.snapshot_update,
            snapshot_id,
            {"status": "available"},
        )

    def delete_snapshot(self, ctxt: RequestContext, snapshot_id: str) -> None:
        snapshot_id = valid_id(snapshot_id, "snapshot id")
        with self._locked(f"snapshot:{snapshot_id}"):
            try:
                self.driver.delete_snapshot(snapshot_id)
            except Exception as exc:
                LOG.warning("snapshot %s: delete failed: %s", snapshot_id, exc)
                self._report(
                    f"snapshot {snapshot_id} error_deleting",
                    self.api.snapshot_update,
                    snapshot_id,
                    {"status": "error_deleting"},
                    str(exc),
                )
                return
        self._report(f"snapshot {snapshot_id} deleted", self.api.snapshot_deleted, snapshot_id)

    # -- calls: exports ---------------------------------------------------------------------------

    def initialize_connection(
        self,
        ctxt: RequestContext,
        volume_id: str,
        attachment_id: str,
        connector: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        volume_id = valid_id(volume_id)
        attachment_id = valid_id(attachment_id, "attachment id")
        with self._locked(volume_id):
            if not self.driver.volume_exists(volume_id):
                raise VolumeNotFound(f"volume {volume_id} does not exist on host {self.host}")
            export = self.driver.start_export(volume_id, attachment_id)
        LOG.info(
            "volume %s: connection for attachment %s (connector host %s): %s:%d",
            volume_id,
            attachment_id,
            (connector or {}).get("host"),
            export.host,
            export.port,
        )
        return export.connection_info()

    def terminate_connection(
        self, ctxt: RequestContext, volume_id: str, attachment_id: str
    ) -> None:
        attachment_id = valid_id(attachment_id, "attachment id")
        with self._locked(valid_id(volume_id)):
            if not self.driver.stop_export(attachment_id):
                LOG.info("volume %s: attachment %s had no export", volume_id, attachment_id)

    # -- state reports and reconciliation ---------------------------------------------------------

    def capabilities(self) -> dict[str, Any]:
        cap = self.driver.capacity()
        return {
            "backend_name": self.backend_name,
            "volume_format": self.driver.volume_format,
            "total_capacity_gb": float(cap.total_gb),
            "free_capacity_gb": float(cap.free_gb),
            "provisioned_capacity_gb": float(cap.provisioned_gb),
        }

    def report_state(self) -> dict[str, Any]:
        return self.api.report_state(
            self._ctxt(), self.host, BINARY, self.availability_zone, self.capabilities()
        )

    def reconcile(self) -> dict[str, str]:
        """Bring the volume service's view and the backend together (see the module doc);
        what was done per volume id."""
        known = self.api.get_host_volumes(self._ctxt(), self.host)
        done: dict[str, str] = {}
        for volume_id, info in sorted(known.items()):
            status = str((info or {}).get("status"))
            try:
                valid_id(volume_id)
                done[volume_id] = self._reconcile_one(volume_id, status)
            except Exception as exc:
                LOG.warning("volume %s (%s): not reconciled: %s", volume_id, status, exc)
                done[volume_id] = f"failed: {exc}"
        unknown = set(self.driver.list_volumes()) - set(known)
        for volume_id in sorted(unknown):
            LOG.warning(
                "volume %s has data on this host but the volume service does not know it "
                "(left alone)",
                volume_id,
            )
            done[volume_id] = "unknown to the volume service"
        return done

    def _reconcile_one(self, volume_id: str, status: str) -> str:
        with self._locked(volume_id):
            exists = self.driver.volume_exists(volume_id)
            if status == "creating":
                if not exists:
                    return "creating: waiting for the create to be redelivered"
                self._report(
                    f"volume {volume_id} available",
                    self.api.volume_update,
                    volume_id,
                    {"status": "available"},
                )
                return "available"
            if status == "deleting":
                self._delete(volume_id)
                self._report(f"volume {volume_id} deleted", self.api.volume_deleted, volume_id)
                return "deleted"
            if status == "extending":
                if not exists:
                    return "extending: no data"
                size = self.driver.volume_size(volume_id)
                self._report(
                    f"volume {volume_id} available",
                    self.api.volume_update,
                    volume_id,
                    {"status": "available", "size": size},
                )
                return "available"
            if not exists and status not in ("error", "error_deleting", "deleted"):
                LOG.error(
                    "volume %s is %s but has no data on this host (check volumes_dir)",
                    volume_id,
                    status,
                )
                return "missing"
            return "unchanged"

    # -- the loop ---------------------------------------------------------------------------------

    def start(self) -> None:
        self.driver.start()
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="volume-agent", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30)
        self.images.close()
        self.driver.close()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.report_state()
            except Exception as exc:
                LOG.warning("report_state failed: %s", exc)
            if not self.reconciled.is_set():
                try:
                    result = self.reconcile()
                    self.reconciled.set()
                    LOG.info("reconciled %d volume(s) with the volume service", len(result))
                except Exception as exc:
                    LOG.warning("reconciliation failed (retried): %s", exc)
            self._stop.wait(self.report_interval)
