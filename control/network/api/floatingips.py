"""Floating IPs: ``/v2.0/floatingips``. An address from a subnet of a ``router:external``
network (held by a port with ``device_owner: network:floatingip``), associated with a port's
fixed IP through ``port_id`` (and ``fixed_ip_address`` when the port has several IPv4
addresses); ``router_id`` is the router joining that fixed IP's subnet to the external network,
and without one the association is refused as Neutron does (404
``ExternalGatewayForFloatingIPNotFound``)."""

from __future__ import annotations

import ipaddress
import uuid
from typing import Any

from flask import Blueprint, Response
from sqlalchemy import select

from control.common import db, validation
from control.common.app import no_content
from control.network import models, quota, render
from control.network.api import common, networks, ports, routers
from control.network.api.common import (
    Listing,
    bad_request,
    conflict,
    enforce,
    enforce_attributes,
    not_found,
    respond,
)

bp = Blueprint("network_floatingips", __name__)

_IP = {"type": ["string", "null"], "maxLength": 64}
CREATE = {
    "type": "object",
    "properties": {
        "floating_network_id": validation.ID,
        "floating_ip_address": _IP,
        "subnet_id": validation.NULLABLE_ID,
        "port_id": validation.NULLABLE_ID,
        "fixed_ip_address": _IP,
        "description": {"type": "string", "maxLength": 255},
        "project_id": validation.ID,
        "tenant_id": validation.ID,
    },
    "required": ["floating_network_id"],
    "additionalProperties": False,
}
UPDATE = {
    "type": "object",
    "properties": {
        "port_id": validation.NULLABLE_ID,
        "fixed_ip_address": _IP,
        "description": {"type": "string", "maxLength": 255},
    },
    "additionalProperties": False,
}

LISTING = Listing(
    "floatingips",
    models.FloatingIP,
    {
        "id": models.FloatingIP.id,
        "floating_network_id": models.FloatingIP.floating_network_id,
        "floating_ip_address": models.FloatingIP.floating_ip_address,
        "port_id": models.FloatingIP.fixed_port_id,
        "fixed_ip_address": models.FloatingIP.fixed_ip_address,
        "router_id": models.FloatingIP.router_id,
        "status": models.FloatingIP.status,
        "description": models.FloatingIP.description,
        "project_id": models.FloatingIP.project_id,
        "tenant_id": models.FloatingIP.project_id,
        "revision_number": models.FloatingIP.revision_number,
        "created_at": models.FloatingIP.created_at,
        "updated_at": models.FloatingIP.updated_at,
    },
    integers=frozenset({"revision_number"}),
)


def target(fip: models.FloatingIP) -> dict[str, Any]:
    return {"project_id": fip.project_id, "tenant_id": fip.project_id}


def find_floatingip(fip_id: str, lock: bool = False) -> models.FloatingIP:
    fip = db.session().get(models.FloatingIP, fip_id, with_for_update=lock or None)
    if fip is None or not (common.is_admin() or fip.project_id == common.project_id()):
        raise not_found(f"Floating IP {fip_id} could not be found", "FloatingIPNotFound")
    return fip


def _associate(fip: models.FloatingIP, port_id: str | None, fixed_ip: str | None) -> None:
    """Point ``fip`` at ``port_id``'s fixed IP (None: disassociate), with its router."""
    if port_id is None:
        fip.fixed_port_id = None
        fip.fixed_ip_address = None
        fip.router_id = None
        return
    port, _net = ports.find_port(port_id)
    if port.project_id != fip.project_id and not common.is_admin():
        raise bad_request(
            f"Cannot create floating IP and bind it to Port {port.id}, since that port is "
            "owned by a different tenant."
        )
    ipv4 = [a for a in port.fixed_ips if ipaddress.ip_address(a.ip_address).version == 4]
    if fixed_ip is not None:
        chosen = next((a for a in ipv4 if a.ip_address == fixed_ip), None)
        if chosen is None:
            raise bad_request(f"Port {port.id} does not have fixed ip {fixed_ip}")
    elif not ipv4:
        raise bad_request(f"Bad floatingip request: Port {port.id} does not have any IPv4 address.")
    elif len(ipv4) > 1:
        raise bad_request(
            f"Port {port.id} has multiple fixed IPv4 addresses. Must provide a specific "
            "IPv4 address when assigning a floating IP"
        )
    else:
        chosen = ipv4[0]
    router_id = routers.router_for(fip.floating_network_id, chosen.subnet_id)
    if router_id is None:
        raise not_found(
            f"External network {fip.floating_network_id} is not reachable from subnet "
            f"{chosen.subnet_id}.  Therefore, cannot associate Port {port.id} with a Floating "
            "IP.",
            "ExternalGatewayForFloatingIPNotFound",
        )
    other = (
        db.session()
        .scalars(
            select(models.FloatingIP).where(
                models.FloatingIP.fixed_port_id == port.id,
                models.FloatingIP.fixed_ip_address == chosen.ip_address,
                models.FloatingIP.floating_network_id == fip.floating_network_id,
                models.FloatingIP.id != fip.id,
            )
        )
        .first()
    )
    if other is not None:
        raise conflict(
            f"Cannot associate floating IP {fip.floating_ip_address} ({fip.id}) with port "
            f"{port.id} using fixed IP {chosen.ip_address}, as that fixed IP already has a "
            f"floating IP on external network {fip.floating_network_id}.",
            "FloatingIPPortAlreadyAssociated",
        )
    fip.fixed_port_id = port.id
    fip.fixed_ip_address = chosen.ip_address
    fip.router_id = router_id


@bp.get("/v2.0/floatingips")
def list_floatingips() -> Response:
    query = select(models.FloatingIP)
    if not common.is_admin():
        query = query.where(models.FloatingIP.project_id == common.project_id())
    return common.list_response(LISTING, query, render.floatingip)


@bp.get("/v2.0/floatingips/<fip_id>")
def show_floatingip(fip_id: str) -> Response:
    fip = find_floatingip(fip_id)
    enforce("get_floatingip", target(fip))
    return respond({"floatingip": common.only_fields(render.floatingip(fip))})


@bp.post("/v2.0/floatingips")
def create_floatingip() -> Response:
    body = common.resource_body("floatingip", CREATE)
    project = body.get("project_id") or body.get("tenant_id") or common.project_id()
    given = [k for k, v in body.items() if v is not None]
    enforce_attributes("create", "floatingip", given, {"project_id": project})
    sess = db.session()
    net = networks.find_network(body["floating_network_id"])
    if not net.router_external:
        raise bad_request(
            f"Bad floatingip request: Network {net.id} is not a valid external network."
        )
    if not any(subnet.ip_version == 4 for subnet in net.subnets):
        raise bad_request(
            f"Bad floatingip request: Network {net.id} does not contain any IPv4 subnet."
        )
    quota.check(sess, project, common.settings().quota_defaults, {"floatingip": 1})
    fip_id = str(uuid.uuid4())
    wanted: dict[str, str] = {}
    if body.get("subnet_id"):
        wanted["subnet_id"] = body["subnet_id"]
    if body.get("floating_ip_address"):
        wanted["ip_address"] = body["floating_ip_address"]
    if not wanted:
        v4 = [s for s in net.subnets if s.ip_version == 4]
        requested = None if len(v4) == len(net.subnets) else [{"subnet_id": v4[0].id}]
    else:
        requested = [wanted]
    port = ports.new_port(
        net,
        "",
        requested,
        device_id=fip_id,
        device_owner=models.DEVICE_OWNER_FLOATINGIP,
        port_security_enabled=False,
    )
    address = next(
        a.ip_address for a in port.fixed_ips if ipaddress.ip_address(a.ip_address).version == 4
    )
    fip = models.FloatingIP(
        id=fip_id,
        project_id=project,
        floating_network_id=net.id,
        floating_ip_address=address,
        floating_port_id=port.id,
        description=body.get("description", ""),
        status="DOWN",
    )
    sess.add(fip)
    _associate(fip, body.get("port_id"), body.get("fixed_ip_address"))
    db.commit()
    if fip.router_id:
        common.notify("router_update", router_id=fip.router_id)
    return respond({"floatingip": render.floatingip(fip)}, 201)


@bp.put("/v2.0/floatingips/<fip_id>")
def update_floatingip(fip_id: str) -> Response:
    body = common.resource_body("floatingip", UPDATE)
    fip = find_floatingip(fip_id, lock=True)
    enforce("update_floatingip", target(fip))
    old_router = fip.router_id
    if "port_id" in body:
        _associate(fip, body["port_id"], body.get("fixed_ip_address"))
    if "description" in body:
        fip.description = body["description"]
    fip.touch()
    db.commit()
    for router_id in {old_router, fip.router_id} - {None}:
        common.notify("router_update", router_id=router_id)
    return respond({"floatingip": render.floatingip(fip)})


@bp.delete("/v2.0/floatingips/<fip_id>")
def delete_floatingip(fip_id: str) -> Response:
    sess = db.session()
    fip = find_floatingip(fip_id, lock=True)
    enforce("delete_floatingip", target(fip))
    router_id = fip.router_id
    port = sess.get(models.Port, fip.floating_port_id)
    sess.delete(fip)
    sess.flush()
    if port is not None:
        sess.delete(port)
    db.commit()
    if router_id:
        common.notify("router_update", router_id=router_id)
    return no_content()
