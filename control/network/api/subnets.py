"""Subnets: ``/v2.0/subnets``. IPv4 and IPv6 (addresses from the pools; SLAAC is not computed),
gateway (default the first host address, ``null`` for none), allocation pools, DNS servers,
host routes; overlapping CIDRs are refused on one network and allowed across networks. A subnet
with ports on it cannot be deleted (409 naming them)."""

from __future__ import annotations

import ipaddress
import uuid
from typing import Any

from flask import Blueprint, Response
from sqlalchemy import or_, select

from control.common import db, errors, validation
from control.common.app import no_content
from control.network import ipam, models, quota, render
from control.network.api import common, networks
from control.network.api.common import (
    Listing,
    conflict,
    enforce,
    enforce_attributes,
    hide_attributes,
    not_found,
    respond,
)

bp = Blueprint("network_subnets", __name__)

IPV6_MODES = ["slaac", "dhcpv6-stateful", "dhcpv6-stateless", None]
_IP = {"type": "string", "maxLength": 64}
_POOLS = {
    "type": "array",
    "items": {
        "type": "object",
        "properties": {"start": _IP, "end": _IP},
        "required": ["start", "end"],
        "additionalProperties": False,
    },
}
_ROUTES = {
    "type": "array",
    "items": {
        "type": "object",
        "properties": {"destination": _IP, "nexthop": _IP},
        "required": ["destination", "nexthop"],
        "additionalProperties": False,
    },
}
_COMMON = {
    "name": {"type": "string", "maxLength": 255},
    "description": {"type": "string", "maxLength": 255},
    "gateway_ip": {"type": ["string", "null"], "maxLength": 64},
    "allocation_pools": _POOLS,
    "dns_nameservers": {"type": "array", "items": _IP},
    "host_routes": _ROUTES,
    "enable_dhcp": validation.BOOLEAN,
}
CREATE = {
    "type": "object",
    "properties": {
        **_COMMON,
        "network_id": validation.ID,
        "ip_version": {"enum": [4, 6]},
        "cidr": {"type": "string", "maxLength": 64},
        "ipv6_ra_mode": {"enum": IPV6_MODES},
        "ipv6_address_mode": {"enum": IPV6_MODES},
        "subnetpool_id": {"type": "null"},
        "segment_id": {"type": "null"},
        "project_id": validation.ID,
        "tenant_id": validation.ID,
    },
    "required": ["network_id", "ip_version"],
    "additionalProperties": False,
}
UPDATE = {"type": "object", "properties": _COMMON, "additionalProperties": False}

LISTING = Listing(
    "subnets",
    models.Subnet,
    {
        "id": models.Subnet.id,
        "name": models.Subnet.name,
        "description": models.Subnet.description,
        "network_id": models.Subnet.network_id,
        "ip_version": models.Subnet.ip_version,
        "cidr": models.Subnet.cidr,
        "gateway_ip": models.Subnet.gateway_ip,
        "enable_dhcp": models.Subnet.enable_dhcp,
        "ipv6_ra_mode": models.Subnet.ipv6_ra_mode,
        "ipv6_address_mode": models.Subnet.ipv6_address_mode,
        "project_id": models.Subnet.project_id,
        "tenant_id": models.Subnet.project_id,
        "revision_number": models.Subnet.revision_number,
        "created_at": models.Subnet.created_at,
        "updated_at": models.Subnet.updated_at,
    },
    booleans=frozenset({"enable_dhcp"}),
    integers=frozenset({"ip_version", "revision_number"}),
)


def target(sub: models.Subnet) -> dict[str, Any]:
    net = sub.network
    return {**networks.target(net), "project_id": sub.project_id}


def subnet_not_found(subnet_id: str) -> errors.NotFound:
    return not_found(f"Subnet {subnet_id} could not be found.", "SubnetNotFound")


def find_subnet(subnet_id: str) -> models.Subnet:
    sub = db.session().get(models.Subnet, subnet_id)
    if sub is None or not (
        common.is_admin()
        or sub.project_id == common.project_id()
        or sub.network.shared
        or sub.network.router_external
    ):
        raise subnet_not_found(subnet_id)
    return sub


def show_body(sub: models.Subnet) -> dict[str, Any]:
    body = render.subnet(sub)
    hide_attributes("subnet", body, target(sub))
    return body


def _checked(call: Any, *args: Any) -> Any:
    try:
        return call(*args)
    except ipam.IpamError as exc:
        raise common.ipam_error(exc) from None


def _gateway(net: ipam.IPNetwork, body: dict[str, Any], current: str | None) -> str | None:
    if "gateway_ip" not in body:
        return current
    if body["gateway_ip"] is None:
        return None
    gateway = _checked(ipam.parse_address, body["gateway_ip"], "gateway_ip")
    _checked(ipam.check_gateway, net, gateway)
    return str(gateway)


def _dns(values: list[str], version: int) -> list[str]:
    for value in values:
        address = _checked(ipam.parse_address, value, "dns_nameservers")
        if address.version != version:
            raise common.invalid(f"IP version mismatch for DNS server {value}")
    if len(set(values)) != len(values):
        raise common.bad_request(
            f"Invalid input for dns_nameservers. Reason: Duplicate nameserver in {values}."
        )
    return values


def _routes(values: list[dict[str, str]], version: int) -> list[dict[str, str]]:
    routes = []
    for route in values:
        try:
            destination = ipaddress.ip_network(route["destination"])
        except ValueError:
            raise common.bad_request(
                f"Invalid input for host_routes. Reason: '{route['destination']}' is not a "
                "valid IP subnet."
            ) from None
        nexthop = _checked(ipam.parse_address, route["nexthop"], "host_routes")
        if destination.version != version or nexthop.version != version:
            raise common.invalid(f"IP version mismatch for host route {route}")
        routes.append({"destination": str(destination), "nexthop": str(nexthop)})
    return routes


def _pools(net: ipam.IPNetwork, body: dict[str, Any], gateway: str | None) -> list[ipam.Pool]:
    gateway_address = ipaddress.ip_address(gateway) if gateway else None
    if "allocation_pools" in body and body["allocation_pools"]:
        pools = _checked(ipam.parse_pools, net, body["allocation_pools"])
        _checked(ipam.check_gateway_outside_pools, gateway_address, pools)
        return list(pools)
    return ipam.default_pools(net, gateway_address)


@bp.get("/v2.0/subnets")
def list_subnets() -> Response:
    query = select(models.Subnet).join(models.Network)
    if not common.is_admin():
        query = query.where(
            or_(
                models.Subnet.project_id == common.project_id(),
                models.Network.shared.is_(True),
                models.Network.router_external.is_(True),
            )
        )
    return common.list_response(LISTING, query, show_body)


@bp.get("/v2.0/subnets/<subnet_id>")
def show_subnet(subnet_id: str) -> Response:
    sub = find_subnet(subnet_id)
    enforce("get_subnet", target(sub))
    return respond({"subnet": common.only_fields(show_body(sub))})


@bp.post("/v2.0/subnets")
def create_subnet() -> Response:
    body = common.resource_body("subnet", CREATE)
    sess = db.session()
    net = networks.find_network(body["network_id"], lock=True)
    project = body.get("project_id") or body.get("tenant_id") or common.project_id()
    enforce_attributes("create", "subnet", body, {**networks.target(net), "project_id": project})
    if "cidr" not in body:
        raise common.bad_request(
            "Bad subnets request: a cidr must be specified in the absence of a subnet pool"
        )
    version = body["ip_version"]
    cidr = _checked(ipam.parse_cidr, body["cidr"], version)
    _checked(ipam.check_no_overlap, cidr, [s.cidr for s in net.subnets], net.id)
    if version == 4 and (body.get("ipv6_ra_mode") or body.get("ipv6_address_mode")):
        raise common.invalid("ipv6_ra_mode or ipv6_address_mode cannot be set for IPv4 subnets")
    default_gateway = str(ipam.default_gateway(cidr))
    gateway = _gateway(cidr, body, default_gateway)
    pools = _pools(cidr, body, gateway)
    quota.check(sess, project, common.settings().quota_defaults, {"subnet": 1})
    sub = models.Subnet(
        id=str(uuid.uuid4()),
        project_id=project,
        network_id=net.id,
        name=body.get("name", ""),
        description=body.get("description", ""),
        ip_version=version,
        cidr=str(cidr),
        gateway_ip=gateway,
        enable_dhcp=body.get("enable_dhcp", True),
        ipv6_ra_mode=body.get("ipv6_ra_mode"),
        ipv6_address_mode=body.get("ipv6_address_mode"),
        allocation_pools=[pool.to_dict() for pool in pools],
        dns_nameservers=_dns(body.get("dns_nameservers", []), version),
        host_routes=_routes(body.get("host_routes", []), version),
    )
    sess.add(sub)
    net.touch()
    db.commit()
    return respond({"subnet": show_body(sub)}, 201)


@bp.put("/v2.0/subnets/<subnet_id>")
def update_subnet(subnet_id: str) -> Response:
    body = common.resource_body("subnet", UPDATE)
    sub = find_subnet(subnet_id)
    enforce_attributes("update", "subnet", body, target(sub))
    cidr = ipaddress.ip_network(sub.cidr)
    if "gateway_ip" in body or "allocation_pools" in body:
        gateway = _gateway(cidr, body, sub.gateway_ip)
        if "allocation_pools" in body:
            pools = _pools(cidr, body, gateway)
        else:
            pools = ipam.pools_from_dicts(sub.allocation_pools)
            gateway_address = ipaddress.ip_address(gateway) if gateway else None
            _checked(ipam.check_gateway_outside_pools, gateway_address, pools)
        sub.gateway_ip = gateway
        sub.allocation_pools = [pool.to_dict() for pool in pools]
    if "dns_nameservers" in body:
        sub.dns_nameservers = _dns(body["dns_nameservers"], sub.ip_version)
    if "host_routes" in body:
        sub.host_routes = _routes(body["host_routes"], sub.ip_version)
    for key in ("name", "description", "enable_dhcp"):
        if key in body:
            setattr(sub, key, body[key])
    sub.touch()
    db.commit()
    return respond({"subnet": show_body(sub)})


@bp.delete("/v2.0/subnets/<subnet_id>")
def delete_subnet(subnet_id: str) -> Response:
    sess = db.session()
    sub = find_subnet(subnet_id)
    enforce("delete_subnet", target(sub))
    sess.get(models.Network, sub.network_id, with_for_update=True)
    ports = list(
        sess.scalars(
            select(models.Port)
            .join(models.IPAllocation, models.IPAllocation.port_id == models.Port.id)
            .where(models.IPAllocation.subnet_id == sub.id)
        ).unique()
    )
    in_use = sorted(p.id for p in ports if p.device_owner != models.DEVICE_OWNER_DHCP)
    if in_use:
        raise conflict(
            f"Unable to complete operation on subnet {sub.id}: One or more ports have an IP "
            f"allocation from this subnet: {', '.join(in_use)}.",
            "SubnetInUse",
        )
    for port in ports:
        sess.delete(port)
    sess.flush()
    sub.network.touch()
    sess.delete(sub)
    db.commit()
    return no_content()
