"""The RPC contract between the volume agents and the control plane: :class:`VolumeEndpoint`,
served on topic ``volume`` by ``cirrus-volume-rpc`` (:mod:`control.volume.service`). The agents
hold no database credentials; they report here (client: ``agents/volume/rpcapi.py``).

Versions:
    1.0 - report_state, volume_update, volume_deleted, snapshot_update, snapshot_deleted,
          get_host_volumes
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from sqlalchemy import exc, select

from control.common.context import RequestContext
from control.common.db import Database, utcnow
from control.volume import models

LOG = logging.getLogger("cirrus.volume")

TOPIC = "volume"
VERSION = "1.0"

SNAPSHOT_STATUSES = ("creating", "available", "deleting", "error", "error_deleting")
VOLUME_UPDATES = ("status", "size", "bootable", "volume_image_metadata")


class VolumeEndpoint:
    """Served on topic ``volume``. Every method is idempotent: updates set absolute values, so a
    redelivered message is harmless."""

    target_version = VERSION

    def __init__(self, database: Database) -> None:
        self.database = database

    def report_state(
        self,
        ctxt: RequestContext,
        host: str,
        binary: str = "cinder-volume",
        availability_zone: str | None = None,
        capabilities: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Heartbeat of a volume host: create or refresh its service row."""
        caps = dict(capabilities or {})
        for _attempt in range(5):
            try:
                with self.database.transaction() as sess:
                    service = sess.scalars(
                        select(models.Service)
                        .where(models.Service.host == host, models.Service.binary == binary)
                        .with_for_update()
                    ).first()
                    now = utcnow()
                    if service is None:
                        service = models.Service(
                            id=str(uuid.uuid4()), host=host, binary=binary, created_at=now
                        )
                        sess.add(service)
                        LOG.info("volume service %s on %s registered", binary, host)
                    service.availability_zone = availability_zone or "nova"
                    service.backend_name = str(caps.get("backend_name") or "")
                    service.total_capacity_gb = float(caps.get("total_capacity_gb") or 0.0)
                    service.free_capacity_gb = float(caps.get("free_capacity_gb") or 0.0)
                    service.capabilities = caps
                    service.updated_at = now
                return {}
            except exc.IntegrityError:
                continue  # two first reports at once: the other made the row
        return {}

    def volume_update(
        self,
        ctxt: RequestContext,
        volume_id: str,
        updates: dict[str, Any],
        message: str | None = None,
    ) -> bool:
        """Apply the agent's outcome; ``False`` when the volume is gone."""
        with self.database.transaction() as sess:
            volume = sess.get(models.Volume, volume_id, with_for_update=True)
            if volume is None:
                LOG.info("volume_update for %s: no such volume", volume_id)
                return False
            unknown = set(updates) - set(VOLUME_UPDATES)
            if unknown:
                LOG.warning("volume_update for %s: ignoring %s", volume_id, sorted(unknown))
            status = updates.get("status")
            if status is not None:
                if status not in models.VOLUME_STATUSES:
                    LOG.warning("volume_update for %s: unknown status %r", volume_id, status)
                else:
                    if status == "available" and volume.launched_at is None:
                        volume.launched_at = utcnow()
                    # An extend ends with "available"; an attached volume stays in-use.
                    if status == "available" and any(
                        a.attach_status == "attached" for a in volume.attachments
                    ):
                        status = "in-use"
                    volume.status = status
            if "size" in updates and updates["size"] is not None:
                volume.size = int(updates["size"])
            if "bootable" in updates and updates["bootable"] is not None:
                volume.bootable = bool(updates["bootable"])
            if updates.get("volume_image_metadata"):
                merged = dict(volume.image_metadata or {})
                merged.update(updates["volume_image_metadata"])
                volume.image_metadata = merged
            if message:
                LOG.warning("volume %s on %s: %s", volume_id, volume.host, message)
                volume.last_error = message
            volume.touch()
            return True

    def volume_deleted(self, ctxt: RequestContext, volume_id: str) -> bool:
        """The agent removed the volume: remove its row (and its quota usage with it)."""
        with self.database.transaction() as sess:
            volume = sess.get(models.Volume, volume_id, with_for_update=True)
            if volume is None:
                return False
            sess.delete(volume)
            LOG.info("volume %s deleted on %s", volume_id, volume.host)
            return True

    def snapshot_update(
        self,
        ctxt: RequestContext,
        snapshot_id: str,
        updates: dict[str, Any],
        message: str | None = None,
    ) -> bool:
        with self.database.transaction() as sess:
            snap = sess.get(models.Snapshot, snapshot_id, with_for_update=True)
            if snap is None:
                return False
            status = updates.get("status")
            if status in SNAPSHOT_STATUSES:
                snap.status = status
            elif status is not None:
                LOG.warning("snapshot_update for %s: unknown status %r", snapshot_id, status)
            if message:
                LOG.warning("snapshot %s: %s", snapshot_id, message)
                snap.last_error = message
            snap.touch()
            return True

    def snapshot_deleted(self, ctxt: RequestContext, snapshot_id: str) -> bool:
        with self.database.transaction() as sess:
            snap = sess.get(models.Snapshot, snapshot_id, with_for_update=True)
            if snap is None:
                return False
            sess.delete(snap)
            return True

    def get_host_volumes(self, ctxt: RequestContext, host: str) -> dict[str, dict[str, Any]]:
        """The volumes the database places on ``host`` (the agent reconciles at start)."""
        with self.database.transaction() as sess:
            rows = sess.execute(
                select(models.Volume.id, models.Volume.status, models.Volume.size).where(
                    models.Volume.host == host
                )
            ).all()
            return {row.id: {"status": row.status, "size": row.size} for row in rows}
