"""How block storage resources look on the wire (Cinder v3 bodies at microversion 3.0), and
Cinder's error body ``{"badRequest": {"code": 400, "message": "..."}}``.

Times are UTC with microseconds and no zone (``2026-11-23T18:20:00.000000``), as Cinder.
``bootable`` and ``encrypted``/``multiattach`` follow Cinder's types: ``bootable`` is the string
``"true"``/``"false"``; the others are booleans.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from control.common import errors
from control.volume import models

# Cinder's fault names (cinder/api/openstack/wsgi.py Fault._fault_names).
FAULT_NAMES = {
    400: "badRequest",
    401: "unauthorized",
    403: "forbidden",
    404: "itemNotFound",
    405: "badMethod",
    409: "conflictingRequest",
    413: "overLimit",
    415: "badMediaType",
    501: "notImplemented",
    503: "serviceUnavailable",
}


def cinder_error(error: errors.APIError) -> dict[str, Any]:
    """The app's error style: ``{<fault name>: {"code", "message"}}``."""
    name = FAULT_NAMES.get(error.code, "computeFault")
    return {name: {"code": error.code, "message": error.message}}


def isotime(value: datetime | None) -> str | None:
    return value.strftime("%Y-%m-%dT%H:%M:%S.%f") if value is not None else None


def links(base: str, project_id: str, collection: str, ident: str) -> list[dict[str, str]]:
    root = base.rstrip("/")
    return [
        {"rel": "self", "href": f"{root}/v3/{project_id}/{collection}/{ident}"},
        {"rel": "bookmark", "href": f"{root}/{project_id}/{collection}/{ident}"},
    ]


def attachment(volume: models.Volume, att: models.VolumeAttachment) -> dict[str, Any]:
    return {
        "server_id": att.instance_uuid,
        "attachment_id": att.id,
        "attached_at": isotime(att.attach_time),
        "host_name": att.attached_host,
        "volume_id": volume.id,
        "device": att.mountpoint,
        "id": volume.id,
    }


def backend_host(host: str | None, backend_name: str | None) -> str | None:
    """``<host>@<backend>#<pool>`` as Cinder shows ``os-vol-host-attr:host``."""
    if host is None:
        return None
    backend = backend_name or "file"
    return f"{host}@{backend}#{backend}"


def volume_summary(volume: models.Volume, base: str) -> dict[str, Any]:
    return {
        "id": volume.id,
        "name": volume.name,
        "links": links(base, volume.project_id, "volumes", volume.id),
    }


def volume(
    volume: models.Volume,
    base: str,
    show_host: bool = False,
    backend_name: str | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": volume.id,
        "status": volume.status,
        "size": volume.size,
        "availability_zone": volume.availability_zone,
        "created_at": isotime(volume.created_at),
        "updated_at": isotime(volume.updated_at),
        "attachments": [
            attachment(volume, att) for att in volume.attachments if att.attach_status == "attached"
        ],
        "name": volume.name,
        "description": volume.description,
        "volume_type": volume.volume_type.name,
        "snapshot_id": volume.snapshot_id,
        "source_volid": volume.source_volid,
        "metadata": volume.metadata_dict(),
        "links": links(base, volume.project_id, "volumes", volume.id),
        "user_id": volume.user_id,
        "bootable": "true" if volume.bootable else "false",
        "encrypted": False,
        "replication_status": None,
        "consistencygroup_id": None,
        "multiattach": False,
        "os-vol-tenant-attr:tenant_id": volume.project_id,
        "os-vol-mig-status-attr:migstat": None,
        "os-vol-mig-status-attr:name_id": None,
    }
    if show_host:
        body["os-vol-host-attr:host"] = backend_host(volume.host, backend_name)
    if volume.image_metadata:
        body["volume_image_metadata"] = {
            key: str(value) for key, value in volume.image_metadata.items() if value is not None
        }
    return body


def snapshot(snap: models.Snapshot) -> dict[str, Any]:
    return {
        "id": snap.id,
        "created_at": isotime(snap.created_at),
        "updated_at": isotime(snap.updated_at),
        "name": snap.name,
        "description": snap.description,
        "volume_id": snap.volume_id,
        "status": snap.status,
        "size": snap.size,
        "metadata": dict(snap.meta or {}),
        "os-extended-snapshot-attributes:progress": "100%" if snap.status == "available" else "0%",
        "os-extended-snapshot-attributes:project_id": snap.project_id,
    }


def volume_type(vtype: models.VolumeType, show_specs: bool = True) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": vtype.id,
        "name": vtype.name,
        "description": vtype.description,
        "is_public": vtype.is_public,
        "os-volume-type-access:is_public": vtype.is_public,
        "qos_specs_id": None,
    }
    if show_specs:
        body["extra_specs"] = dict(vtype.extra_specs or {})
    return body
