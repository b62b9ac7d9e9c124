"""Volumes: ``/v3/{project_id}/volumes`` (create, list, ``detail``, show, update, delete) and
their ``metadata`` sub-resource. Creating places the volume (:mod:`control.volume.scheduler`) and
casts ``create_volume`` to its host's agent; the answer is 202 with status ``creating`` (or
``error`` when no host qualifies, as Cinder). The agent reports the outcome on topic ``volume``.
"""

from __future__ import annotations

import logging
import math
import uuid
from typing import Any

import requests
from flask import Response, request
from sqlalchemy import select

from control.common import catalog, db, errors, rpc
from control.volume import models, quota, scheduler
from control.volume.api import common
from control.volume.api.common import enforce, respond, target

LOG = logging.getLogger("cirrus.volume")

bp = common.project_blueprint("volume_volumes")

_NULLABLE_STRING = {"type": ["string", "null"], "maxLength": 255}
_SIZE = {
    "anyOf": [
        {"type": "integer", "minimum": 1, "maximum": 2**31 - 1},
        {"type": "string", "pattern": "^[0-9]+$"},
        {"type": "null"},
    ]
}
CREATE = {
    "type": "object",
    "properties": {
        "size": _SIZE,
        "name": _NULLABLE_STRING,
        "display_name": _NULLABLE_STRING,
        "description": {"type": ["string", "null"], "maxLength": 255},
        "display_description": {"type": ["string", "null"], "maxLength": 255},
        "metadata": {"type": ["object", "null"]},
        "volume_type": {"type": ["string", "null"], "maxLength": 255},
        "availability_zone": _NULLABLE_STRING,
        "snapshot_id": {"type": ["string", "null"], "maxLength": 36},
        "source_volid": {"type": ["string", "null"], "maxLength": 36},
        "imageRef": {"type": ["string", "null"], "maxLength": 36},
        "image_id": {"type": ["string", "null"], "maxLength": 36},
        "multiattach": {"type": ["boolean", "null"]},
    },
}
UPDATE = {
    "type": "object",
    "properties": {
        "name": _NULLABLE_STRING,
        "display_name": _NULLABLE_STRING,
        "description": {"type": ["string", "null"], "maxLength": 255},
        "display_description": {"type": ["string", "null"], "maxLength": 255},
        "metadata": {"type": ["object", "null"]},
    },
}

IMAGE_PROPERTIES = (
    "image_id",
    "image_name",
    "disk_format",
    "container_format",
    "min_disk",
    "min_ram",
    "size",
    "checksum",
    "kernel_id",
    "ramdisk_id",
)


def _metadata_filter(query: Any, value: str) -> Any:
    for key, item in common.parse_dict_arg(value, "metadata").items():
        query = query.where(
            select(models.VolumeMetadata.volume_id)
            .where(
                models.VolumeMetadata.volume_id == models.Volume.id,
                models.VolumeMetadata.key == str(key),
                models.VolumeMetadata.value == str(item),
            )
            .exists()
        )
    return query


def _bootable_filter(query: Any, value: str) -> Any:
    return query.where(models.Volume.bootable.is_(common.parse_bool(value, "bootable")))


def _type_filter(query: Any, value: str) -> Any:
    return query.where(models.Volume.volume_type_id == common.find_type(value).id)


LISTING = common.Listing(
    "volumes",
    models.Volume,
    {
        "id": models.Volume.id,
        "name": models.Volume.name,
        "status": models.Volume.status,
        "size": models.Volume.size,
        "availability_zone": models.Volume.availability_zone,
        "created_at": models.Volume.created_at,
        "updated_at": models.Volume.updated_at,
        "host": models.Volume.host,
    },
    special={
        "metadata": _metadata_filter,
        "bootable": _bootable_filter,
        "volume_type": _type_filter,
        "display_name": lambda q, v: q.where(models.Volume.name == v),
    },
)


# -- the image service ---------------------------------------------------------------------------


def _image_api_url() -> str:
    settings = common.settings()
    if settings.image_api_url:
        return settings.image_api_url.rstrip("/")
    token = request.headers.get("X-Auth-Token", "")
    try:
        return catalog.public_endpoint(settings.auth_url, token, "image")
    except catalog.CatalogError as exc:
        raise errors.ServiceUnavailable(f"Cannot find the image service: {exc}") from None


def check_image(image_id: str) -> tuple[dict[str, Any], str]:
    """The image (as the user sees it through the image API) and the image API's URL."""
    try:
        uuid.UUID(image_id)
    except ValueError:
        raise errors.BadRequest(
            f"Invalid image identifier or unable to access requested image: {image_id}."
        ) from None
    base = _image_api_url()
    try:
        response = requests.get(
            f"{base}/v2/images/{image_id}",
            headers={"X-Auth-Token": request.headers.get("X-Auth-Token", "")},
            timeout=10,
        )
    except requests.RequestException as exc:
        raise errors.ServiceUnavailable(f"The image service did not answer: {exc}") from None
    if response.status_code == 404:
        raise errors.BadRequest(f"Image {image_id} could not be found.")
    if response.status_code != 200:
        raise errors.BadRequest(
            f"Image {image_id} cannot be used: the image service answered {response.status_code}."
        )
    image: dict[str, Any] = response.json()
    if image.get("status") != "active":
        raise errors.BadRequest(f"Image {image_id} is not active.")
    return image, base


def image_metadata(image: dict[str, Any]) -> dict[str, Any]:
    values = {
        "image_id": image.get("id"),
        "image_name": image.get("name"),
        **{key: image.get(key) for key in IMAGE_PROPERTIES[2:]},
    }
    return {key: value for key, value in values.items() if value is not None}


# -- create --------------------------------------------------------------------------------------


def _size(body: dict[str, Any]) -> int | None:
    raw = body.get("size")
    if raw is None:
        return None
    size = common.parse_int(raw, "size")
    if size < 1:
        raise errors.BadRequest(
            f"Invalid input for field/attribute size. Value: {raw}. {raw} is less than the "
            "minimum of 1"
        )
    return size


def _zone(requested: str | None) -> str:
    settings = common.settings()
    zone = requested or settings.default_availability_zone
    known = {settings.default_availability_zone}
    known.update(
        db.session().scalars(
            select(models.Service.availability_zone).where(
                models.Service.binary == scheduler.BINARY
            )
        )
    )
    if zone not in known:
        raise errors.BadRequest(f"Availability zone '{zone}' is invalid.")
    return zone


def _cast_create(volume: models.Volume, source: dict[str, Any]) -> None:
    """Ask the volume's host to make it; a broker failure leaves it ``error``."""
    assert volume.host is not None
    try:
        common.agents().create_volume(
            common.context(), volume.host, {"id": volume.id, "size": volume.size}, source
        )
    except rpc.RPCError as exc:
        LOG.error("could not ask %s to create volume %s: %s", volume.host, volume.id, exc)
        sess = db.session()
        sess.refresh(volume)
        volume.status = "error"
        volume.last_error = f"could not reach volume host {volume.host}: {exc}"
        db.commit()


@bp.post("/volumes")
def create() -> Response:
    sess = common.write_session()
    body = common.body_of("volume", CREATE)
    project = common.project_id()
    enforce("volume:create", target(project))
    settings = common.settings()
    size = _size(body)
    metadata = common.metadata_value(body.get("metadata"))
    name = body.get("name") or body.get("display_name")
    description = body.get("description") or body.get("display_description")
    snapshot_id = body.get("snapshot_id")
    source_volid = body.get("source_volid")
    image_ref = body.get("imageRef") or body.get("image_id")
    if len([x for x in (snapshot_id, source_volid, image_ref) if x]) > 1:
        raise errors.BadRequest(
            "Invalid input received: only one of snapshot_id, source_volid and imageRef may be "
            "given."
        )
    vtype: models.VolumeType | None = None
    if body.get("volume_type"):
        vtype = common.find_type(str(body["volume_type"]))
    source: dict[str, Any] = {"type": "blank"}
    source_host: str | None = None
    zone_request = body.get("availability_zone")
    image_meta: dict[str, Any] | None = None
    if snapshot_id:
        snap = common.find_snapshot(snapshot_id)
        if snap.status != "available":
            raise errors.BadRequest(
                f"Invalid snapshot: Originating snapshot {snap.id} status must be 'available', "
                f"but it is '{snap.status}'."
            )
        size = size or snap.size
        if size < snap.size:
            raise errors.BadRequest(
                f"Invalid input received: Volume size '{size}'GB cannot be smaller than the "
                f"snapshot size {snap.size}GB. They must be >= original snapshot size."
            )
        origin = sess.get(models.Volume, snap.volume_id)
        assert origin is not None
        vtype = vtype or origin.volume_type
        source = {"type": "snapshot", "snapshot_id": snap.id}
        source_host = origin.host
        zone_request = zone_request or origin.availability_zone
        image_meta = origin.image_metadata
    elif source_volid:
        origin = common.find_volume(source_volid)
        if origin.status not in ("available", "in-use"):
            raise errors.BadRequest(
                f"Invalid volume: Source volume {origin.id} status must be available or in-use, "
                f"but it is {origin.status}."
            )
        size = size or origin.size
        if size < origin.size:
            raise errors.BadRequest(
                f"Invalid input received: Volume size '{size}'GB cannot be smaller than the "
                f"source volume size {origin.size}GB. They must be >= original volume size."
            )
        vtype = vtype or origin.volume_type
        source = {"type": "volume", "volume_id": origin.id}
        source_host = origin.host
        zone_request = zone_request or origin.availability_zone
        image_meta = origin.image_metadata
    elif image_ref:
        enforce("volume:create_from_image", target(project))
        image, image_api = check_image(str(image_ref))
        image_gb = math.ceil(int(image.get("size") or 0) / 1024**3)
        min_disk = int(image.get("min_disk") or 0)
        if size is None:
            raise errors.BadRequest("Invalid input received: size is required with imageRef.")
        if size < max(image_gb, min_disk):
            raise errors.BadRequest(
                f"Invalid input received: Size of specified image {image_gb}GB (min_disk "
                f"{min_disk}GB) is larger than volume size {size}GB."
            )
        source = {
            "type": "image",
            "image_id": image["id"],
            "image_api_url": image_api,
            "token": request.headers.get("X-Auth-Token", ""),
            "disk_format": image.get("disk_format"),
        }
        image_meta = image_metadata(image)
    if size is None:
        raise errors.BadRequest("Invalid input for field/attribute size: size is required.")
    vtype = vtype or common.find_type(settings.default_volume_type)
    zone = _zone(zone_request)
    quota.lock_project(sess, db.database().engine, project)
    quota.check(sess, project, settings.quota_defaults, volumes=1, gigabytes=size, size=size)
    volume = models.Volume(
        id=str(uuid.uuid4()),
        project_id=project,
        user_id=common.context().user_id or "",
        name=name,
        description=description,
        size=size,
        status="creating",
        attach_status="detached",
        availability_zone=zone,
        volume_type=vtype,
        volume_type_id=vtype.id,
        snapshot_id=snapshot_id or None,
        source_volid=source_volid or None,
        image_id=str(image_ref) if image_ref else None,
        bootable=bool(image_ref) or bool(image_meta),
        image_metadata=image_meta,
        updated_at=None,
    )
    volume.set_metadata(metadata)
    sess.add(volume)
    sess.flush()
    if source_host is not None:
        # A copy is made where its source lives.
        if scheduler.host_is_up(sess, source_host, settings.service_down_time):
            volume.host = source_host
        else:
            volume.status = "error"
            volume.last_error = f"The volume host {source_host} of the source is down."
    else:
        placement = scheduler.schedule(
            sess,
            volume,
            (vtype.extra_specs or {}).get("volume_backend_name"),
            settings.service_down_time,
            settings.max_over_subscription_ratio,
        )
        if placement.host is None:
            LOG.warning("volume %s: %s", volume.id, placement.reason)
            volume.status = "error"
            volume.last_error = placement.reason
        volume.host = placement.host
    db.commit()
    if volume.host is not None and volume.status == "creating":
        _cast_create(volume, source)
    return respond({"volume": common.volume_body(volume)}, 202)


# -- read ----------------------------------------------------------------------------------------


def _list(detail: bool) -> Response:
    enforce("volume:get_all", target())
    query = common.visible(select(models.Volume), models.Volume)
    if detail:
        return common.list_response(LISTING, query, common.volume_body, common.find_volume)
    from control.volume import render

    return common.list_response(
        LISTING,
        query,
        lambda v: render.volume_summary(v, common.base_url()),
        common.find_volume,
    )


@bp.get("/volumes")
def index() -> Response:
    return _list(detail=False)


@bp.get("/volumes/detail")
def detail() -> Response:
    return _list(detail=True)


@bp.get("/volumes/<volume_id>")
def show(volume_id: str) -> Response:
    volume = common.find_volume(volume_id)
    enforce("volume:get", target(volume.project_id))
    return respond({"volume": common.volume_body(volume)})


@bp.put("/volumes/<volume_id>")
def update(volume_id: str) -> Response:
    body = common.body_of("volume", UPDATE)
    volume = common.find_volume(volume_id, lock=True)
    enforce("volume:update", target(volume.project_id))
    common.update_names(volume, body, "volume")
    if "metadata" in body:
        volume.set_metadata(common.metadata_value(body["metadata"]))
    volume.touch()
    db.commit()
    return respond({"volume": common.volume_body(volume)})


# -- delete --------------------------------------------------------------------------------------

DELETABLE = ("available", "error", "error_restoring", "error_extending", "error_deleting")


def _refuse_delete(volume: models.Volume, snapshots: list[models.Snapshot], cascade: bool) -> None:
    attached = [a for a in volume.attachments if a.instance_uuid]
    if volume.status in ("in-use", "attaching", "detaching") or attached:
        servers = ", ".join(sorted({a.instance_uuid or "" for a in attached})) or "none yet"
        raise errors.BadRequest(
            f"Invalid volume: Volume {volume.id} is {volume.status}, attached to server "
            f"{servers}: detach it first."
        )
    if volume.status not in DELETABLE:
        raise errors.BadRequest(
            f"Invalid volume: Volume {volume.id} status must be available or error or "
            f"error_restoring or error_extending or error_managing and must not be migrating, "
            f"attached, belong to a group, have snapshots or be disassociated from snapshots "
            f"after volume transfer; its status is {volume.status}: wait until it settles."
        )
    if snapshots and not cascade:
        raise errors.BadRequest(
            f"Invalid volume: Volume {volume.id} has {len(snapshots)} dependent snapshot(s) "
            f"({', '.join(s.id for s in snapshots)}): delete them first, or delete the volume "
            "with cascade=true."
        )
    busy = [s.id for s in snapshots if s.status not in ("available", "error", "error_deleting")]
    if busy:
        raise errors.BadRequest(
            f"Invalid volume: Volume {volume.id} has snapshots that are not available or error "
            f"({', '.join(busy)}): wait until they settle."
        )


@bp.delete("/volumes/<volume_id>")
def delete(volume_id: str) -> Response:
    sess = common.write_session()
    volume = common.find_volume(volume_id, lock=True)
    enforce("volume:delete", target(volume.project_id))
    cascade = common.parse_bool(request.args.get("cascade", "false"), "cascade")
    snapshots = list(
        sess.scalars(
            select(models.Snapshot).where(models.Snapshot.volume_id == volume.id).with_for_update()
        )
    )
    _refuse_delete(volume, snapshots, cascade)
    if volume.host is None:
        # Never placed: nothing exists on any host.
        sess.delete(volume)
        db.commit()
        return Response(status=202)
    for snap in snapshots:
        snap.status = "deleting"
        snap.touch()
    volume.status = "deleting"
    volume.touch()
    db.commit()
    try:
        api = common.agents()
        for snap in snapshots:
            api.delete_snapshot(common.context(), volume.host, snap.id)
        api.delete_volume(common.context(), volume.host, volume.id)
    except rpc.RPCError as exc:
        LOG.error("could not ask %s to delete volume %s: %s", volume.host, volume.id, exc)
        volume.status = "error_deleting"
        volume.last_error = f"could not reach volume host {volume.host}: {exc}"
        db.commit()
        raise errors.ServiceUnavailable(
            f"The volume host {volume.host} could not be reached: {exc}"
        ) from None
    return Response(status=202)


# -- metadata ------------------------------------------------------------------------------------

META_BODY = {"type": "object"}


@bp.get("/volumes/<volume_id>/metadata")
def metadata_index(volume_id: str) -> Response:
    volume = common.find_volume(volume_id)
    enforce("volume:get_volume_metadata", target(volume.project_id))
    return respond({"metadata": volume.metadata_dict()})


@bp.post("/volumes/<volume_id>/metadata")
def metadata_create(volume_id: str) -> Response:
    """Merge the given items into the metadata."""
    values = common.metadata_value(common.body_of("metadata", META_BODY))
    volume = common.find_volume(volume_id, lock=True)
    enforce("volume:create_volume_metadata", target(volume.project_id))
    volume.set_metadata({**volume.metadata_dict(), **values})
    volume.touch()
    db.commit()
    return respond({"metadata": volume.metadata_dict()})


@bp.put("/volumes/<volume_id>/metadata")
def metadata_replace(volume_id: str) -> Response:
    values = common.metadata_value(common.body_of("metadata", META_BODY))
    volume = common.find_volume(volume_id, lock=True)
    enforce("volume:update_volume_metadata", target(volume.project_id))
    volume.set_metadata(values)
    volume.touch()
    db.commit()
    return respond({"metadata": volume.metadata_dict()})


@bp.get("/volumes/<volume_id>/metadata/<key>")
def metadata_show(volume_id: str, key: str) -> Response:
    volume = common.find_volume(volume_id)
    enforce("volume:get_volume_metadata", target(volume.project_id))
    values = volume.metadata_dict()
    if key not in values:
        raise errors.NotFound(f"Volume {volume_id} has no metadata with key {key}.")
    return respond({"meta": {key: values[key]}})


@bp.put("/volumes/<volume_id>/metadata/<key>")
def metadata_set(volume_id: str, key: str) -> Response:
    values = common.metadata_value(common.body_of("meta", META_BODY), "meta")
    if list(values) != [key]:
        raise errors.BadRequest(
            f"Request body and URI mismatch: 'meta' must hold only the key {key}."
        )
    volume = common.find_volume(volume_id, lock=True)
    enforce("volume:update_volume_metadata", target(volume.project_id))
    volume.set_metadata({**volume.metadata_dict(), **values})
    volume.touch()
    db.commit()
    return respond({"meta": values})


@bp.delete("/volumes/<volume_id>/metadata/<key>")
def metadata_delete(volume_id: str, key: str) -> Response:
    volume = common.find_volume(volume_id, lock=True)
    enforce("volume:delete_volume_metadata", target(volume.project_id))
    values = volume.metadata_dict()
    if key not in values:
        raise errors.NotFound(f"Volume {volume_id} has no metadata with key {key}.")
    del values[key]
    volume.set_metadata(values)
    volume.touch()
    db.commit()
    return Response(status=200)
