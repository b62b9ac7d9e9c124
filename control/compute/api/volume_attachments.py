"""``/servers/{id}/os-volume_attachments``: list, show, attach and detach a server's volumes.

Attach and detach are synchronous, through the volume API's legacy flow
(:mod:`control.compute.volume`, docs/block-storage-contract.md) and the agent's
``attach_volume``/``detach_volume`` calls; the mappings are the server's ``block_device_mapping``
rows (the device names from :func:`control.compute.api.block_devices.next_device`).
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Blueprint, Response

from control.common import db, errors, policy, rpc, validation
from control.common.app import context
from control.compute import models, volume
from control.compute.api import common
from control.compute.api.block_devices import _DEVICE, _suppressed, next_device
from control.compute.api.servers import _plugged, find, target

# The logger of the servers API these endpoints were part of (log output unchanged).
LOG = logging.getLogger("cirrus.compute.servers")

bp = Blueprint("compute_volume_attachments", __name__, url_prefix="/v2.1")

VOLUME_ATTACH_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "volumeAttachment": {
            "type": "object",
            "properties": {
                "volumeId": {"type": "string", "minLength": 1, "maxLength": 36},
                "device": {"type": ["string", "null"], "maxLength": 255},
                "tag": {"type": "string"},
                "delete_on_termination": {"type": "boolean"},
            },
            "required": ["volumeId"],
            "additionalProperties": False,
        }
    },
    "required": ["volumeAttachment"],
    "additionalProperties": False,
}


def _volume_attachment(instance_uuid: str, volume_id: str, device: str) -> dict[str, Any]:
    return {"id": volume_id, "serverId": instance_uuid, "volumeId": volume_id, "device": device}


def _volume_error(exc: volume.VolumeAPIError, volume_id: str) -> errors.APIError:
    if exc.status == 404:
        return errors.NotFound(f"Volume {volume_id} could not be found.")
    if exc.status in (400, 409):
        return errors.BadRequest(f"Invalid volume {volume_id}: {exc.message}")
    return volume.unavailable(exc)


def _bdm(instance: models.Instance, volume_id: str) -> models.BlockDeviceMapping | None:
    for bdm in instance.block_devices:
        if bdm.volume_id == volume_id:
            return bdm
    return None


@bp.get("/servers/<server_id>/os-volume_attachments")
def volumes_index(server_id: str) -> Response:
    instance = find(server_id)
    policy.enforce("os_compute_api:os-volumes-attachments:index", target(instance))
    rows = list(instance.block_devices)
    offset = common.query_int("offset") or 0
    limit = common.query_int("limit")
    rows = rows[offset : offset + limit if limit is not None else None]
    return common.respond(
        {
            "volumeAttachments": [
                _volume_attachment(instance.uuid, b.volume_id, b.device_name) for b in rows
            ]
        }
    )


@bp.get("/servers/<server_id>/os-volume_attachments/<volume_id>")
def volumes_show(server_id: str, volume_id: str) -> Response:
    instance = find(server_id)
    policy.enforce("os_compute_api:os-volumes-attachments:show", target(instance))
    bdm = _bdm(instance, volume_id)
    if bdm is None:
        raise errors.NotFound(f"Volume {volume_id} is not attached to server {instance.uuid}.")
    return common.respond(
        {"volumeAttachment": _volume_attachment(instance.uuid, volume_id, bdm.device_name)}
    )


def _reserve_device(instance_uuid: str, volume_id: str, action: str) -> tuple[str, str]:
    """Nova's ``reserve_block_device_name``: under the server's row lock, check it may take a
    volume now, pick the next free device and write the mapping (not yet connected). Returns
    (host, device)."""
    with db.database().transaction() as sess:
        row = sess.get(models.Instance, instance_uuid, with_for_update=True)
        if row is None or row.vm_state == models.DELETED:
            raise errors.NotFound(f"Instance {instance_uuid} could not be found.")
        host = _plugged(row, action)
        if any(b.volume_id == volume_id for b in row.block_devices):
            raise errors.Conflict(
                f"Volume {volume_id} is already attached to server {instance_uuid}."
            )
        device = next_device([b.device_name for b in row.block_devices])
        row.block_devices.append(
            models.BlockDeviceMapping(
                volume_id=volume_id,
                device_name=device,
                boot_index=None,
                delete_on_termination=False,
            )
        )
    return host, device


def _drop_bdm(instance_uuid: str, volume_id: str) -> None:
    with db.database().transaction() as sess:
        row = sess.get(models.Instance, instance_uuid, with_for_update=True)
        if row is None:
            return
        for bdm in list(row.block_devices):
            if bdm.volume_id == volume_id:
                row.block_devices.remove(bdm)


@bp.post("/servers/<server_id>/os-volume_attachments")
def volumes_attach(server_id: str) -> Response:
    """Attach a volume, synchronously (docs/block-storage-contract.md, "Compute side"): the
    answer comes once the guest has the disk. Any failure after ``os-reserve`` leaves the volume
    ``available`` again and the server without the mapping."""
    body = validation.validated_body(VOLUME_ATTACH_SCHEMA)["volumeAttachment"]
    instance = find(server_id)
    policy.enforce("os_compute_api:os-volumes-attachments:create", target(instance))
    if instance.locked and not common.is_admin():
        raise errors.Conflict(f"Instance {server_id} is locked.")
    _plugged(instance, "attach_volume")
    volume_id = body["volumeId"]
    if not common.is_uuid(volume_id):
        raise errors.BadRequest(f"Invalid input for field 'volumeId': {volume_id!r} is not a UUID.")
    device_wanted = body.get("device")
    if device_wanted and not _DEVICE.match(device_wanted):
        raise errors.BadRequest(f"The supplied device path ({device_wanted}) is invalid.")
    if _bdm(instance, volume_id) is not None:
        raise errors.Conflict(f"Volume {volume_id} is already attached to server {server_id}.")
    uuid_ = instance.uuid
    db.session().rollback()  # no transaction held over the volume and RPC calls
    client = volume.require_client()
    try:
        vol = client.get(volume_id)
    except volume.VolumeAPIError as exc:
        raise _volume_error(exc, volume_id) from None
    if vol.get("status") != "available":
        raise errors.BadRequest(
            f"Invalid volume: volume {volume_id} status must be 'available' to attach, but it "
            f"is '{vol.get('status')}'."
        )
    # The device is chosen by compute (as Nova's libvirt driver ignores the requested one).
    host, device = _reserve_device(uuid_, volume_id, "attach_volume")
    try:
        client.reserve(volume_id)
    except volume.VolumeAPIError as exc:
        _drop_bdm(uuid_, volume_id)
        raise _volume_error(exc, volume_id) from None
    connected = False
    try:
        info = client.initialize_connection(volume_id, host)
        connected = True
        try:
            common.settings().rpc.get().compute.attach_volume(
                context(), host, uuid_, volume_id, info, device
            )
        except rpc.RPCError as exc:
            message = exc.message if isinstance(exc, rpc.RemoteError) else str(exc)
            raise errors.Conflict(
                f"Failed to attach volume {volume_id} to {uuid_} as {device}: {message}"
            ) from None
        try:
            client.attach(volume_id, uuid_, device, host)
        except volume.VolumeAPIError:
            # The guest has the disk but the volume service does not record it: take it away.
            with _suppressed("detach after a failed os-attach"):
                common.settings().rpc.get().compute.detach_volume(
                    context(), host, uuid_, volume_id, device
                )
            raise
    except (volume.VolumeAPIError, errors.APIError) as exc:
        volume.rollback(client, volume_id, host if connected else None)
        _drop_bdm(uuid_, volume_id)
        if isinstance(exc, volume.VolumeAPIError):
            raise _volume_error(exc, volume_id) from None
        raise
    attachment_id = str((info.get("data") or {}).get("attachment_id") or "") or None
    with db.database().transaction() as sess:
        row = sess.get(models.Instance, uuid_, with_for_update=True)
        bdm = _bdm(row, volume_id) if row is not None else None
        if bdm is not None:
            bdm.attachment_id = attachment_id
            bdm.connection_info = info
    LOG.info("server %s: volume %s attached as %s on %s", uuid_, volume_id, device, host)
    return common.respond({"volumeAttachment": _volume_attachment(uuid_, volume_id, device)})


@bp.delete("/servers/<server_id>/os-volume_attachments/<volume_id>")
def volumes_detach(server_id: str, volume_id: str) -> Response:
    """Detach, synchronously: ``os-begin_detaching``, the agent unplugs the disk (waiting for
    the guest to release it; failure: ``os-roll_detaching``), ``os-terminate_connection``,
    ``os-detach``, the mapping removed; 202 once the disk is gone."""
    instance = find(server_id)
    policy.enforce("os_compute_api:os-volumes-attachments:delete", target(instance))
    if instance.locked and not common.is_admin():
        raise errors.Conflict(f"Instance {server_id} is locked.")
    bdm = _bdm(instance, volume_id)
    if bdm is None:
        raise errors.NotFound(f"Volume {volume_id} is not attached to server {server_id}.")
    if bdm.boot_index == 0 or bdm.device_name in ("/dev/vda", "vda"):
        raise errors.BadRequest("Cannot detach the root device volume of a server.")
    host = _plugged(instance, "detach_volume")
    if bdm.attachment_id is None:
        raise errors.Conflict(f"Volume {volume_id} is being attached to server {server_id}.")
    uuid_, device, attachment_id = instance.uuid, bdm.device_name, bdm.attachment_id
    db.session().rollback()
    client = volume.require_client()
    try:
        client.begin_detaching(volume_id)
    except volume.VolumeAPIError as exc:
        raise _volume_error(exc, volume_id) from None
    try:
        common.settings().rpc.get().compute.detach_volume(context(), host, uuid_, volume_id, device)
    except rpc.RPCError as exc:
        with _suppressed(f"os-roll_detaching of {volume_id}"):
            client.roll_detaching(volume_id)
        message = exc.message if isinstance(exc, rpc.RemoteError) else str(exc)
        raise errors.Conflict(
            f"Failed to detach volume {volume_id} from {uuid_}: {message}"
        ) from None
    try:
        client.terminate_connection(volume_id, host)
        client.detach(volume_id, attachment_id)
    except volume.VolumeAPIError as exc:
        # The guest no longer has the disk: the mapping goes regardless.
        _drop_bdm(uuid_, volume_id)
        raise volume.unavailable(exc) from None
    _drop_bdm(uuid_, volume_id)
    LOG.info("server %s: volume %s (%s) detached", uuid_, volume_id, device)
    return Response(status=202)
