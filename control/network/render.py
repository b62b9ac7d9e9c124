"""How network resources look on the wire (Neutron v2.0 bodies), and Neutron's error body.

Every resource carries ``project_id`` and ``tenant_id`` (the same value), ``description``,
``tags`` (always empty: tags are not implemented), ``created_at``/``updated_at`` (UTC, no
fraction, ``Z``) and ``revision_number``. Attributes only admins may see (``provider:*``,
``binding:*``) are removed by the API before answering, by policy.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from control.common import errors
from control.network import models

# Neutron's error type when the API raised a plain error of the common family.
_DEFAULT_TYPES = {
    400: "HTTPBadRequest",
    401: "HTTPUnauthorized",
    403: "HTTPForbidden",
    404: "HTTPNotFound",
    405: "HTTPMethodNotAllowed",
    409: "HTTPConflict",
    413: "HTTPRequestEntityTooLarge",
    415: "HTTPUnsupportedMediaType",
    503: "HTTPServiceUnavailable",
}


def neutron_error(error: errors.APIError) -> dict[str, Any]:
    """``{"NeutronError": {"type", "message", "detail"}}`` (the app's error style)."""
    kind = error.error_type or _DEFAULT_TYPES.get(error.code, "HTTPInternalServerError")
    return {"NeutronError": {"type": kind, "message": error.message, "detail": ""}}


def isotime(value: datetime | None) -> str | None:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ") if value is not None else None


def _standard(obj: models.StandardAttrs, project_id: str, tags: bool = True) -> dict[str, Any]:
    body: dict[str, Any] = {
        "tenant_id": project_id,
        "project_id": project_id,
        "description": obj.description or "",
    }
    if tags:
        body["tags"] = []
    body.update(
        {
            "created_at": isotime(obj.created_at),
            "updated_at": isotime(obj.updated_at),
            "revision_number": obj.revision_number or 0,
        }
    )
    return body


def network(net: models.Network) -> dict[str, Any]:
    return {
        "id": net.id,
        "name": net.name,
        "status": net.status,
        "admin_state_up": net.admin_state_up,
        "shared": net.shared,
        "subnets": [subnet.id for subnet in net.subnets],
        "mtu": net.mtu,
        "router:external": net.router_external,
        "port_security_enabled": net.port_security_enabled,
        "provider:network_type": net.network_type,
        "provider:physical_network": net.physical_network,
        "provider:segmentation_id": net.segmentation_id,
        **_standard(net, net.project_id),
    }


def subnet(sub: models.Subnet) -> dict[str, Any]:
    return {
        "id": sub.id,
        "name": sub.name,
        "network_id": sub.network_id,
        "ip_version": sub.ip_version,
        "cidr": sub.cidr,
        "gateway_ip": sub.gateway_ip,
        "allocation_pools": list(sub.allocation_pools or []),
        "enable_dhcp": sub.enable_dhcp,
        "dns_nameservers": list(sub.dns_nameservers or []),
        "host_routes": list(sub.host_routes or []),
        "ipv6_ra_mode": sub.ipv6_ra_mode,
        "ipv6_address_mode": sub.ipv6_address_mode,
        "subnetpool_id": None,
        **_standard(sub, sub.project_id),
    }


def vif_type(port: models.Port) -> str:
    return "bridge" if port.binding_host_id else "unbound"


def vif_details(port: models.Port) -> dict[str, Any]:
    if not port.binding_host_id:
        return {}
    return {
        "connectivity": "l2",
        "port_filter": True,
        "bridge_name": bridge_name(port.network_id),
    }


def bridge_name(network_id: str) -> str:
    """The Linux bridge of a network on every host (Neutron's linuxbridge naming)."""
    return f"brq{network_id[:11]}"


def port(
    p: models.Port,
    fixed_ips: list[dict[str, str]] | None = None,
    security_groups: list[str] | None = None,
) -> dict[str, Any]:
    """The port's body; a list passes its ``fixed_ips`` and sorted ``security_groups``, loaded
    for the whole page, and the port's own collections are then not read."""
    if fixed_ips is None:
        fixed_ips = [{"subnet_id": a.subnet_id, "ip_address": a.ip_address} for a in p.fixed_ips]
    if security_groups is None:
        security_groups = p.security_group_ids()
    return {
        "id": p.id,
        "name": p.name,
        "network_id": p.network_id,
        "mac_address": p.mac_address,
        "admin_state_up": p.admin_state_up,
        "status": p.status,
        "device_id": p.device_id,
        "device_owner": p.device_owner,
        "fixed_ips": fixed_ips,
        "security_groups": security_groups,
        "port_security_enabled": p.port_security_enabled,
        "allowed_address_pairs": list(p.allowed_address_pairs or []),
        "binding:host_id": p.binding_host_id,
        "binding:vif_type": vif_type(p),
        "binding:vif_details": vif_details(p),
        "binding:vnic_type": p.binding_vnic_type,
        "binding:profile": dict(p.binding_profile or {}),
        **_standard(p, p.project_id),
    }


def security_group_rule(rule: models.SecurityGroupRule) -> dict[str, Any]:
    return {
        "id": rule.id,
        "security_group_id": rule.security_group_id,
        "direction": rule.direction,
        "ethertype": rule.ethertype,
        "protocol": rule.protocol,
        "port_range_min": rule.port_range_min,
        "port_range_max": rule.port_range_max,
        "remote_ip_prefix": rule.remote_ip_prefix,
        "remote_group_id": rule.remote_group_id,
        **_standard(rule, rule.project_id, tags=False),
    }


def security_group(group: models.SecurityGroup) -> dict[str, Any]:
    return {
        "id": group.id,
        "name": group.name,
        "security_group_rules": [security_group_rule(rule) for rule in group.rules],
        **_standard(group, group.project_id),
    }


def router(r: models.Router, gateway: models.Port | None) -> dict[str, Any]:
    info: dict[str, Any] | None = None
    if r.gw_network_id:
        info = {
            "network_id": r.gw_network_id,
            "enable_snat": r.enable_snat,
            "external_fixed_ips": [
                {"subnet_id": a.subnet_id, "ip_address": a.ip_address}
                for a in (gateway.fixed_ips if gateway is not None else [])
            ],
        }
    return {
        "id": r.id,
        "name": r.name,
        "status": r.status,
        "admin_state_up": r.admin_state_up,
        "external_gateway_info": info,
        **_standard(r, r.project_id),
    }


def router_interface(r: models.Router, p: models.Port) -> dict[str, Any]:
    """The answer of add/remove_router_interface."""
    subnet_ids = [a.subnet_id for a in p.fixed_ips]
    return {
        "id": r.id,
        "tenant_id": r.project_id,
        "project_id": r.project_id,
        "port_id": p.id,
        "network_id": p.network_id,
        "subnet_id": subnet_ids[0] if subnet_ids else None,
        "subnet_ids": subnet_ids,
    }


def floatingip(fip: models.FloatingIP) -> dict[str, Any]:
    return {
        "id": fip.id,
        "floating_network_id": fip.floating_network_id,
        "floating_ip_address": fip.floating_ip_address,
        "port_id": fip.fixed_port_id,
        "fixed_ip_address": fip.fixed_ip_address,
        "router_id": fip.router_id,
        "status": fip.status,
        **_standard(fip, fip.project_id),
    }


def agenttime(value: datetime | None) -> str | None:
    """Agents' times as Neutron gives them: ``2030-01-01 00:00:00``."""
    return value.strftime("%Y-%m-%d %H:%M:%S") if value is not None else None


def agent(a: models.Agent, alive: bool) -> dict[str, Any]:
    return {
        "id": a.id,
        "agent_type": a.agent_type,
        "binary": a.binary,
        "topic": a.topic,
        "host": a.host,
        "admin_state_up": a.admin_state_up,
        "alive": alive,
        "availability_zone": a.availability_zone,
        "description": a.description,
        "configurations": dict(a.configurations or {}),
        "created_at": agenttime(a.created_at),
        "started_at": agenttime(a.started_at),
        "heartbeat_timestamp": agenttime(a.heartbeat_timestamp),
        "resources_synced": None,
    }
