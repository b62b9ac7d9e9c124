"""Routers: ``/v2.0/routers``, their external gateway (``external_gateway_info`` with
``network_id``, ``enable_snat``, ``external_fixed_ips``) and interfaces
(``PUT .../add_router_interface`` / ``remove_router_interface`` by ``subnet_id`` or ``port_id``).
As in Neutron, an interface is a port with ``device_owner: network:router_interface`` and the
gateway one with ``network:router_gateway``; a router with interfaces cannot be deleted.

Router ports have port security off and no security groups (a router forwards other hosts'
addresses); the l3 agent's ``get_routers`` binds them to its host (``control/network/rpc_l3.py``).
A router port that goes is notified as ``port_delete`` besides the ``router_update``."""

from __future__ import annotations

import ipaddress
import uuid
from typing import Any

from flask import Blueprint, Response
from sqlalchemy import select

from control.common import db, validation
from control.common.app import no_content
from control.network import ipam, models, quota, render
from control.network.api import common, networks, ports, subnets
from control.network.api.common import (
    Listing,
    bad_request,
    conflict,
    enforce,
    enforce_attributes,
    not_found,
    respond,
)

bp = Blueprint("network_routers", __name__)

_GATEWAY = {
    "type": ["object", "null"],
    "properties": {
        "network_id": validation.ID,
        "enable_snat": validation.BOOLEAN,
        "external_fixed_ips": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "subnet_id": validation.ID,
                    "ip_address": {"type": "string", "maxLength": 64},
                },
                "additionalProperties": False,
            },
        },
    },
    # `{}` clears the gateway, as null does (`openstack router unset --external-gateway` sends
    # it); any other content needs network_id (_gateway_info).
    "additionalProperties": False,
}
_COMMON = {
    "name": {"type": "string", "maxLength": 255},
    "description": {"type": "string", "maxLength": 255},
    "admin_state_up": validation.BOOLEAN,
    "external_gateway_info": _GATEWAY,
}
CREATE = {
    "type": "object",
    "properties": {**_COMMON, "project_id": validation.ID, "tenant_id": validation.ID},
    "additionalProperties": False,
}
UPDATE = {"type": "object", "properties": _COMMON, "additionalProperties": False}
INTERFACE = {
    "type": "object",
    "properties": {"subnet_id": validation.ID, "port_id": validation.ID},
    "additionalProperties": False,
}

LISTING = Listing(
    "routers",
    models.Router,
    {
        "id": models.Router.id,
        "name": models.Router.name,
        "description": models.Router.description,
        "status": models.Router.status,
        "admin_state_up": models.Router.admin_state_up,
        "project_id": models.Router.project_id,
        "tenant_id": models.Router.project_id,
        "revision_number": models.Router.revision_number,
        "created_at": models.Router.created_at,
        "updated_at": models.Router.updated_at,
    },
    booleans=frozenset({"admin_state_up"}),
    integers=frozenset({"revision_number"}),
)


def target(router: models.Router) -> dict[str, Any]:
    return {"project_id": router.project_id, "tenant_id": router.project_id}


def find_router(router_id: str, lock: bool = False) -> models.Router:
    router = db.session().get(models.Router, router_id, with_for_update=lock or None)
    if router is None or not (common.is_admin() or router.project_id == common.project_id()):
        raise not_found(f"Router {router_id} could not be found", "RouterNotFound")
    return router


def gateway_port(router: models.Router) -> models.Port | None:
    return db.session().get(models.Port, router.gw_port_id) if router.gw_port_id else None


def interface_ports(router_id: str) -> list[models.Port]:
    return list(
        db.session().scalars(
            select(models.Port)
            .where(
                models.Port.device_id == router_id,
                models.Port.device_owner == models.DEVICE_OWNER_ROUTER_INTF,
            )
            .order_by(models.Port.created_at)
        )
    )


def show_body(router: models.Router) -> dict[str, Any]:
    return render.router(router, gateway_port(router))


def _gateway_info(body: dict[str, Any]) -> dict[str, Any] | None:
    """The request's gateway: None for null or `{}` (no gateway), else it must name network_id."""
    info = body.get("external_gateway_info") or None
    if info is not None and "network_id" not in info:
        raise bad_request(
            "Invalid input for field 'router.external_gateway_info.network_id': "
            "'network_id' is a required property"
        )
    return info


def _gateway_attributes(info: dict[str, Any] | None) -> list[str]:
    if not info:
        return []
    return [f"external_gateway_info:{key}" for key in info if key != "network_id"]


def _deleted(port: models.Port) -> dict[str, Any]:
    """The ``port_delete`` notification's arguments."""
    return {"port_id": port.id, "network_id": port.network_id, "host": port.binding_host_id,
            "mac_address": port.mac_address}  # fmt: skip


def _notify_deleted(deleted: list[dict[str, Any]]) -> None:
    for details in deleted:
        if details["host"]:
            common.notify("port_delete", **details)


def _set_gateway(router: models.Router, info: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Replace the router's gateway with ``info`` (None: remove it); the removed port's
    ``port_delete`` arguments."""
    sess = db.session()
    deleted: list[dict[str, Any]] = []
    current = gateway_port(router)
    if info is None or (current is not None and info["network_id"] != router.gw_network_id):
        if router.gw_network_id:
            in_use = sess.scalars(
                select(models.FloatingIP.id).where(models.FloatingIP.router_id == router.id)
            ).first()
            if in_use is not None:
                raise conflict(
                    f"Gateway cannot be updated for router {router.id}, since a gateway to "
                    f"external network {router.gw_network_id} is required by one or more "
                    "floating IPs.",
                    "RouterExternalGatewayInUseByFloatingIp",
                )
        if current is not None:
            deleted.append(_deleted(current))
            router.gw_port_id = None
            sess.flush()
            sess.delete(current)
            sess.flush()
        router.gw_network_id = None
        current = None
    if info is None:
        return deleted
    net = networks.find_network(info["network_id"])
    if not net.router_external:
        raise bad_request(
            f"Bad router request: Network {net.id} is not a valid external network.",
            "BadRequest",
        )
    router.enable_snat = info.get("enable_snat", True)
    if current is None:
        port = ports.new_port(
            net,
            "",
            info.get("external_fixed_ips") or None,
            device_id=router.id,
            device_owner=models.DEVICE_OWNER_ROUTER_GW,
            port_security_enabled=False,
        )
        sess.flush()
        router.gw_port_id = port.id
        router.gw_network_id = net.id
    elif "external_fixed_ips" in info:
        ports.set_fixed_ips(current, net, info["external_fixed_ips"] or None)
    return deleted


@bp.get("/v2.0/routers")
def list_routers() -> Response:
    query = select(models.Router)
    if not common.is_admin():
        query = query.where(models.Router.project_id == common.project_id())
    return common.list_response(LISTING, query, show_body)


@bp.get("/v2.0/routers/<router_id>")
def show_router(router_id: str) -> Response:
    router = find_router(router_id)
    enforce("get_router", target(router))
    return respond({"router": common.only_fields(show_body(router))})


@bp.post("/v2.0/routers")
def create_router() -> Response:
    body = common.resource_body("router", CREATE)
    project = body.get("project_id") or body.get("tenant_id") or common.project_id()
    info = _gateway_info(body)
    enforce_attributes("create", "router", _gateway_attributes(info), {"project_id": project})
    sess = db.session()
    quota.check(sess, project, common.settings().quota_defaults, {"router": 1})
    router = models.Router(
        id=str(uuid.uuid4()),
        project_id=project,
        name=body.get("name", ""),
        description=body.get("description", ""),
        admin_state_up=body.get("admin_state_up", True),
        enable_snat=True,
    )
    sess.add(router)
    sess.flush()
    _set_gateway(router, info)
    db.commit()
    common.notify("router_update", router_id=router.id)
    return respond({"router": show_body(router)}, 201)


@bp.put("/v2.0/routers/<router_id>")
def update_router(router_id: str) -> Response:
    body = common.resource_body("router", UPDATE)
    router = find_router(router_id, lock=True)
    info = _gateway_info(body)
    attributes = list(body) + _gateway_attributes(info)
    enforce_attributes("update", "router", attributes, target(router))
    deleted = []
    if "external_gateway_info" in body:
        deleted = _set_gateway(router, info)
    for key in ("name", "description", "admin_state_up"):
        if key in body:
            setattr(router, key, body[key])
    router.touch()
    db.commit()
    common.notify("router_update", router_id=router.id)
    _notify_deleted(deleted)
    return respond({"router": show_body(router)})


@bp.delete("/v2.0/routers/<router_id>")
def delete_router(router_id: str) -> Response:
    sess = db.session()
    router = find_router(router_id, lock=True)
    enforce("delete_router", target(router))
    if interface_ports(router.id):
        raise conflict(f"Router {router.id} still has ports", "RouterInUse")
    deleted = _set_gateway(router, None)
    sess.delete(router)
    db.commit()
    common.notify("router_update", router_id=router_id)
    _notify_deleted(deleted)
    return no_content()


def _interface_body() -> tuple[str | None, str | None]:
    body = validation.json_body()
    validation.validate(INTERFACE, body)
    subnet_id, port_id = body.get("subnet_id"), body.get("port_id")
    if subnet_id and port_id:
        raise bad_request("Bad router request: Cannot specify both subnet-id and port-id")
    if not subnet_id and not port_id:
        raise bad_request("Bad router request: Either subnet_id or port_id must be specified")
    return subnet_id, port_id


def _check_subnet_free(router: models.Router, subnet: models.Subnet) -> None:
    cidr = ipaddress.ip_network(subnet.cidr)
    for port in interface_ports(router.id):
        for allocation in port.fixed_ips:
            if allocation.subnet_id == subnet.id:
                raise bad_request(
                    f"Bad router request: Router already has a port on subnet {subnet.id}.",
                    "BadRequest",
                )
            other = db.session().get(models.Subnet, allocation.subnet_id)
            if other is not None and ipam.overlapping(ipaddress.ip_network(other.cidr), cidr):
                raise bad_request(
                    f"Bad router request: Cidr {subnet.cidr} of subnet {subnet.id} overlaps "
                    f"with cidr {other.cidr} of subnet {other.id}.",
                    "BadRequest",
                )


@bp.put("/v2.0/routers/<router_id>/add_router_interface")
def add_interface(router_id: str) -> Response:
    subnet_id, port_id = _interface_body()
    router = find_router(router_id, lock=True)
    enforce("add_router_interface", target(router))
    if port_id:
        port, net = ports.find_port(port_id, lock=True)
        if port.device_id or port.device_owner:
            raise conflict(
                f"Unable to complete operation on port {port.id} for network {net.id}. Port "
                f"already has an attached device {port.device_id}.",
                "PortInUse",
            )
        if not port.fixed_ips:
            raise bad_request("Bad router request: Router port must have at least one fixed IP.")
        for allocation in port.fixed_ips:
            _check_subnet_free(router, subnets.find_subnet(allocation.subnet_id))
        group_ids = port.security_group_ids()
        port.device_id = router.id
        port.device_owner = models.DEVICE_OWNER_ROUTER_INTF
        port.port_security_enabled = False
        port.security_groups = []
        port.touch()
    else:
        group_ids = []
        assert subnet_id is not None
        subnet = subnets.find_subnet(subnet_id)
        net = networks.find_network(subnet.network_id)
        if not (common.is_admin() or net.project_id == router.project_id or net.shared):
            raise bad_request(
                f"Bad router request: Cannot add interface to router {router.id}: subnet "
                f"{subnet.id} belongs to another project.",
                "BadRequest",
            )
        if not subnet.gateway_ip:
            raise bad_request(
                "Bad router request: Subnet for router interface must have a gateway IP.",
                "BadRequest",
            )
        _check_subnet_free(router, subnet)
        port = ports.new_port(
            net,
            router.project_id,
            [{"subnet_id": subnet.id, "ip_address": subnet.gateway_ip}],
            device_id=router.id,
            device_owner=models.DEVICE_OWNER_ROUTER_INTF,
            port_security_enabled=False,
        )
    router.touch()
    db.commit()
    common.notify("router_update", router_id=router.id)
    if group_ids:  # the groups lost a member
        common.notify("security_group_update", security_group_ids=group_ids)
    return respond(render.router_interface(router, port))


@bp.put("/v2.0/routers/<router_id>/remove_router_interface")
def remove_interface(router_id: str) -> Response:
    subnet_id, port_id = _interface_body()
    sess = db.session()
    router = find_router(router_id, lock=True)
    enforce("remove_router_interface", target(router))
    interfaces = interface_ports(router.id)
    if port_id:
        port = next((p for p in interfaces if p.id == port_id), None)
        if port is None:
            raise not_found(
                f"Router {router.id} does not have an interface with id {port_id}",
                "RouterInterfaceNotFound",
            )
    else:
        port = next(
            (p for p in interfaces if any(a.subnet_id == subnet_id for a in p.fixed_ips)), None
        )
        if port is None:
            raise not_found(
                f"Router {router.id} has no interface on subnet {subnet_id}",
                "RouterInterfaceNotFoundForSubnet",
            )
    answer = render.router_interface(router, port)
    for allocation in port.fixed_ips:
        if _needed_by_floating_ips(router.id, allocation.subnet_id):
            raise conflict(
                f"Router interface for subnet {allocation.subnet_id} on router {router.id} "
                "cannot be deleted, as it is required by one or more floating IPs.",
                "RouterInterfaceInUseByFloatingIP",
            )
    deleted = _deleted(port)
    sess.delete(port)
    router.touch()
    db.commit()
    common.notify("router_update", router_id=router.id)
    _notify_deleted([deleted])
    return respond(answer)


def _needed_by_floating_ips(router_id: str, subnet_id: str) -> bool:
    found = db.session().scalars(
        select(models.FloatingIP.id)
        .join(
            models.IPAllocation,
            (models.IPAllocation.port_id == models.FloatingIP.fixed_port_id)
            & (models.IPAllocation.ip_address == models.FloatingIP.fixed_ip_address),
        )
        .where(models.FloatingIP.router_id == router_id, models.IPAllocation.subnet_id == subnet_id)
    )
    return found.first() is not None


def router_for(external_network_id: str, subnet_id: str) -> str | None:
    """The router that connects ``subnet_id`` to ``external_network_id`` (an interface on the
    subnet and a gateway on the network), or None."""
    found = db.session().scalars(
        select(models.Router.id)
        .join(models.Port, models.Port.device_id == models.Router.id)
        .join(models.IPAllocation, models.IPAllocation.port_id == models.Port.id)
        .where(
            models.Router.gw_network_id == external_network_id,
            models.Port.device_owner == models.DEVICE_OWNER_ROUTER_INTF,
            models.IPAllocation.subnet_id == subnet_id,
        )
        .order_by(models.Router.created_at)
    )
    return found.first()
