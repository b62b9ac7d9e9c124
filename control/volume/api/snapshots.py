"""Snapshots: ``/v3/{project_id}/snapshots`` (create, list, ``detail``, show, update, delete) and
their ``metadata``. A snapshot is a full copy made by the agent of the volume's host; an in-use
volume needs ``force: true``. Snapshots count in the ``snapshots`` and ``gigabytes`` quotas.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from flask import Blueprint, Response
from sqlalchemy import select

from control.common import db, errors, rpc
from control.volume import models, quota, render
from control.volume.api import common
from control.volume.api.common import enforce, respond, target

LOG = logging.getLogger("cirrus.volume")

bp: Blueprint = common.project_blueprint("volume_snapshots")

_NULLABLE_STRING = {"type": ["string", "null"], "maxLength": 255}
CREATE = {
    "type": "object",
    "properties": {
        "volume_id": {"type": "string", "minLength": 1, "maxLength": 36},
        "name": _NULLABLE_STRING,
        "display_name": _NULLABLE_STRING,
        "description": _NULLABLE_STRING,
        "display_description": _NULLABLE_STRING,
        "force": {"type": ["boolean", "string", "null"]},
        "metadata": {"type": ["object", "null"]},
    },
    "required": ["volume_id"],
}
UPDATE = {
    "type": "object",
    "properties": {
        "name": _NULLABLE_STRING,
        "display_name": _NULLABLE_STRING,
        "description": _NULLABLE_STRING,
        "display_description": _NULLABLE_STRING,
    },
}

LISTING = common.Listing(
    "snapshots",
    models.Snapshot,
    {
        "id": models.Snapshot.id,
        "name": models.Snapshot.name,
        "status": models.Snapshot.status,
        "volume_id": models.Snapshot.volume_id,
        "size": models.Snapshot.size,
        "created_at": models.Snapshot.created_at,
        "updated_at": models.Snapshot.updated_at,
    },
    special={"display_name": lambda q, v: q.where(models.Snapshot.name == v)},
)


def _volume_host(snap: models.Snapshot) -> str | None:
    return db.session().scalar(select(models.Volume.host).where(models.Volume.id == snap.volume_id))


@bp.post("/snapshots")
def create() -> Response:
    sess = common.write_session()
    body = common.body_of("snapshot", CREATE)
    project = common.project_id()
    enforce("volume:create_snapshot", target(project))
    force = common.parse_bool(body.get("force") or False, "force")
    metadata = common.metadata_value(body.get("metadata"))
    volume = common.find_volume(body["volume_id"], lock=True)
    if volume.project_id != project and not common.is_admin():
        raise common.volume_not_found(volume.id)
    if volume.status == "in-use" and not force:
        raise errors.BadRequest(
            f"Invalid volume: Volume {volume.id} is in-use: give force=true to snapshot an "
            "attached volume (its data is copied as it is now)."
        )
    if volume.status not in ("available", "in-use"):
        raise common.volume_status_error(volume, "create a snapshot", "available or in-use")
    if volume.host is None:
        raise errors.BadRequest(f"Invalid volume: Volume {volume.id} has no host.")
    quota.lock_project(sess, db.database().engine, volume.project_id)
    quota.check(
        sess,
        volume.project_id,
        common.settings().quota_defaults,
        snapshots=1,
        gigabytes=volume.size,
    )
    snap = models.Snapshot(
        id=str(uuid.uuid4()),
        project_id=volume.project_id,
        user_id=common.context().user_id or "",
        volume_id=volume.id,
        name=body.get("name") or body.get("display_name"),
        description=body.get("description") or body.get("display_description"),
        size=volume.size,
        status="creating",
        meta=metadata,
    )
    sess.add(snap)
    db.commit()
    try:
        common.agents().create_snapshot(
            common.context(),
            volume.host,
            {"id": snap.id, "volume_id": volume.id, "size": snap.size},
            force,
        )
    except rpc.RPCError as exc:
        LOG.error("could not ask %s to snapshot volume %s: %s", volume.host, volume.id, exc)
        snap.status = "error"
        snap.last_error = f"could not reach volume host {volume.host}: {exc}"
        db.commit()
    return respond({"snapshot": render.snapshot(snap)}, 202)


def _list() -> Response:
    enforce("volume:get_all_snapshots", target())
    query = common.visible(select(models.Snapshot), models.Snapshot)
    return common.list_response(LISTING, query, render.snapshot, common.find_snapshot)


@bp.get("/snapshots")
def index() -> Response:
    return _list()


@bp.get("/snapshots/detail")
def detail() -> Response:
    return _list()


@bp.get("/snapshots/<snapshot_id>")
def show(snapshot_id: str) -> Response:
    snap = common.find_snapshot(snapshot_id)
    enforce("volume:get_snapshot", target(snap.project_id))
    return respond({"snapshot": render.snapshot(snap)})


@bp.put("/snapshots/<snapshot_id>")
def update(snapshot_id: str) -> Response:
    body = common.body_of("snapshot", UPDATE)
    snap = common.find_snapshot(snapshot_id, lock=True)
    enforce("volume:update_snapshot", target(snap.project_id))
    common.update_names(snap, body, "snapshot")
    snap.touch()
    db.commit()
    return respond({"snapshot": render.snapshot(snap)})


@bp.delete("/snapshots/<snapshot_id>")
def delete(snapshot_id: str) -> Response:
    sess = db.session()
    snap = common.find_snapshot(snapshot_id, lock=True)
    enforce("volume:delete_snapshot", target(snap.project_id))
    if snap.status not in ("available", "error", "error_deleting"):
        raise errors.BadRequest(
            f"Invalid snapshot: Snapshot {snap.id} status must be available or error, but it "
            f"is {snap.status}: wait until it settles."
        )
    host = _volume_host(snap)
    if host is None:
        sess.delete(snap)
        db.commit()
        return Response(status=202)
    snap.status = "deleting"
    snap.touch()
    db.commit()
    try:
        common.agents().delete_snapshot(common.context(), host, snap.id)
    except rpc.RPCError as exc:
        snap.status = "error_deleting"
        snap.last_error = f"could not reach volume host {host}: {exc}"
        db.commit()
        raise errors.ServiceUnavailable(
            f"The volume host {host} could not be reached: {exc}"
        ) from None
    return Response(status=202)


# -- metadata ------------------------------------------------------------------------------------


@bp.get("/snapshots/<snapshot_id>/metadata")
def metadata_index(snapshot_id: str) -> Response:
    snap = common.find_snapshot(snapshot_id)
    enforce("volume:snapshot_metadata", target(snap.project_id))
    return respond({"metadata": dict(snap.meta or {})})


def _write_metadata(snapshot_id: str, replace: bool) -> Response:
    values = common.metadata_value(common.body_of("metadata", {"type": "object"}))
    snap = common.find_snapshot(snapshot_id, lock=True)
    enforce("volume:snapshot_metadata", target(snap.project_id))
    merged: dict[str, Any] = {} if replace else dict(snap.meta or {})
    merged.update(values)
    snap.meta = merged
    snap.touch()
    db.commit()
    return respond({"metadata": merged})


@bp.post("/snapshots/<snapshot_id>/metadata")
def metadata_create(snapshot_id: str) -> Response:
    return _write_metadata(snapshot_id, replace=False)


@bp.put("/snapshots/<snapshot_id>/metadata")
def metadata_replace(snapshot_id: str) -> Response:
    return _write_metadata(snapshot_id, replace=True)


@bp.delete("/snapshots/<snapshot_id>/metadata/<key>")
def metadata_delete(snapshot_id: str, key: str) -> Response:
    snap = common.find_snapshot(snapshot_id, lock=True)
    enforce("volume:snapshot_metadata", target(snap.project_id))
    values = dict(snap.meta or {})
    if key not in values:
        raise errors.NotFound(f"Snapshot {snapshot_id} has no metadata with key {key}.")
    del values[key]
    snap.meta = values
    snap.touch()
    db.commit()
    return Response(status=200)
