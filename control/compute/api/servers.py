"""``/servers``: create, list (``detail``, filters, pagination), show, rename, delete; server
metadata; ``os-instance-actions``; ``os-interface`` and ``os-security-groups``; the actions
``os-start``, ``os-stop``, ``reboot`` and ``os-getConsoleOutput``. Also what the other server
blueprints share: :func:`find`, :func:`target`, :func:`record_action`.

Create follows Nova's request flow: validate, check quota, write the server in BUILD, ask the
scheduler (RPC call) for a host, which claims the resources; cast ``build_instance`` to
``compute.<host>`` and answer 202. No valid host: the server goes ERROR with a fault that says why
(still 202, as Nova's asynchronous build does).

Networking (:mod:`control.compute.network`): ``networks`` is validated up front against the
network service of the user's catalog; once the scheduler chose the host, compute-api creates
(or takes over) the ports and binds them to it, caches them on the server (``network_info``) and
sends them with ``build_instance``. ``addresses`` is rendered from that cache. Without a network
service in the catalog servers boot without NIC. ``os-interface`` lists, shows, attaches and
detaches ports.

Volumes (:mod:`control.compute.volume`, docs/block-storage-contract.md): the mappings
(``block_device_mapping`` rows) give ``os-extended-volumes:volumes_attached``.
``block_device_mapping_v2`` boots from a volume (parsed, checked and reserved at create by
:mod:`control.compute.api.block_devices`); the volumes are connected to the chosen host before
``build_instance``. A server with volumes is deleted with a call to its agent, then its volumes are
detached (and deleted when ``delete_on_termination``). ``os-volume_attachments`` is
:mod:`control.compute.api.volume_attachments`.
"""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
import uuid
from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, Response, request
from sqlalchemy import and_, or_, select

from control.common import db, errors, policy, rpc, validation
from control.common.app import context
from control.compute import claims, models, network, quota, services, volume
from control.compute.api import common, flavors
from control.compute.api.block_devices import (
    VolumeMapping,
    _delete_if_made_for,
    _ready,
    _release_reserved,
    _release_volumes,
    _suppressed,
    _volume_client_or_none,
    check_volumes,
    create_image_volumes,
    parse_block_devices,
    reserve_volumes,
)

LOG = logging.getLogger("cirrus.compute.servers")

bp = Blueprint("compute_servers", __name__, url_prefix="/v2.1")

_METADATA = {
    "type": "object",
    "patternProperties": {"^.{1,255}$": {"type": "string", "maxLength": 255}},
    "additionalProperties": False,
}
_NAME = {"type": "string", "minLength": 1, "maxLength": 255}

CREATE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "server": {
            "type": "object",
            "properties": {
                "name": _NAME,
                "imageRef": {"type": "string"},
                "flavorRef": {"type": ["string", "integer"]},
                "adminPass": {"type": "string"},
                "metadata": _METADATA,
                "networks": {"type": ["array", "string"]},
                "OS-DCF:diskConfig": {"type": "string", "enum": ["AUTO", "MANUAL"]},
                "accessIPv4": {"type": ["string", "null"]},
                "accessIPv6": {"type": ["string", "null"]},
                "key_name": {"type": ["string", "null"], "maxLength": 255},
                "user_data": {"type": ["string", "null"], "maxLength": 65535},
                "availability_zone": {"type": ["string", "null"], "maxLength": 255},
                "min_count": {"type": ["integer", "string"], "pattern": "^[0-9]+$", "minimum": 1},
                "max_count": {"type": ["integer", "string"], "pattern": "^[0-9]+$", "minimum": 1},
                "return_reservation_id": {"type": ["boolean", "string"]},
                "security_groups": {"type": "array"},
                "block_device_mapping_v2": {"type": "array"},
                "config_drive": {"type": ["boolean", "string"]},
            },
            "required": ["name", "flavorRef"],
            "additionalProperties": True,
        },
        "os:scheduler_hints": {"type": "object"},
        "OS-SCH-HNT:scheduler_hints": {"type": "object"},
    },
    "required": ["server"],
}

UPDATE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "server": {
            "type": "object",
            "properties": {
                "name": _NAME,
                "accessIPv4": {"type": ["string", "null"]},
                "accessIPv6": {"type": ["string", "null"]},
                "OS-DCF:diskConfig": {"type": "string"},
                "description": {"type": ["string", "null"]},
            },
            "additionalProperties": False,
        }
    },
    "required": ["server"],
}

# -- rendering -----------------------------------------------------------------------------------

_STATUS = {
    models.BUILDING: "BUILD",
    models.ACTIVE: "ACTIVE",
    models.STOPPED: "SHUTOFF",
    models.ERROR: "ERROR",
    models.DELETED: "DELETED",
}
_TASK_STATUS = {"rebooting": "REBOOT", "rebooting_hard": "HARD_REBOOT", "deleting": "ACTIVE"}
#: API status -> vm_state (the ``status`` filter).
_STATUS_FILTER = {
    "BUILD": [models.BUILDING],
    "ACTIVE": [models.ACTIVE],
    "SHUTOFF": [models.STOPPED],
    "ERROR": [models.ERROR],
    "REBOOT": [models.ACTIVE],
    "HARD_REBOOT": [models.ACTIVE],
    "DELETED": [models.DELETED],
}


def status(instance: models.Instance) -> str:
    if instance.vm_state == models.ACTIVE and instance.task_state in _TASK_STATUS:
        return _TASK_STATUS[instance.task_state]
    return _STATUS.get(instance.vm_state, "UNKNOWN")


def _time(value: datetime | None) -> str | None:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ") if value is not None else None


def _host_id(instance: models.Instance) -> str:
    if not instance.host:
        return ""
    return hashlib.sha224(f"{instance.project_id}{instance.host}".encode()).hexdigest()


def addresses(instance: models.Instance) -> dict[str, list[dict[str, Any]]]:
    """``{network name: [{addr, version, OS-EXT-IPS:type, OS-EXT-IPS-MAC:mac_addr}]}`` from the
    server's cached ports (``network_info``): no call to the network API."""
    return network.addresses(instance.vifs())


def render(instance: models.Instance, detail: bool = True) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": instance.uuid,
        "name": instance.name,
        "links": common.links("servers", instance.uuid),
    }
    if not detail:
        return body
    body.update(
        {
            "status": status(instance),
            "tenant_id": instance.project_id,
            "user_id": instance.user_id,
            "created": _time(instance.created_at),
            "updated": _time(instance.updated_at),
            "hostId": _host_id(instance),
            "key_name": instance.key_name,
            "metadata": instance.metadata_dict(),
            "accessIPv4": instance.access_ipv4 or "",
            "accessIPv6": instance.access_ipv6 or "",
            "progress": instance.progress if instance.vm_state == models.BUILDING else 0,
            "image": {"id": instance.image_ref, "links": common.links("images", instance.image_ref)}
            if instance.image_ref
            else "",
            "flavor": {
                "id": instance.flavor_id,
                "links": common.links("flavors", instance.flavor_id),
            },
            "addresses": addresses(instance),
            "OS-DCF:diskConfig": "MANUAL",
            "OS-EXT-STS:vm_state": instance.vm_state,
            "OS-EXT-STS:task_state": instance.task_state,
            "OS-EXT-STS:power_state": instance.power_state,
            "OS-EXT-AZ:availability_zone": instance.availability_zone or "",
            "OS-SRV-USG:launched_at": instance.launched_at.isoformat()
            if instance.launched_at
            else None,
            "OS-SRV-USG:terminated_at": None,
            # Microversion 2.1: only the id (delete_on_termination came with 2.3).
            "os-extended-volumes:volumes_attached": [
                {"id": bdm.volume_id} for bdm in instance.block_devices
            ],
            "security_groups": [{"name": "default"}],
            "config_drive": instance.config_drive,
            "locked": instance.locked,
        }
    )
    if common.is_admin():
        body.update(
            {
                "OS-EXT-SRV-ATTR:host": instance.host,
                "OS-EXT-SRV-ATTR:hypervisor_hostname": instance.node,
                "OS-EXT-SRV-ATTR:instance_name": f"instance-{instance.uuid}",
            }
        )
    if instance.vm_state == models.ERROR and instance.faults:
        fault = instance.faults[0]
        body["fault"] = {
            "code": fault.code,
            "message": fault.message,
            "created": _time(fault.created_at),
        }
        if common.is_admin() and fault.details:
            body["fault"]["details"] = fault.details
    return body


def target(instance: models.Instance) -> dict[str, Any]:
    return {"project_id": instance.project_id, "user_id": instance.user_id}


def find(server_id: str, lock: bool = False) -> models.Instance:
    """The server the caller may see; 404 otherwise (never 403, never 500 for a bad id)."""
    instance = None
    if len(server_id) <= 36:
        instance = db.session().get(models.Instance, server_id, with_for_update=lock or None)
    if instance is None or instance.vm_state == models.DELETED:
        raise errors.NotFound(f"Instance {server_id} could not be found.")
    if not common.is_admin() and instance.project_id != common.project_id():
        raise errors.NotFound(f"Instance {server_id} could not be found.")
    return instance


def record_action(instance_uuid: str, action: str) -> models.InstanceAction:
    ctxt = context()
    row = models.InstanceAction(
        instance_uuid=instance_uuid,
        action=action,
        request_id=ctxt.request_id,
        user_id=ctxt.user_id,
        project_id=ctxt.project_id,
    )
    db.session().add(row)
    return row


# -- list ----------------------------------------------------------------------------------------


def _parse_time(raw: str, name: str) -> datetime:
    try:
        value = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise errors.BadRequest(f"Invalid input for query parameter '{name}': {raw!r}") from None
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value


def _list(detail: bool) -> Response:
    admin = common.is_admin()
    rule = "os_compute_api:servers:detail" if detail else "os_compute_api:servers:index"
    policy.enforce(rule, {"project_id": common.project_id()})
    query = select(models.Instance).where(models.Instance.vm_state != models.DELETED)
    all_tenants = request.args.get("all_tenants")
    everyone = all_tenants is not None and all_tenants.lower() not in ("0", "false", "off", "no")
    if everyone:
        policy.enforce(f"{rule}:get_all_tenants")
        project = request.args.get("project_id") or request.args.get("tenant_id")
        if project:
            query = query.where(models.Instance.project_id == project)
    else:
        query = query.where(models.Instance.project_id == common.project_id())
    name = request.args.get("name")
    if name:
        try:
            re.compile(name)
        except re.error:
            raise errors.BadRequest(f"Invalid regular expression for 'name': {name!r}") from None
        query = query.where(models.Instance.name.regexp_match(name))
    wanted_status = request.args.get("status")
    if wanted_status:
        states = _STATUS_FILTER.get(wanted_status.upper())
        if states is None:
            return common.respond({"servers": []})
        query = query.where(models.Instance.vm_state.in_(states))
        if wanted_status.upper() == "REBOOT":
            query = query.where(models.Instance.task_state == "rebooting")
        elif wanted_status.upper() == "HARD_REBOOT":
            query = query.where(models.Instance.task_state == "rebooting_hard")
    host = request.args.get("host")
    if host:
        if not admin:
            raise errors.Forbidden("Only administrators may filter servers by host.")
        query = query.where(models.Instance.host == host)
    for param, column in (
        ("image", models.Instance.image_ref),
        ("flavor", models.Instance.flavor_id),
    ):
        if request.args.get(param):
            query = query.where(column == request.args[param])
    if request.args.get("key_name"):
        query = query.where(models.Instance.key_name == request.args["key_name"])
    if request.args.get("availability_zone"):
        query = query.where(models.Instance.availability_zone == request.args["availability_zone"])
    changes_since = request.args.get("changes-since") or request.args.get("changes_since")
    if changes_since:
        query = query.where(
            models.Instance.updated_at >= _parse_time(changes_since, "changes-since")
        )
    marker_id = request.args.get("marker")
    if marker_id:
        marker = db.session().get(models.Instance, marker_id) if len(marker_id) <= 36 else None
        if marker is None:
            raise errors.BadRequest(f"marker [{marker_id}] not found")
        query = query.where(
            or_(
                models.Instance.created_at < marker.created_at,
                and_(
                    models.Instance.created_at == marker.created_at,
                    models.Instance.uuid < marker.uuid,
                ),
            )
        )
    limit = common.query_int("limit")
    settings = common.settings()
    limit = settings.limit_max if limit is None else min(limit, settings.limit_max)
    query = query.order_by(models.Instance.created_at.desc(), models.Instance.uuid.desc())
    rows = list(db.session().scalars(query.limit(limit + 1)))
    body: dict[str, Any] = {"servers": [render(i, detail) for i in rows[:limit]]}
    if len(rows) > limit and rows[:limit]:
        args = {k: v for k, v in request.args.items() if k != "marker"}
        args["marker"] = rows[limit - 1].uuid
        query_string = "&".join(f"{k}={v}" for k, v in args.items())
        suffix = "/detail" if detail else ""
        body["servers_links"] = [
            {"rel": "next", "href": f"{common.base_url()}/servers{suffix}?{query_string}"}
        ]
    return common.respond(body)


@bp.get("/servers")
def index() -> Response:
    return _list(detail=False)


@bp.get("/servers/detail")
def detail() -> Response:
    return _list(detail=True)


@bp.get("/servers/<server_id>")
def show(server_id: str) -> Response:
    instance = find(server_id)
    policy.enforce("os_compute_api:servers:show", target(instance))
    return common.respond({"server": render(instance)})


# -- create --------------------------------------------------------------------------------------


def _ref_id(ref: Any) -> str:
    """An id from an id or a link (``http://.../flavors/ID``)."""
    text = str(ref).rstrip("/")
    return text.rsplit("/", 1)[-1]


def _count(body: dict[str, Any], name: str, default: int) -> int:
    try:
        return int(body.get(name, default))
    except (TypeError, ValueError):
        raise errors.BadRequest(f"Invalid input for field '{name}'.") from None


def _instance_payload(instance: models.Instance, image: dict[str, Any]) -> dict[str, Any]:
    """What the agent needs to build the server (sent with ``build_instance``)."""
    return {
        "interfaces": network.interfaces(instance.vifs()),
        "uuid": instance.uuid,
        "name": instance.name,
        "project_id": instance.project_id,
        "user_id": instance.user_id,
        "image_ref": instance.image_ref,
        "flavor_id": instance.flavor_id,
        "vcpus": instance.vcpus,
        "memory_mb": instance.memory_mb,
        "root_gb": instance.root_gb,
        "key_data": instance.key_data,
        "user_data": instance.user_data,
        "metadata": instance.metadata_dict(),
        "image": {
            "id": image.get("id"),
            "disk_format": image.get("disk_format"),
            "size": image.get("size"),
            "checksum": image.get("checksum"),
            "os_hash_algo": image.get("os_hash_algo"),
            "os_hash_value": image.get("os_hash_value"),
            "kernel_id": image.get("kernel_id"),
            "ramdisk_id": image.get("ramdisk_id"),
            "os_command_line": image.get("os_command_line"),
        },
        "image_api_url": common.settings().image_api_url,
        "block_devices": [
            {
                "volume_id": bdm.volume_id,
                "device": bdm.device_name,
                "boot_index": bdm.boot_index,
                "connection_info": bdm.connection_info,
            }
            for bdm in instance.block_devices
            if bdm.connection_info
        ],
    }


def _fail(instance_uuid: str, message: str, details: str | None = None) -> None:
    """ERROR with a fault and the claim released, in a transaction of its own."""
    from control.conductor.manager import set_error

    with db.database().transaction() as sess:
        instance = sess.get(models.Instance, instance_uuid, with_for_update=True)
        if instance is not None:
            set_error(sess, instance, message, details)


def _schedule_and_build(
    instance: models.Instance, image: dict[str, Any], plan: network.Plan | None
) -> None:
    apis = common.settings().rpc.get()
    ctxt = context()
    spec = {
        "instance_uuid": instance.uuid,
        "vcpus": instance.vcpus,
        "memory_mb": instance.memory_mb,
        "disk_gb": instance.root_gb + instance.ephemeral_gb,
        "availability_zone": instance.availability_zone,
    }
    try:
        dest = apis.scheduler.select_destination(ctxt, spec)
    except rpc.RemoteError as exc:
        if exc.exc_type == "NoValidHost":
            _fail(instance.uuid, exc.message)
        else:
            _fail(instance.uuid, "Scheduling failed.", str(exc))
        _release_reserved(instance.uuid)
        return
    except rpc.RPCError as exc:
        _fail(instance.uuid, "Scheduling failed: the scheduler did not answer.", str(exc))
        _release_reserved(instance.uuid)
        return
    with db.database().transaction() as sess:
        row = sess.get(models.Instance, instance.uuid, with_for_update=True)
        if row is None:
            claims.release(sess, instance.uuid)
            return
        row.host = dest["host"]
        row.node = dest.get("node") or dest["host"]
        if not row.availability_zone:
            service = sess.scalars(
                select(models.Service).where(
                    models.Service.host == row.host,
                    models.Service.binary == services.COMPUTE_BINARY,
                )
            ).first()
            row.availability_zone = service.availability_zone if service else None
        zone = row.availability_zone or common.settings().default_availability_zone
        volumes = [(b.volume_id, b.device_name) for b in row.block_devices]
        delete_on_failure = {b.volume_id for b in row.block_devices if b.delete_on_termination}
        payload: dict[str, Any] | None = None
        if plan is None and not volumes:
            row.task_state = "spawning"
            payload = _instance_payload(row, image)
        else:
            row.task_state = "networking" if plan is not None else "block_device_mapping"
    if plan is not None:
        # The ports, made and bound once the host is known (Nova allocates them on the chosen
        # host with the binding in the same step); no row lock is held meanwhile.
        try:
            vifs = network.allocate(plan, instance.uuid, zone, dest["host"])
        except network.AllocationFailed as exc:
            _fail(instance.uuid, exc.message, exc.details)
            _release_reserved(instance.uuid)
            return
        with db.database().transaction() as sess:
            row = sess.get(models.Instance, instance.uuid, with_for_update=True)
            if row is None or row.task_state == "deleting":
                # Deleted while its ports were being made (the delete found none to release):
                # they go now, and there is nothing to build.
                network.deallocate(vifs)
                if row is None:
                    claims.release(sess, instance.uuid)
                return
            row.set_vifs(vifs)
            if volumes:
                row.task_state = "block_device_mapping"
            else:
                row.task_state = "spawning"
                payload = _instance_payload(row, image)
    if volumes:
        # The volumes reserved at create, connected to the chosen host and attached (Nova's
        # _prep_block_device, done here where the user's token is).
        payload = _connect_volumes(instance.uuid, volumes, dest["host"], image, delete_on_failure)
        if payload is None:
            return
    assert payload is not None
    try:
        apis.compute.build_instance(
            ctxt, dest["host"], payload, request.headers.get("X-Auth-Token")
        )
    except rpc.RPCError as exc:
        _fail(instance.uuid, f"Could not reach the compute service on {dest['host']}.", str(exc))


def _connect_volumes(
    instance_uuid: str,
    volumes: list[tuple[str, str]],
    host: str,
    image: dict[str, Any],
    delete_on_failure: set[str] | None = None,
) -> dict[str, Any] | None:
    """Connect and attach the server's volumes to ``host``; the build payload, or None when
    the build stops (failure: ERROR with a fault, the volumes ``available`` again; those that
    compute made from an image for this server with ``delete_on_termination`` are deleted)."""
    client = _volume_client_or_none()
    done: dict[str, dict[str, Any]] = {}
    failure = ""
    failed_id = ""
    if client is None:
        failure = "Failed to connect the server's volumes: there is no volume service."
    else:
        for volume_id, device in volumes:
            connected = False
            try:
                _ready(client, volume_id)
                info = client.initialize_connection(volume_id, host)
                connected = True
                client.attach(volume_id, instance_uuid, device, host)
            except volume.VolumeAPIError as exc:
                volume.rollback(client, volume_id, host if connected else None)
                failure = f"Failed to connect volume {volume_id} as {device}: {exc.message}"
                failed_id = volume_id
                break
            done[volume_id] = info
    if failure:
        for volume_id, _device in volumes:
            if client is None or volume_id == failed_id:
                continue
            if volume_id in done:
                volume.rollback(client, volume_id, host, attached=True)
            else:
                volume.rollback(client, volume_id, None)
        for volume_id, _device in volumes:
            if client is not None and volume_id in (delete_on_failure or set()):
                _delete_if_made_for(client, volume_id, instance_uuid)
        with db.database().transaction() as sess:
            row = sess.get(models.Instance, instance_uuid, with_for_update=True)
            if row is not None:
                row.block_devices.clear()
        _fail(instance_uuid, failure[:255], failure)
        return None
    with db.database().transaction() as sess:
        row = sess.get(models.Instance, instance_uuid, with_for_update=True)
        if row is None or row.task_state == "deleting":
            # Deleted meanwhile: the delete found the volumes only reserved; release them.
            for volume_id in done:
                volume.release(client, volume_id, host, None, delete=False)
            if row is None:
                claims.release(sess, instance_uuid)
            return None
        for bdm in row.block_devices:
            connection = done.get(bdm.volume_id)
            if connection is not None:
                bdm.connection_info = connection
                bdm.attachment_id = (
                    str((connection.get("data") or {}).get("attachment_id") or "") or None
                )
        row.task_state = "spawning"
        return _instance_payload(row, image)


def _recheck_quota(created: list[models.Instance], actions: list[models.InstanceAction]) -> None:
    """Nova's quota recheck: concurrent creates may each have passed the first check; with the
    new servers written, a project over its limit removes them again and answers 403."""
    sess = db.session()
    try:
        quota.check(
            sess,
            common.project_id(),
            common.settings().quota_defaults,
            {"instances": 0, "cores": 0, "ram": 0},
        )
    except errors.Forbidden:
        for row in [*created, *actions]:
            sess.delete(row)
        db.commit()
        raise
    # End the read transaction: scheduling uses transactions of its own, and the request's
    # connection goes back to the pool meanwhile.
    sess.commit()


@bp.post("/servers")
def create() -> Response:
    body = validation.validated_body(CREATE_SCHEMA)["server"]
    policy.enforce("os_compute_api:servers:create", {"project_id": common.project_id()})
    settings = common.settings()
    sess = db.session()
    flavor = flavors.find(_ref_id(body["flavorRef"]))
    if flavor.disabled:
        raise errors.BadRequest(f"Flavor {flavor.flavorid} is disabled.")
    mappings, boot_image = parse_block_devices(body.get("block_device_mapping_v2"))
    volume_backed = any(m.boot_index == 0 for m in mappings)
    image_ref = body.get("imageRef") or boot_image
    if volume_backed:
        image_id = ""
        image: dict[str, Any] = {}
    else:
        if not image_ref:
            raise errors.BadRequest(
                "Missing imageRef attribute: give imageRef, or a block_device_mapping_v2 "
                "entry with boot_index 0 and source_type volume to boot from a volume."
            )
        image_id = _ref_id(image_ref)
        image = common.check_image(image_id)
        if int(image.get("min_ram") or 0) > flavor.memory_mb:
            raise errors.BadRequest("Flavor's memory is too small for requested image.")
        if int(image.get("min_disk") or 0) > flavor.root_gb and flavor.root_gb:
            raise errors.BadRequest("Flavor's disk is too small for requested image.")
    key_data = None
    key_name = body.get("key_name")
    if key_name:
        key = sess.scalars(
            select(models.KeyPair).where(
                models.KeyPair.user_id == common.user_id(), models.KeyPair.name == key_name
            )
        ).first()
        if key is None:
            raise errors.BadRequest(f"Invalid key_name provided: {key_name}.")
        key_data = key.public_key
    zone = body.get("availability_zone") or None
    if zone and ":" in zone:
        zone = zone.split(":", 1)[0] or None
    metadata = body.get("metadata") or {}
    meta_limit = quota.limits(sess, common.project_id(), settings.quota_defaults)["metadata_items"]
    if 0 <= meta_limit < len(metadata):
        raise errors.Forbidden(
            f"Quota exceeded for metadata_items: Requested {len(metadata)}, but the limit is "
            f"{meta_limit} metadata_items"
        )
    min_count = _count(body, "min_count", 1)
    max_count = _count(body, "max_count", min_count)
    if min_count > max_count:
        raise errors.BadRequest("min_count must be <= max_count.")
    count = max_count
    if mappings and count > 1:
        raise errors.BadRequest(
            "Cannot attach one or more volumes to multiple instances: "
            "block_device_mapping_v2 with volumes needs min_count = max_count = 1."
        )
    volume_client = check_volumes(mappings) if mappings else None
    plan = network.prepare(body.get("networks"), body.get("security_groups"), count)
    quota.check(
        sess,
        common.project_id(),
        settings.quota_defaults,
        {
            "instances": count,
            "cores": flavor.vcpus * count,
            "ram": flavor.memory_mb * count,
        },
    )
    if volume_client is not None:
        reserve_volumes(volume_client, mappings)
    instance_uuid = str(uuid.uuid4())
    try:
        if volume_client is not None:
            create_image_volumes(volume_client, mappings, instance_uuid, body["name"])
        created, actions = _write_servers(
            body, flavor, image_id, key_name, key_data, zone, metadata, count, mappings,
            instance_uuid,
        )  # fmt: skip
        _recheck_quota(created, actions)
    except BaseException:
        if volume_client is not None:
            for mapping in mappings:
                if mapping.image_id and mapping.volume_id:
                    with _suppressed(f"delete of volume {mapping.volume_id}"):
                        volume_client.delete(mapping.volume_id)
                elif not mapping.image_id:
                    volume.rollback(volume_client, mapping.volume_id, None)
        raise
    for instance in created:
        _schedule_and_build(instance, image, plan)
    first = created[0]
    server = {
        "id": first.uuid,
        "links": common.links("servers", first.uuid),
        "adminPass": body.get("adminPass") or secrets.token_urlsafe(9),
        "OS-DCF:diskConfig": body.get("OS-DCF:diskConfig", "MANUAL"),
        "security_groups": [
            {"name": g.get("name", "default")} for g in body.get("security_groups") or []
        ]
        or [{"name": "default"}],
    }
    return common.respond({"server": server}, 202)


def _write_servers(
    body: dict[str, Any],
    flavor: Any,
    image_id: str,
    key_name: str | None,
    key_data: str | None,
    zone: str | None,
    metadata: dict[str, str],
    count: int,
    mappings: list[VolumeMapping],
    first_uuid: str,
) -> tuple[list[models.Instance], list[models.InstanceAction]]:
    sess = db.session()
    ctxt = context()
    volume_backed = any(m.boot_index == 0 for m in mappings)
    created: list[models.Instance] = []
    actions: list[models.InstanceAction] = []
    for index in range(count):
        name = body["name"] if count == 1 else f"{body['name']}-{index + 1}"
        instance = models.Instance(
            uuid=first_uuid if index == 0 else str(uuid.uuid4()),
            name=name,
            project_id=ctxt.project_id or "",
            user_id=ctxt.user_id or "",
            image_ref=image_id,
            flavor_id=flavor.flavorid,
            flavor_name=flavor.name,
            vcpus=flavor.vcpus,
            memory_mb=flavor.memory_mb,
            # Volume-backed: no local root disk to claim or create (Nova's BFV).
            root_gb=0 if volume_backed else flavor.root_gb,
            ephemeral_gb=flavor.ephemeral_gb,
            key_name=key_name,
            key_data=key_data,
            user_data=body.get("user_data"),
            availability_zone=zone,
            vm_state=models.BUILDING,
            task_state="scheduling",
            power_state=0,
            access_ipv4=body.get("accessIPv4"),
            access_ipv6=body.get("accessIPv6"),
            config_drive="True" if body.get("config_drive") in (True, "true", "True") else "",
        )
        instance.metadata_items = [
            models.InstanceMetadata(key=k, value=v) for k, v in metadata.items()
        ]
        instance.block_devices = [
            models.BlockDeviceMapping(
                volume_id=m.volume_id,
                device_name=m.device,
                boot_index=m.boot_index,
                delete_on_termination=m.delete_on_termination,
            )
            for m in mappings
        ]
        sess.add(instance)
        actions.append(record_action(instance.uuid, "create"))
        created.append(instance)
    db.commit()
    return created, actions


# -- update, delete ------------------------------------------------------------------------------


@bp.put("/servers/<server_id>")
def update(server_id: str) -> Response:
    body = validation.validated_body(UPDATE_SCHEMA)["server"]
    instance = find(server_id)
    policy.enforce("os_compute_api:servers:update", target(instance))
    if "name" in body:
        instance.name = body["name"]
    if "accessIPv4" in body:
        instance.access_ipv4 = body["accessIPv4"]
    if "accessIPv6" in body:
        instance.access_ipv6 = body["accessIPv6"]
    db.commit()
    return common.respond({"server": render(instance)})


def _host_up(host: str) -> bool:
    service = (
        db.session()
        .scalars(
            select(models.Service).where(
                models.Service.host == host, models.Service.binary == services.COMPUTE_BINARY
            )
        )
        .first()
    )
    return service is not None and services.is_up(service, common.settings().service_down_time)


@bp.delete("/servers/<server_id>")
def delete(server_id: str) -> Response:
    instance = find(server_id, lock=True)
    policy.enforce("os_compute_api:servers:delete", target(instance))
    if instance.locked and not common.is_admin():
        raise errors.Conflict(f"Instance {server_id} is locked.")
    record_action(instance.uuid, "delete")
    # Nova releases the ports after the guest is gone, from the compute host; here compute-api
    # holds the credentials, so it releases them now (the network agent unplugs the taps).
    network.deallocate(instance.vifs())
    instance.set_vifs([])
    host = instance.host
    uuid_ = instance.uuid
    bdms = [(b.volume_id, b.attachment_id, b.delete_on_termination) for b in instance.block_devices]
    if host is None or not _host_up(host):
        # Nothing runs anywhere (never scheduled), or the host is down: delete locally, as
        # Nova does; the agent removes a leftover guest when it resyncs.
        claims.release(db.session(), instance.uuid)
        db.session().delete(instance)
        db.commit()
        _release_volumes(uuid_, host, bdms)
        return Response(status=204)
    instance.task_state = "deleting"
    db.commit()
    compute = common.settings().rpc.get().compute
    if not bdms:
        try:
            compute.delete_instance(context(), host, uuid_)
        except rpc.RPCError as exc:
            raise errors.ServiceUnavailable(
                f"Could not reach the compute service on {host}: {exc}"
            ) from None
        return Response(status=204)
    # With volumes, as Nova: the guest goes first (a call: it returns once the guest is gone),
    # then each volume's export is stopped and its attachment removed.
    failed: rpc.RPCError | None = None
    try:
        compute.delete_instance_sync(context(), host, uuid_)
    except rpc.RPCError as exc:
        LOG.warning("server %s: delete on %s did not complete: %s", uuid_, host, exc)
        failed = exc
    _release_volumes(uuid_, host, bdms)
    if failed is not None and not isinstance(failed, rpc.RemoteError):
        raise errors.ServiceUnavailable(
            f"Could not reach the compute service on {host}: {failed}"
        ) from None
    return Response(status=204)


# -- actions -------------------------------------------------------------------------------------

ACTION_SCHEMA: dict[str, Any] = {
    "type": "object",
    "minProperties": 1,
    "maxProperties": 1,
}


def _conflict(instance: models.Instance, action: str) -> errors.Conflict:
    return errors.Conflict(
        f"Cannot '{action}' instance {instance.uuid} while it is in vm_state "
        f"{instance.vm_state}"
        + (f" and task_state {instance.task_state}" if instance.task_state else "")
    )


@bp.post("/servers/<server_id>/action")
def action(server_id: str) -> Response:
    body = validation.validated_body(ACTION_SCHEMA)
    name = next(iter(body))
    instance = find(server_id, lock=True)
    apis = common.settings().rpc.get()
    ctxt = context()
    if name == "os-getConsoleOutput":
        policy.enforce("os_compute_api:os-console-output", target(instance))
        args = body[name] or {}
        length = args.get("length") if isinstance(args, dict) else None
        if length is not None:
            try:
                length = int(length)
            except (TypeError, ValueError):
                raise errors.BadRequest("Invalid input for field 'length'.") from None
            if length < -1:
                raise errors.BadRequest("Invalid input for field 'length'.")
            if length == -1:
                length = None
        if not instance.host or instance.vm_state not in (models.ACTIVE, models.STOPPED):
            raise _conflict(instance, name)
        host = instance.host
        db.session().rollback()
        try:
            output = apis.compute.get_console_output(ctxt, host, instance.uuid, length)
        except rpc.RemoteError as exc:
            raise errors.Conflict(f"Console output is not available: {exc.message}") from None
        except rpc.RPCError as exc:
            raise errors.ServiceUnavailable(f"Compute host {host} did not answer: {exc}") from None
        return common.respond({"output": output})
    if instance.task_state is not None:
        raise _conflict(instance, name)
    if name == "os-stop":
        policy.enforce("os_compute_api:servers:stop", target(instance))
        if instance.vm_state != models.ACTIVE:
            raise _conflict(instance, "stop")
        instance.task_state = "powering-off"
        record_action(instance.uuid, "stop")
        cast = apis.compute.stop_instance
    elif name == "os-start":
        policy.enforce("os_compute_api:servers:start", target(instance))
        if instance.vm_state != models.STOPPED:
            raise _conflict(instance, "start")
        instance.task_state = "powering-on"
        record_action(instance.uuid, "start")
        cast = apis.compute.start_instance
    elif name == "reboot":
        policy.enforce("os_compute_api:servers:reboot", target(instance))
        args = body[name]
        kind = str(args.get("type", "")).upper() if isinstance(args, dict) else ""
        if kind not in ("SOFT", "HARD"):
            raise errors.BadRequest("Invalid input for field 'reboot.type': SOFT or HARD.")
        allowed = (models.ACTIVE, models.STOPPED) if kind == "HARD" else (models.ACTIVE,)
        if instance.vm_state not in allowed:
            raise _conflict(instance, "reboot")
        instance.task_state = "rebooting_hard" if kind == "HARD" else "rebooting"
        record_action(instance.uuid, "reboot")
        host = instance.host or ""
        db.commit()
        _cast(lambda: apis.compute.reboot_instance(ctxt, host, instance.uuid, kind == "HARD"))
        return Response(status=202)
    else:
        raise errors.BadRequest(f"There is no such action: {name}")
    host = instance.host or ""
    db.commit()
    _cast(lambda: cast(ctxt, host, instance.uuid))
    return Response(status=202)


def _cast(send: Any) -> None:
    try:
        send()
    except rpc.RPCError as exc:
        raise errors.ServiceUnavailable(f"Could not reach the compute service: {exc}") from None


# -- metadata ------------------------------------------------------------------------------------

METADATA_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"metadata": _METADATA},
    "required": ["metadata"],
    "additionalProperties": False,
}
META_ITEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"meta": {**_METADATA, "minProperties": 1, "maxProperties": 1}},
    "required": ["meta"],
    "additionalProperties": False,
}


def _set_metadata(instance: models.Instance, values: dict[str, str], replace: bool) -> None:
    current = {} if replace else instance.metadata_dict()
    current.update(values)
    limit = quota.limits(db.session(), instance.project_id, common.settings().quota_defaults)[
        "metadata_items"
    ]
    if 0 <= limit < len(current):
        raise errors.Forbidden(
            f"Quota exceeded for metadata_items: Requested {len(current)}, but the limit is "
            f"{limit} metadata_items"
        )
    existing = {item.key: item for item in instance.metadata_items}
    for key, item in existing.items():
        if key not in current:
            instance.metadata_items.remove(item)
    for key, value in current.items():
        if key in existing:
            existing[key].value = value
        else:
            instance.metadata_items.append(models.InstanceMetadata(key=key, value=value))


@bp.get("/servers/<server_id>/os-security-groups")
def security_groups(server_id: str) -> Response:
    """Nova's proxy listing of the server's security groups (the openstack.cloud ``server``
    module reads it): the groups of its ports, read from the network service."""
    instance = find(server_id)
    policy.enforce("os_compute_api:os-security-groups:list", target(instance))
    group_ids: list[str] = []
    for vif in instance.vifs():
        group_ids += [g for g in vif.get("security_groups") or [] if g not in group_ids]
    if not group_ids:
        return common.respond({"security_groups": []})
    client = network.user_client()
    groups = []
    if client is not None:
        for group_id in group_ids:
            try:
                group = client.call("GET", f"/security-groups/{group_id}")["security_group"]
            except network.NetworkAPIError as exc:
                if exc.status == 404:
                    continue
                raise errors.ServiceUnavailable(
                    f"The network service failed: {exc.message}"
                ) from None
            groups.append(network.nova_security_group(group))
    return common.respond({"security_groups": groups})


def _server_ports(instance: models.Instance) -> list[dict[str, Any]]:
    client = network.user_client()
    if client is None:
        return []
    try:
        found = client.call("GET", "/ports", params={"device_id": instance.uuid})
    except network.NetworkAPIError as exc:
        raise errors.ServiceUnavailable(f"The network service failed: {exc.message}") from None
    ports: list[dict[str, Any]] = found.get("ports", [])
    return ports


@bp.get("/servers/<server_id>/os-interface")
def interfaces_index(server_id: str) -> Response:
    """The server's ports (Nova proxies the network API)."""
    instance = find(server_id)
    policy.enforce("os_compute_api:os-attach-interfaces:list", target(instance))
    ports = _server_ports(instance)
    return common.respond(
        {"interfaceAttachments": [network.interface_attachment(p) for p in ports]}
    )


@bp.get("/servers/<server_id>/os-interface/<port_id>")
def interfaces_show(server_id: str, port_id: str) -> Response:
    instance = find(server_id)
    policy.enforce("os_compute_api:os-attach-interfaces:show", target(instance))
    for port in _server_ports(instance):
        if port["id"] == port_id:
            return common.respond({"interfaceAttachment": network.interface_attachment(port)})
    raise errors.NotFound(f"Port {port_id} could not be found.")


@bp.get("/servers/<server_id>/metadata")
def metadata_index(server_id: str) -> Response:
    instance = find(server_id)
    policy.enforce("os_compute_api:server-metadata:index", target(instance))
    return common.respond({"metadata": instance.metadata_dict()})


@bp.post("/servers/<server_id>/metadata")
def metadata_update(server_id: str) -> Response:
    values = validation.validated_body(METADATA_SCHEMA)["metadata"]
    instance = find(server_id)
    policy.enforce("os_compute_api:server-metadata:update", target(instance))
    _set_metadata(instance, values, replace=False)
    db.commit()
    return common.respond({"metadata": instance.metadata_dict()})


@bp.put("/servers/<server_id>/metadata")
def metadata_replace(server_id: str) -> Response:
    values = validation.validated_body(METADATA_SCHEMA)["metadata"]
    instance = find(server_id)
    policy.enforce("os_compute_api:server-metadata:update_all", target(instance))
    _set_metadata(instance, values, replace=True)
    db.commit()
    return common.respond({"metadata": instance.metadata_dict()})


@bp.get("/servers/<server_id>/metadata/<key>")
def metadata_show(server_id: str, key: str) -> Response:
    instance = find(server_id)
    policy.enforce("os_compute_api:server-metadata:show", target(instance))
    values = instance.metadata_dict()
    if key not in values:
        raise errors.NotFound(f"Metadata item {key} was not found.")
    return common.respond({"meta": {key: values[key]}})


@bp.put("/servers/<server_id>/metadata/<key>")
def metadata_set(server_id: str, key: str) -> Response:
    meta = validation.validated_body(META_ITEM_SCHEMA)["meta"]
    if list(meta) != [key]:
        raise errors.BadRequest("Request body and URI mismatch.")
    instance = find(server_id)
    policy.enforce("os_compute_api:server-metadata:create", target(instance))
    _set_metadata(instance, meta, replace=False)
    db.commit()
    return common.respond({"meta": meta})


@bp.delete("/servers/<server_id>/metadata/<key>")
def metadata_delete(server_id: str, key: str) -> Response:
    instance = find(server_id)
    policy.enforce("os_compute_api:server-metadata:delete", target(instance))
    for item in instance.metadata_items:
        if item.key == key:
            instance.metadata_items.remove(item)
            db.commit()
            return Response(status=204)
    raise errors.NotFound(f"Metadata item {key} was not found.")


ATTACH_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "interfaceAttachment": {
            "type": "object",
            "properties": {
                "port_id": {"type": "string"},
                "net_id": {"type": "string"},
                "fixed_ips": {
                    "type": "array",
                    "maxItems": 1,
                    "items": {
                        "type": "object",
                        "properties": {"ip_address": {"type": "string"}},
                        "required": ["ip_address"],
                    },
                },
                "tag": {"type": "string"},
            },
            "additionalProperties": False,
        }
    },
    "additionalProperties": False,
}


def _plugged(instance: models.Instance, action: str) -> str:
    """The host of a server whose NICs may change now (ACTIVE or SHUTOFF, no task); else 409."""
    if (
        instance.vm_state not in (models.ACTIVE, models.STOPPED)
        or instance.task_state is not None
        or not instance.host
    ):
        raise _conflict(instance, action)
    return instance.host


def _set_cached_vifs(instance_uuid: str, change: Any) -> None:
    """Apply ``change`` (a function of the VIF list) to the cache, under the row lock."""
    with db.database().transaction() as sess:
        row = sess.get(models.Instance, instance_uuid, with_for_update=True)
        if row is not None:
            row.set_vifs(change(row.vifs()))


@bp.post("/servers/<server_id>/os-interface")
def interfaces_attach(server_id: str) -> Response:
    """Nova's interface attach: a new port on ``net_id`` (optionally with the fixed IP), the
    user's ``port_id``, or neither (the only network the project can use); made and bound here,
    plugged by the agent (RPC call), then cached."""
    body = (validation.validated_body(ATTACH_SCHEMA).get("interfaceAttachment")) or {}
    instance = find(server_id)
    policy.enforce("os_compute_api:os-attach-interfaces:create", target(instance))
    if instance.locked and not common.is_admin():
        raise errors.Conflict(f"Instance {server_id} is locked.")
    host = _plugged(instance, "attach_interface")
    if body.get("port_id") and body.get("net_id"):
        raise errors.BadRequest("Must not input both network_id and port_id")
    if body.get("port_id"):
        requested: Any = [{"port": body["port_id"]}]
    elif body.get("net_id"):
        nic: dict[str, Any] = {"uuid": body["net_id"]}
        if body.get("fixed_ips"):
            nic["fixed_ip"] = body["fixed_ips"][0]["ip_address"]
        requested = [nic]
    else:
        requested = None
    plan = network.prepare(requested, None, 1)
    if plan is None:
        raise errors.BadRequest("No network is available to attach an interface to.")
    zone = instance.availability_zone or common.settings().default_availability_zone
    uuid_ = instance.uuid
    active = instance.vm_state == models.ACTIVE
    db.session().rollback()  # no transaction held over the network and RPC calls
    try:
        vifs = network.allocate(plan, uuid_, zone, host)
    except network.AllocationFailed as exc:
        raise errors.BadRequest(exc.message) from None
    (vif,) = vifs
    try:
        common.settings().rpc.get().compute.attach_interface(
            context(), host, uuid_, network.interfaces(vifs)[0]
        )
    except rpc.RPCError as exc:
        network.deallocate(vifs)
        message = exc.message if isinstance(exc, rpc.RemoteError) else str(exc)
        raise errors.Conflict(
            f"Failed to attach network adapter device to {uuid_}: {message}"
        ) from None
    _set_cached_vifs(uuid_, lambda current: [*current, vif])
    port = {
        "id": vif["id"],
        "status": "ACTIVE" if active else "DOWN",
        "network_id": vif["network_id"],
        "mac_address": vif["mac_address"],
        "fixed_ips": vif["fixed_ips"],
    }
    return common.respond({"interfaceAttachment": network.interface_attachment(port)})


@bp.delete("/servers/<server_id>/os-interface/<port_id>")
def interfaces_detach(server_id: str, port_id: str) -> Response:
    """Unplug (RPC call to the agent), then delete the port (unbind it if the user gave it)."""
    instance = find(server_id)
    policy.enforce("os_compute_api:os-attach-interfaces:delete", target(instance))
    if instance.locked and not common.is_admin():
        raise errors.Conflict(f"Instance {server_id} is locked.")
    host = _plugged(instance, "detach_interface")
    vifs = [v for v in instance.vifs() if v["id"] == port_id]
    if not vifs:
        raise errors.NotFound(f"Port {port_id} is not attached")
    uuid_ = instance.uuid
    db.session().rollback()
    try:
        common.settings().rpc.get().compute.detach_interface(
            context(), host, uuid_, network.interfaces(vifs)[0]
        )
    except rpc.RPCError as exc:
        message = exc.message if isinstance(exc, rpc.RemoteError) else str(exc)
        raise errors.Conflict(
            f"Failed to detach network adapter device from {uuid_}: {message}"
        ) from None
    network.deallocate(vifs)
    _set_cached_vifs(uuid_, lambda current: [v for v in current if v["id"] != port_id])
    return Response(status=202)


# -- instance actions ----------------------------------------------------------------------------


def _render_action(row: models.InstanceAction, events: bool) -> dict[str, Any]:
    body: dict[str, Any] = {
        "action": row.action,
        "instance_uuid": row.instance_uuid,
        "request_id": row.request_id,
        "user_id": row.user_id,
        "project_id": row.project_id,
        "start_time": row.start_time.isoformat(),
        "message": row.message,
    }
    if events:
        body["events"] = [
            {
                "event": e.event,
                "start_time": e.start_time.isoformat(),
                "finish_time": e.finish_time.isoformat() if e.finish_time else None,
                "result": e.result,
                **({"host": e.host, "traceback": e.traceback} if common.is_admin() else {}),
            }
            for e in row.events
        ]
    return body


def _visible_actions(server_id: str) -> Any:
    query = select(models.InstanceAction).where(models.InstanceAction.instance_uuid == server_id)
    if not common.is_admin():
        query = query.where(models.InstanceAction.project_id == common.project_id())
    return query


@bp.get("/servers/<server_id>/os-instance-actions")
def actions_index(server_id: str) -> Response:
    policy.enforce("os_compute_api:os-instance-actions:list", {"project_id": common.project_id()})
    rows = list(
        db.session().scalars(
            _visible_actions(server_id).order_by(
                models.InstanceAction.start_time.desc(), models.InstanceAction.id.desc()
            )
        )
    )
    if not rows:
        find(server_id)
    return common.respond({"instanceActions": [_render_action(r, False) for r in rows]})


@bp.get("/servers/<server_id>/os-instance-actions/<request_id>")
def actions_show(server_id: str, request_id: str) -> Response:
    policy.enforce("os_compute_api:os-instance-actions:show", {"project_id": common.project_id()})
    row = (
        db.session()
        .scalars(_visible_actions(server_id).where(models.InstanceAction.request_id == request_id))
        .first()
    )
    if row is None:
        raise errors.NotFound(
            f"Action for request_id {request_id} on instance {server_id} not found"
        )
    return common.respond({"instanceAction": _render_action(row, True)})
