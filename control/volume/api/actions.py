"""``POST /v3/{project_id}/volumes/{id}/action``: Cinder's volume actions, the legacy attach flow
Nova uses (reserve, initialize_connection, attach, begin/roll detaching, terminate_connection,
detach), extend, set_bootable, and the admin actions reset_status and force_detach.

State changes lock the volume row. The connection calls (``initialize_connection``,
``terminate_connection``) are RPC calls to the agent on ``volumes.host``; when it does not answer,
503 naming the host.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from flask import Response

from control.common import db, errors, rpc, validation
from control.common.db import utcnow
from control.volume import models, quota
from control.volume.api import common
from control.volume.api.common import enforce, respond, target, volume_status_error

LOG = logging.getLogger("cirrus.volume")

bp = common.project_blueprint("volume_actions")

Handler = Callable[[models.Volume, dict[str, Any]], Response]
ACTIONS: dict[str, Callable[[models.Volume, Any], Response]] = {}


def action(name: str, policy: str, body: bool = True) -> Callable[[Handler], Handler]:
    """Register the action ``name``: the caller must pass ``policy`` on the volume's project, then
    the handler gets the action's value as an object (``{}`` for null; 400 for anything else but an
    object), or with ``body=False`` always ``{}`` (the value is ignored)."""

    def register(func: Handler) -> Handler:
        def run(volume: models.Volume, value: Any) -> Response:
            enforce(policy, target(volume.project_id))
            return func(volume, _dict(value, name) if body else {})

        ACTIONS[name] = run
        return func

    return register


def accepted() -> Response:
    return Response(status=202)


def _save(volume: models.Volume) -> Response:
    """Stamp and commit ``volume``; 202."""
    volume.touch()
    db.commit()
    return accepted()


@dataclass(frozen=True)
class Transition:
    """An action that only moves the status: from one of ``allowed`` to ``status`` (and
    ``attach_status`` when given). From any other status, with ``refuse`` (the verb of the error)
    a 400; without, the action does nothing."""

    policy: str
    allowed: tuple[str, ...]
    status: str
    attach_status: str | None = None
    refuse: str | None = None

    def register(self, name: str) -> None:
        @action(name, self.policy, body=False)
        def run(volume: models.Volume, _body: dict[str, Any]) -> Response:
            if volume.status not in self.allowed:
                if self.refuse is None:
                    return accepted()
                raise volume_status_error(volume, self.refuse, " or ".join(self.allowed))
            volume.status = self.status
            if self.attach_status is not None:
                volume.attach_status = self.attach_status
            return _save(volume)


def _dict(value: Any, name: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise errors.BadRequest(f"Invalid input for field/attribute {name}: must be an object.")
    return value


def _connector(body: dict[str, Any], name: str) -> dict[str, Any]:
    connector = _dict(body.get("connector"), f"{name}.connector")
    if not connector:
        raise errors.BadRequest(f"Must specify 'connector' in {name}.")
    if not isinstance(connector.get("host"), str) or not connector["host"]:
        raise errors.BadRequest(f"Invalid input for field/attribute {name}.connector.host.")
    return connector


def _agent_failure(volume: models.Volume, method: str, exc: rpc.RPCError) -> errors.APIError:
    if isinstance(exc, rpc.RPCTimeout | rpc.MessageDeliveryFailure):
        return errors.ServiceUnavailable(
            f"The volume host {volume.host} did not answer {method} for volume {volume.id}: {exc}"
        )
    LOG.error("%s of volume %s on %s failed: %s", method, volume.id, volume.host, exc)
    return errors.APIError(
        f"The volume host {volume.host} failed {method} for volume {volume.id}: "
        f"{exc.message if isinstance(exc, rpc.RemoteError) else exc}"
    )


def _settle(volume: models.Volume) -> None:
    """The status after an attachment went: in-use while others remain, else available."""
    live = [a for a in volume.attachments if a.attach_status == "attached"]
    if live:
        volume.status = "in-use"
        volume.attach_status = "attached"
    elif any(a.attach_status == "attaching" for a in volume.attachments):
        volume.status = "attaching"
        volume.attach_status = "attaching"
    else:
        volume.status = "available"
        volume.attach_status = "detached"


@bp.post("/volumes/<volume_id>/action")
def volume_action(volume_id: str) -> Response:
    body = validation.json_body()
    if not isinstance(body, dict) or len(body) != 1:
        raise errors.BadRequest("The action body must be an object with exactly one action.")
    ((name, value),) = body.items()
    handler = ACTIONS.get(name)
    if handler is None:
        raise errors.BadRequest(f"There is no such action: {name}")
    common.write_session()
    volume = common.find_volume(volume_id, lock=True)
    return handler(volume, value)


# -- the attach flow -----------------------------------------------------------------------------


TRANSITIONS = {
    "os-reserve": Transition(
        "volume:reserve_volume", ("available",), "attaching", "attaching", refuse="reserve"
    ),
    "os-begin_detaching": Transition(
        "volume:begin_detaching", ("in-use",), "detaching", refuse="begin detaching"
    ),
    "os-roll_detaching": Transition("volume:roll_detaching", ("detaching",), "in-use"),
}
for _name, _step in TRANSITIONS.items():
    _step.register(_name)


@action("os-unreserve", "volume:unreserve_volume", body=False)
def unreserve(volume: models.Volume, _body: dict[str, Any]) -> Response:
    if volume.status == "attaching":
        for att in list(volume.attachments):
            if att.attach_status == "attaching" and att.connection_info is None:
                volume.attachments.remove(att)
        _settle(volume)
        if volume.status == "attaching":
            volume.status = "available"
            volume.attach_status = "detached"
        return _save(volume)
    return accepted()


@action("os-initialize_connection", "volume:initialize_connection")
def initialize_connection(volume: models.Volume, body: dict[str, Any]) -> Response:
    connector = _connector(body, "os-initialize_connection")
    if volume.status not in ("available", "attaching", "in-use", "reserved"):
        raise volume_status_error(
            volume, "initialize a connection", "available, attaching or in-use"
        )
    if volume.host is None:
        raise errors.BadRequest(f"Invalid volume: Volume {volume.id} has no host.")
    att = next(
        (
            a
            for a in volume.attachments
            if a.attached_host == connector["host"] and a.attach_status in ("attaching", "attached")
        ),
        None,
    )
    if att is None:
        att = models.VolumeAttachment(
            id=str(uuid.uuid4()),
            attached_host=connector["host"],
            attach_status="attaching",
            connector=connector,
        )
        volume.attachments.append(att)
    else:
        att.connector = connector
    db.commit()
    try:
        info = common.agents().initialize_connection(
            common.context(), volume.host, volume.id, att.id, connector
        )
    except rpc.RPCError as exc:
        raise _agent_failure(volume, "initialize_connection", exc) from None
    if not isinstance(info, dict):
        raise errors.APIError(
            f"The volume host {volume.host} answered initialize_connection with {info!r}."
        )
    info.setdefault("data", {})
    if isinstance(info["data"], dict):
        info["data"].setdefault("access_mode", att.attach_mode)
    sess = db.session()
    fresh = sess.get(models.VolumeAttachment, att.id, with_for_update=True)
    if fresh is not None:
        fresh.connection_info = info
        fresh.touch()
        db.commit()
    return respond({"connection_info": info})


@action("os-attach", "volume:attach")
def attach(volume: models.Volume, body: dict[str, Any]) -> Response:
    instance = body.get("instance_uuid")
    host_name = body.get("host_name")
    if not instance and not host_name:
        raise errors.BadRequest("Invalid request to attach volume: give instance_uuid.")
    mountpoint = body.get("mountpoint")
    if not isinstance(mountpoint, str) or not mountpoint:
        raise errors.BadRequest("Invalid input for field/attribute os-attach.mountpoint.")
    mode = body.get("mode") or "rw"
    if mode not in ("rw", "ro"):
        raise errors.BadRequest("Invalid request to attach volume: mode must be rw or ro.")
    existing = next((a for a in volume.attachments if a.attach_status == "attached"), None)
    if existing is not None:
        if existing.instance_uuid == instance:
            return accepted()  # already done: a repeated request
        raise errors.BadRequest(
            f"Invalid volume: Volume {volume.id} is already attached to server "
            f"{existing.instance_uuid} and is not multiattach."
        )
    if volume.status not in ("available", "attaching", "reserved"):
        raise volume_status_error(volume, "attach", "available or attaching")
    candidates = [a for a in volume.attachments if a.attach_status == "attaching"]
    att = next((a for a in candidates if host_name and a.attached_host == host_name), None)
    att = att or (candidates[-1] if candidates else None)
    if att is None:
        att = models.VolumeAttachment(id=str(uuid.uuid4()), attached_host=host_name)
        volume.attachments.append(att)
    att.instance_uuid = instance
    att.mountpoint = mountpoint
    att.attach_mode = mode
    att.attach_status = "attached"
    att.attach_time = utcnow()
    if host_name:
        att.attached_host = host_name
    att.touch()
    volume.status = "in-use"
    volume.attach_status = "attached"
    return _save(volume)


def _terminate(volume: models.Volume, attachments: list[models.VolumeAttachment]) -> None:
    """Stop the agent's exports of ``attachments`` (raises on an agent failure)."""
    if volume.host is None:
        return
    for att in attachments:
        try:
            common.agents().terminate_connection(common.context(), volume.host, volume.id, att.id)
        except rpc.RPCError as exc:
            raise _agent_failure(volume, "terminate_connection", exc) from None
        att.connection_info = None


def _attachment_not_found(volume: models.Volume, attachment_id: str) -> errors.NotFound:
    return errors.NotFound(
        f"Volume attachment {attachment_id} of volume {volume.id} could not be found."
    )


def _drop(volume: models.Volume, attachments: list[models.VolumeAttachment], name: str) -> Response:
    """Stop the exports of ``attachments``, forget them and settle the volume's status. An agent
    failure is only logged: the export is the agent's; it stops it when it comes back. The record
    goes now."""
    for att in attachments:
        try:
            _terminate(volume, [att])
        except errors.APIError as exc:
            LOG.warning("%s of volume %s: %s", name, volume.id, exc.message)
        volume.attachments.remove(att)
    _settle(volume)
    return _save(volume)


@action("os-terminate_connection", "volume:terminate_connection")
def terminate_connection(volume: models.Volume, body: dict[str, Any]) -> Response:
    connector = _connector(body, "os-terminate_connection")
    attachments = [a for a in volume.attachments if a.attached_host == connector["host"]]
    db.commit()  # release the row lock while the agent works
    _terminate(volume, attachments)
    sess = db.session()
    for att in attachments:
        fresh = sess.get(models.VolumeAttachment, att.id, with_for_update=True)
        if fresh is not None:
            fresh.connection_info = None
    db.commit()
    return accepted()


@action("os-detach", "volume:detach")
def detach(volume: models.Volume, body: dict[str, Any]) -> Response:
    attachment_id = body.get("attachment_id")
    if attachment_id:
        found = [a for a in volume.attachments if a.id == attachment_id]
        if not found:
            raise _attachment_not_found(volume, attachment_id)
    else:
        found = list(volume.attachments)
        if len(found) > 1:
            raise errors.BadRequest(
                f"Invalid volume: Volume {volume.id} has {len(found)} attachments: give "
                "attachment_id."
            )
    if not found and volume.status not in ("in-use", "detaching"):
        raise volume_status_error(volume, "detach", "in-use or detaching")
    return _drop(volume, found, "detach")


@action("os-force_detach", "volume_extension:volume_admin_actions:force_detach")
def force_detach(volume: models.Volume, body: dict[str, Any]) -> Response:
    attachment_id = body.get("attachment_id")
    found = [a for a in volume.attachments if not attachment_id or a.id == attachment_id]
    if attachment_id and not found:
        raise _attachment_not_found(volume, attachment_id)
    return _drop(volume, found, "force_detach")


# -- size, state, bootable -----------------------------------------------------------------------


@action("os-extend", "volume:extend")
def extend(volume: models.Volume, body: dict[str, Any]) -> Response:
    if "new_size" not in body:
        raise errors.BadRequest("Invalid input for field/attribute os-extend.new_size: required.")
    new_size = common.parse_int(body["new_size"], "new_size")
    if volume.status != "available":
        raise volume_status_error(volume, "extend", "available")
    if new_size <= volume.size:
        raise errors.BadRequest(
            f"Invalid input received: New size for extend must be greater than current size. "
            f"(current: {volume.size}, extended: {new_size})."
        )
    if volume.host is None:
        raise errors.BadRequest(f"Invalid volume: Volume {volume.id} has no host.")
    sess = db.session()
    quota.lock_project(sess, db.database().engine, volume.project_id)
    quota.check(
        sess,
        volume.project_id,
        common.settings().quota_defaults,
        gigabytes=new_size - volume.size,
        size=new_size,
    )
    volume.status = "extending"
    volume.touch()
    db.commit()
    try:
        common.agents().extend_volume(common.context(), volume.host, volume.id, new_size)
    except rpc.RPCError as exc:
        fresh = sess.get(models.Volume, volume.id, with_for_update=True)
        if fresh is not None:
            fresh.status = "available"
            fresh.last_error = f"could not reach volume host {volume.host}: {exc}"
            db.commit()
        raise errors.ServiceUnavailable(
            f"The volume host {volume.host} could not be reached: {exc}"
        ) from None
    return accepted()


@action("os-reset_status", "volume_extension:volume_admin_actions:reset_status")
def reset_status(volume: models.Volume, body: dict[str, Any]) -> Response:
    status = body.get("status")
    attach_status = body.get("attach_status")
    if status is None and attach_status is None:
        raise errors.BadRequest("Must specify 'status' or 'attach_status' in os-reset_status.")
    if status is not None:
        if status not in models.VOLUME_STATUSES:
            raise errors.BadRequest(f"Must specify a valid status: {status} is not one.")
        volume.status = status
    if attach_status is not None:
        if attach_status not in ("attached", "detached"):
            raise errors.BadRequest(
                f"Must specify a valid attach status: {attach_status} is not one."
            )
        volume.attach_status = attach_status
        if attach_status == "detached":
            for att in list(volume.attachments):
                volume.attachments.remove(att)
    return _save(volume)


@action("os-set_bootable", "volume_extension:volume_actions:set_bootable")
def set_bootable(volume: models.Volume, body: dict[str, Any]) -> Response:
    if "bootable" not in body:
        raise errors.BadRequest("Must specify bootable in request.")
    volume.bootable = common.parse_bool(body["bootable"], "bootable")
    volume.touch()
    db.commit()
    return Response(status=200)
