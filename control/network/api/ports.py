"""Ports: ``/v2.0/ports``. Fixed IPs by subnet and/or address (allocations of a subnet are
serialised by locking its row; the ``ip_allocations`` key is the last word), MACs
``fa:16:3e:xx:xx:xx`` unique per network, the project's default security group when none is
given and port security is on, allowed address pairs, and the ``binding:*`` attributes (admins and
services only): ``binding:vif_type`` is ``bridge`` once ``binding:host_id`` is set, ``unbound``
before. The status stays ``DOWN`` until an agent reports the port ACTIVE over RPC."""

from __future__ import annotations

import ipaddress
import re
import secrets
import uuid
from typing import Any

from flask import Blueprint, Response
from sqlalchemy import or_, select
from sqlalchemy.orm import lazyload

from control.common import db, errors, validation
from control.common.app import no_content
from control.network import ipam, models, quota, render
from control.network.api import common, networks, security_groups
from control.network.api.common import (
    Listing,
    bad_request,
    conflict,
    enforce,
    enforce_attributes,
    hide_attributes,
    not_found,
    respond,
)

bp = Blueprint("network_ports", __name__)

MAC_PREFIX = "fa:16:3e"
_MAC = re.compile(r"^([0-9a-fA-F]{2}:){5}[0-9a-fA-F]{2}$")
SERVICE_OWNERS = (
    models.DEVICE_OWNER_ROUTER_INTF,
    models.DEVICE_OWNER_ROUTER_GW,
    models.DEVICE_OWNER_FLOATINGIP,
)

_FIXED_IPS = {
    "type": "array",
    "items": {
        "type": "object",
        "properties": {
            "subnet_id": validation.ID,
            "ip_address": {"type": "string", "maxLength": 64},
        },
        "additionalProperties": False,
    },
}
_PAIRS = {
    "type": "array",
    "items": {
        "type": "object",
        "properties": {
            "ip_address": {"type": "string", "maxLength": 64},
            "mac_address": {"type": "string", "maxLength": 32},
        },
        "required": ["ip_address"],
        "additionalProperties": False,
    },
}
_COMMON = {
    "name": {"type": "string", "maxLength": 255},
    "description": {"type": "string", "maxLength": 255},
    "admin_state_up": validation.BOOLEAN,
    "device_id": {"type": "string", "maxLength": 255},
    "device_owner": {"type": "string", "maxLength": 255},
    "fixed_ips": _FIXED_IPS,
    "security_groups": {"type": ["array", "null"], "items": validation.ID},
    "port_security_enabled": validation.BOOLEAN,
    "allowed_address_pairs": _PAIRS,
    "mac_address": {"type": "string", "maxLength": 32},
    "binding:host_id": {"type": ["string", "null"], "maxLength": 255},
    "binding:profile": {"type": ["object", "null"]},
    "binding:vnic_type": {"enum": ["normal"]},
}
CREATE = {
    "type": "object",
    "properties": {
        **_COMMON,
        "network_id": validation.ID,
        "project_id": validation.ID,
        "tenant_id": validation.ID,
    },
    "required": ["network_id"],
    "additionalProperties": False,
}
UPDATE = {"type": "object", "properties": _COMMON, "additionalProperties": False}


def _fixed_ips_filter(query: Any, values: list[str]) -> Any:
    """``fixed_ips=ip_address=X`` / ``fixed_ips=subnet_id=Y`` (each must hold)."""
    for value in values:
        key, _, wanted = value.partition("=")
        column = {
            "ip_address": models.IPAllocation.ip_address,
            "subnet_id": models.IPAllocation.subnet_id,
        }.get(key)
        if column is not None:
            query = query.where(
                models.Port.id.in_(select(models.IPAllocation.port_id).where(column == wanted))
            )
        elif key == "ip_address_substr":
            query = query.where(
                models.Port.id.in_(
                    select(models.IPAllocation.port_id).where(
                        models.IPAllocation.ip_address.contains(wanted)
                    )
                )
            )
        else:
            raise bad_request(f"Invalid input for fixed_ips filter: {value}")
    return query


def _security_groups_filter(query: Any, values: list[str]) -> Any:
    return query.where(
        models.Port.id.in_(
            select(models.PortSecurityGroup.port_id).where(
                models.PortSecurityGroup.security_group_id.in_(values)
            )
        )
    )


LISTING = Listing(
    "ports",
    models.Port,
    {
        "id": models.Port.id,
        "name": models.Port.name,
        "description": models.Port.description,
        "network_id": models.Port.network_id,
        "mac_address": models.Port.mac_address,
        "admin_state_up": models.Port.admin_state_up,
        "status": models.Port.status,
        "device_id": models.Port.device_id,
        "device_owner": models.Port.device_owner,
        "port_security_enabled": models.Port.port_security_enabled,
        "binding:host_id": models.Port.binding_host_id,
        "binding:vnic_type": models.Port.binding_vnic_type,
        "project_id": models.Port.project_id,
        "tenant_id": models.Port.project_id,
        "revision_number": models.Port.revision_number,
        "created_at": models.Port.created_at,
        "updated_at": models.Port.updated_at,
    },
    booleans=frozenset({"admin_state_up", "port_security_enabled"}),
    integers=frozenset({"revision_number"}),
    special={"fixed_ips": _fixed_ips_filter, "security_groups": _security_groups_filter},
)


def target(port: models.Port, net: models.Network) -> dict[str, Any]:
    return {**networks.target(net), "project_id": port.project_id}


def port_not_found(port_id: str) -> errors.NotFound:
    return not_found(f"Port {port_id} could not be found.", "PortNotFound")


def find_port(port_id: str, lock: bool = False) -> tuple[models.Port, models.Network]:
    sess = db.session()
    port = sess.get(models.Port, port_id, with_for_update=lock or None)
    if port is None:
        raise port_not_found(port_id)
    net = sess.get(models.Network, port.network_id)
    assert net is not None
    if not (
        common.sees_all_ports()
        or port.project_id == common.project_id()
        or net.project_id == common.project_id()
    ):
        raise port_not_found(port_id)
    return port, net


def show_body(port: models.Port, net: models.Network | None = None) -> dict[str, Any]:
    if net is None:
        net = db.session().get(models.Network, port.network_id)
        assert net is not None
    body = render.port(port)
    hide_attributes("port", body, target(port, net))
    return body


# -- MACs and fixed IPs --------------------------------------------------------------------------


def _mac_in_use(network_id: str, mac: str) -> bool:
    found = db.session().scalars(
        select(models.Port.id).where(
            models.Port.network_id == network_id, models.Port.mac_address == mac
        )
    )
    return found.first() is not None


def choose_mac(network_id: str, requested: str | None) -> str:
    if requested is not None:
        if (
            not _MAC.match(requested)
            or requested in ("00:00:00:00:00:00",)
            or (int(requested[:2], 16) & 1)
        ):
            raise bad_request(
                f"Invalid input for mac_address. Reason: '{requested}' is not a valid MAC address."
            )
        mac = requested.lower()
        if _mac_in_use(network_id, mac):
            raise conflict(
                f"Unable to complete operation for network {network_id}. The mac address "
                f"{mac} is in use.",
                "MacAddressInUse",
            )
        return mac
    for _attempt in range(16):
        mac = f"{MAC_PREFIX}:" + ":".join(f"{b:02x}" for b in secrets.token_bytes(3))
        if not _mac_in_use(network_id, mac):
            return mac
    raise errors.ServiceUnavailable(
        f"Unable to generate a unique mac on network {network_id}.",
        error_type="MacAddressGenerationFailure",
    )


def _exhausted(network_id: str) -> errors.Conflict:
    return conflict(
        f"No more IP addresses available on network {network_id}.", "IpAddressGenerationFailure"
    )


def _used(subnet_id: str) -> set[ipam.IPAddress]:
    return {ipaddress.ip_address(row) for row in models.used_addresses(db.session(), subnet_id)}


def _next_free(subnet: models.Subnet) -> ipam.IPAddress | None:
    return ipam.allocate(ipam.pools_from_dicts(subnet.allocation_pools), _used(subnet.id))


def _wanted(
    net: models.Network, subnets: dict[str, models.Subnet], requested: list[dict[str, str]]
) -> list[tuple[models.Subnet, ipam.IPAddress | None]]:
    wanted: list[tuple[models.Subnet, ipam.IPAddress | None]] = []
    for entry in requested:
        subnet_id, raw_ip = entry.get("subnet_id"), entry.get("ip_address")
        if subnet_id is not None and subnet_id not in subnets:
            raise common.invalid(
                f"Failed to create port on network {net.id}, because fixed_ips included "
                f"invalid subnet {subnet_id}."
            )
        if raw_ip is None:
            if subnet_id is None:
                raise bad_request(
                    "Invalid input for fixed_ips. Reason: each entry needs subnet_id or ip_address."
                )
            wanted.append((subnets[subnet_id], None))
            continue
        try:
            address = ipam.parse_address(raw_ip, "fixed_ips")
        except ipam.IpamError as exc:
            raise common.ipam_error(exc) from None
        if subnet_id is not None:
            subnet = subnets[subnet_id]
            if not ipam.is_host_address(ipaddress.ip_network(subnet.cidr), address):
                raise bad_request(
                    f"IP address {address} is not a valid IP for the specified subnet.",
                    "InvalidIpForSubnet",
                )
        else:
            matches = [
                s
                for s in subnets.values()
                if ipam.is_host_address(ipaddress.ip_network(s.cidr), address)
            ]
            if not matches:
                raise bad_request(
                    f"IP address {address} is not a valid IP for any of the subnets on the "
                    "specified network.",
                    "InvalidIpForNetwork",
                )
            subnet = matches[0]
        wanted.append((subnet, address))
    return wanted


def _automatic(
    net: models.Network, subnets: dict[str, models.Subnet]
) -> list[tuple[models.Subnet, ipam.IPAddress | None]]:
    """One address from the first IPv4 subnet with room, one from the first IPv6 one."""
    wanted: list[tuple[models.Subnet, ipam.IPAddress | None]] = []
    for version in (4, 6):
        candidates = [s for s in subnets.values() if s.ip_version == version]
        if not candidates:
            continue
        for subnet in sorted(candidates, key=lambda s: s.created_at):
            address = _next_free(subnet)
            if address is not None:
                wanted.append((subnet, address))
                break
        else:
            raise _exhausted(net.id)
    return wanted


def set_fixed_ips(
    port: models.Port, net: models.Network, requested: list[dict[str, str]] | None
) -> None:
    """Give ``port`` the fixed IPs asked for (``None``: automatic), keeping the ones it has that
    are asked for again and freeing the others."""
    sess = db.session()
    # Lock the network, then its subnets, as the DHCP endpoint does (the other order deadlocked
    # with it), and before the new port's row is flushed: its foreign key would first take a
    # shared lock on the network row, which the lock then has to upgrade (two creates on one
    # network deadlocked on that).
    with sess.no_autoflush:
        sess.execute(
            select(models.Network.id).where(models.Network.id == net.id).with_for_update()
        )
        locked = sess.scalars(
            select(models.Subnet)
            .where(models.Subnet.network_id == net.id)
            .order_by(models.Subnet.id)
            .with_for_update()
        ).all()
    subnets = {subnet.id: subnet for subnet in locked}
    wanted = _automatic(net, subnets) if requested is None else _wanted(net, subnets, requested)
    current = list(port.fixed_ips)
    kept: list[models.IPAllocation] = []
    new: list[tuple[models.Subnet, ipam.IPAddress | None]] = []
    for subnet, address in wanted:
        match = next(
            (
                a
                for a in current
                if a not in kept
                and a.subnet_id == subnet.id
                and (address is None or a.ip_address == str(address))
            ),
            None,
        )
        if match is not None:
            kept.append(match)
        else:
            new.append((subnet, address))
    for allocation in current:
        if allocation not in kept:
            port.fixed_ips.remove(allocation)
    sess.flush()
    for subnet, address in new:
        if address is None:
            address = _next_free(subnet)
            if address is None:
                raise _exhausted(net.id)
        elif address in _used(subnet.id):
            raise conflict(
                f"IP address {address} already allocated in subnet {subnet.id}",
                "IpAddressAlreadyAllocated",
            )
        port.fixed_ips.append(
            models.IPAllocation(subnet_id=subnet.id, ip_address=str(address), network_id=net.id)
        )
        sess.flush()


def _pairs(raw: list[dict[str, str]], mac: str) -> list[dict[str, str]]:
    pairs = []
    for pair in raw:
        try:
            ipaddress.ip_network(pair["ip_address"], strict=False)
        except ValueError:
            raise bad_request(
                "Invalid input for allowed_address_pairs. Reason: "
                f"'{pair['ip_address']}' is not a valid IP address or subnet."
            ) from None
        pair_mac = pair.get("mac_address", mac)
        if not _MAC.match(pair_mac):
            raise bad_request(
                f"Invalid input for allowed_address_pairs. Reason: '{pair_mac}' is not a "
                "valid MAC address."
            )
        entry = {"ip_address": pair["ip_address"], "mac_address": pair_mac.lower()}
        if entry in pairs:
            raise bad_request(
                "Request contains duplicate address pair: mac_address "
                f"{entry['mac_address']} ip_address {entry['ip_address']}.",
                "DuplicateAddressPairInRequest",
            )
        pairs.append(entry)
    return pairs


def _security_group_ids(raw: list[str]) -> list[str]:
    ids = []
    for group_id in raw:
        group = security_groups.find_group(group_id)
        if group.id not in ids:
            ids.append(group.id)
    return ids


def _policy_attributes(body: dict[str, Any]) -> list[str]:
    names = [name for name in body if name != "fixed_ips"]
    for entry in body.get("fixed_ips") or []:
        names.extend(f"fixed_ips:{key}" for key in entry)
    if not str(body.get("device_owner", "")).startswith("network:"):
        names = [name for name in names if name != "device_owner"]
    return names


def new_port(
    net: models.Network,
    project_id: str,
    fixed_ips: list[dict[str, str]] | None = None,
    **attrs: Any,
) -> models.Port:
    """A port on ``net`` with its MAC and fixed IPs, added to the session (not committed).
    Routers and floating IPs make theirs with this too."""
    port = models.Port(
        id=str(uuid.uuid4()),
        project_id=project_id,
        network_id=net.id,
        mac_address=choose_mac(net.id, attrs.pop("mac_address", None)),
        status="DOWN",
        binding_profile={},
        allowed_address_pairs=[],
        **attrs,
    )
    db.session().add(port)
    set_fixed_ips(port, net, fixed_ips)
    return port


# -- endpoints -----------------------------------------------------------------------------------


class _Page:
    """What rendering a page of ports needs beyond their rows, loaded in one query per kind
    (not per port): their networks (the policy target), fixed IPs and security groups."""

    def __init__(self) -> None:
        self.networks: dict[str, models.Network] = {}
        self.fixed_ips: dict[str, list[dict[str, str]]] = {}
        self.groups: dict[str, list[str]] = {}

    def load(self, ports: list[models.Port]) -> None:
        sess = db.session()
        ids = [port.id for port in ports]
        self.networks = {
            net.id: net
            for net in sess.scalars(
                select(models.Network)
                .where(models.Network.id.in_({port.network_id for port in ports}))
                .options(lazyload(models.Network.subnets))
            )
        }
        allocations = sess.execute(
            select(
                models.IPAllocation.port_id,
                models.IPAllocation.subnet_id,
                models.IPAllocation.ip_address,
            )
            .where(models.IPAllocation.port_id.in_(ids))
            .order_by(models.IPAllocation.created_at)
        )
        for port_id, subnet_id, address in allocations:
            self.fixed_ips.setdefault(port_id, []).append(
                {"subnet_id": subnet_id, "ip_address": address}
            )
        bindings = sess.execute(
            select(
                models.PortSecurityGroup.port_id, models.PortSecurityGroup.security_group_id
            ).where(models.PortSecurityGroup.port_id.in_(ids))
        )
        for port_id, group_id in bindings:
            self.groups.setdefault(port_id, []).append(group_id)
        for groups in self.groups.values():
            groups.sort()

    def render(self, port: models.Port) -> dict[str, Any]:
        body = render.port(port, self.fixed_ips.get(port.id, []), self.groups.get(port.id, []))
        hide_attributes("port", body, target(port, self.networks[port.network_id]))
        return body


@bp.get("/v2.0/ports")
def list_ports() -> Response:
    # The page's fixed IPs and security groups are read by _Page, not through each port.
    query = select(models.Port).options(
        lazyload(models.Port.fixed_ips), lazyload(models.Port.security_groups)
    )
    if not common.sees_all_ports():
        query = query.join(models.Network, models.Network.id == models.Port.network_id).where(
            or_(
                models.Port.project_id == common.project_id(),
                models.Network.project_id == common.project_id(),
            )
        )
    page = _Page()
    return common.list_response(LISTING, query, page.render, prefetch=page.load)


@bp.get("/v2.0/ports/<port_id>")
def show_port(port_id: str) -> Response:
    port, net = find_port(port_id)
    enforce("get_port", target(port, net))
    return respond({"port": common.only_fields(show_body(port, net))})


@bp.post("/v2.0/ports")
def create_port() -> Response:
    body = common.resource_body("port", CREATE)
    project = body.get("project_id") or body.get("tenant_id") or common.project_id()
    port_security = body.get("port_security_enabled")
    group_ids: list[str] | None = body.get("security_groups")
    default_group = ""
    if group_ids is None and port_security is not False:
        default_group = security_groups.ensure_default(project)
    net = networks.find_network(body["network_id"])
    enforce_attributes(
        "create", "port", _policy_attributes(body), {**networks.target(net), "project_id": project}
    )
    if port_security is None:
        port_security = net.port_security_enabled
    device_owner = body.get("device_owner", "")
    if group_ids is None:
        group_ids = (
            [default_group] if port_security and not device_owner.startswith("network:") else []
        )
    else:
        group_ids = _security_group_ids(group_ids)
    if group_ids and not port_security:
        raise bad_request(
            "Port security must be enabled and port must have an IP address in order to use "
            "security groups.",
            "PortSecurityAndIPRequiredForSecurityGroups",
        )
    if body.get("allowed_address_pairs") and not port_security:
        raise conflict(
            "Port Security must be enabled in order to have allowed address pairs on a port.",
            "AddressPairAndPortSecurityRequired",
        )
    sess = db.session()
    quota.check(sess, project, common.settings().quota_defaults, {"port": 1})
    port = new_port(
        net,
        project,
        body.get("fixed_ips"),
        mac_address=body.get("mac_address"),
        name=body.get("name", ""),
        description=body.get("description", ""),
        admin_state_up=body.get("admin_state_up", True),
        device_id=body.get("device_id", ""),
        device_owner=device_owner,
        port_security_enabled=port_security,
        binding_host_id=body.get("binding:host_id") or "",
        binding_vnic_type=body.get("binding:vnic_type", "normal"),
    )
    port.binding_profile = body.get("binding:profile") or {}
    port.allowed_address_pairs = _pairs(body.get("allowed_address_pairs", []), port.mac_address)
    port.security_groups = [
        models.PortSecurityGroup(port_id=port.id, security_group_id=group_id)
        for group_id in group_ids
    ]
    db.commit()
    _notify_changed(port, group_ids)
    return respond({"port": show_body(port, net)}, 201)


def _notify_changed(port: models.Port, group_ids: list[str], previous_host: str = "") -> None:
    common.notify(
        "port_update",
        port_id=port.id,
        network_id=port.network_id,
        host=port.binding_host_id,
        previous_host=previous_host,
    )
    if group_ids:
        common.notify("security_group_update", security_group_ids=group_ids)


@bp.put("/v2.0/ports/<port_id>")
def update_port(port_id: str) -> Response:
    body = common.resource_body("port", UPDATE)
    sess = db.session()
    port, net = find_port(port_id, lock=True)
    enforce_attributes("update", "port", _policy_attributes(body), target(port, net))
    if "mac_address" in body and body["mac_address"].lower() != port.mac_address:
        if port.binding_host_id:
            raise conflict(f"Port {port.id} is bound: its MAC address cannot change.", "PortBound")
        port.mac_address = choose_mac(net.id, body["mac_address"])
    old_groups = port.security_group_ids()
    port_security = body.get("port_security_enabled", port.port_security_enabled)
    if "security_groups" in body:
        group_ids = _security_group_ids(body["security_groups"] or [])
    else:
        group_ids = old_groups
    if group_ids and not port_security:
        raise conflict(
            "Port has security group associated. Cannot disable port security or ip address "
            "until security group is removed",
            "PortSecurityPortHasSecurityGroup",
        )
    pairs = body.get("allowed_address_pairs")
    if pairs is not None:
        port.allowed_address_pairs = _pairs(pairs, port.mac_address)
    if port.allowed_address_pairs and not port_security:
        raise conflict(
            "Port Security must be enabled in order to have allowed address pairs on a port.",
            "AddressPairAndPortSecurityRequired",
        )
    port.port_security_enabled = port_security
    if group_ids != old_groups:
        port.security_groups = [
            models.PortSecurityGroup(port_id=port.id, security_group_id=group_id)
            for group_id in group_ids
        ]
    if "fixed_ips" in body:
        set_fixed_ips(port, net, body["fixed_ips"])
    previous_host = port.binding_host_id
    if "binding:host_id" in body:
        port.binding_host_id = body["binding:host_id"] or ""
    if "binding:profile" in body:
        port.binding_profile = body["binding:profile"] or {}
    for key in ("name", "description", "admin_state_up", "device_id", "device_owner"):
        if key in body:
            setattr(port, key, body[key])
    if "binding:vnic_type" in body:
        port.binding_vnic_type = body["binding:vnic_type"]
    port.touch()
    db.commit()
    sess.refresh(port)
    _notify_changed(port, sorted(set(group_ids) | set(old_groups)), previous_host)
    return respond({"port": show_body(port, net)})


def delete_port_record(port: models.Port) -> None:
    """Delete ``port``: its fixed IPs go with it, floating IPs on it are disassociated."""
    sess = db.session()
    for fip in sess.scalars(
        select(models.FloatingIP).where(models.FloatingIP.fixed_port_id == port.id)
    ):
        fip.fixed_port_id = None
        fip.fixed_ip_address = None
        fip.router_id = None
        fip.status = "DOWN"
        fip.touch()
    sess.delete(port)


@bp.delete("/v2.0/ports/<port_id>")
def delete_port(port_id: str) -> Response:
    port, net = find_port(port_id, lock=True)
    enforce("delete_port", target(port, net))
    if port.device_owner in SERVICE_OWNERS:
        raise conflict(
            f"Port {port.id} cannot be deleted directly via the port API: has device owner "
            f"{port.device_owner}.",
            "ServicePortInUse",
        )
    group_ids = port.security_group_ids()
    details = {
        "port_id": port.id,
        "network_id": port.network_id,
        "host": port.binding_host_id,
        "mac_address": port.mac_address,
    }
    delete_port_record(port)
    db.commit()
    common.notify("port_delete", **details)
    if group_ids:
        common.notify("security_group_update", security_group_ids=group_ids)
    return no_content()
