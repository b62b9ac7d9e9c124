"""The server side of the l3-agent's RPC calls: the routers a network node wires, and the
floating IP statuses it reports back. :class:`control.network.rpc.NetworkEndpoint` serves them
(one method each); the functions take a :class:`Session` or a :class:`Database` so that tests
call them directly against a network database.

``get_routers(host)`` answers, for every router (one network node: all of them; ``host`` is kept
for scheduling routers to several nodes later)::

    {"id", "project_id", "admin_state_up",
     "gateway": {"port_id", "mac_address", "network_id", "enable_snat", "mtu",
                 "ips": [{"ip_address", "prefixlen", "subnet_id", "gateway_ip"}]} | None,
     "interfaces": [{"port_id", "mac_address", "network_id", "ip_address", "prefixlen",
                     "subnet_id", "cidr", "mtu"}],
     "floating_ips": [{"id", "floating_ip_address", "fixed_ip_address", "port_id"}]}

An interface is one router port (``network:router_interface``, ``device_id`` = the router) with
its first IPv4 address (the first address when it has no IPv4 one); only floating IPs associated
with a fixed address appear.

The router ports of the routers answered are bound to ``host`` (``binding:host_id``, so that the
network agent on that host wires their bridges and VXLAN and keeps their ``tap`` host ends) with
port security off and no security groups (routed traffic carries other hosts' addresses); the
notifications to send (``port_update`` per port whose binding changed) are appended to
``notifications``, for the caller to publish after the commit. One l3 agent per deployment: two
would take the ports from each other at every resync.

``instance_port(network_id, ip_address)`` answers the metadata proxy: ``{"port_id",
"device_id", "project_id"}`` of the instance port holding that address, or None.
"""

from __future__ import annotations

import ipaddress
import logging
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from control.common.db import Database
from control.network import models

LOG = logging.getLogger("cirrus.network.l3")

FLOATINGIP_STATUSES = ("ACTIVE", "DOWN", "ERROR")
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


@contextmanager
def _session(sess_or_database: Session | Database) -> Iterator[Session]:
    if isinstance(sess_or_database, Session):
        yield sess_or_database
    else:
        with sess_or_database.transaction() as sess:
            yield sess


def _subnets(sess: Session, ids: set[str]) -> dict[str, models.Subnet]:
    if not ids:
        return {}
    found = sess.scalars(select(models.Subnet).where(models.Subnet.id.in_(sorted(ids)))).all()
    return {sub.id: sub for sub in found}


def _prefixlen(subnet: models.Subnet) -> int:
    return ipaddress.ip_network(subnet.cidr, strict=False).prefixlen


def _mtu(sess: Session, network_id: str) -> int | None:
    net = sess.get(models.Network, network_id)
    return net.mtu if net is not None else None


def _gateway(sess: Session, router: models.Router) -> dict[str, Any] | None:
    if not router.gw_port_id:
        return None
    port = sess.get(models.Port, router.gw_port_id)
    if port is None:
        return None
    subnets = _subnets(sess, {a.subnet_id for a in port.fixed_ips})
    ips = []
    for alloc in port.fixed_ips:
        subnet = subnets.get(alloc.subnet_id)
        if subnet is None:
            continue
        ips.append(
            {
                "ip_address": alloc.ip_address,
                "prefixlen": _prefixlen(subnet),
                "subnet_id": subnet.id,
                "gateway_ip": subnet.gateway_ip,
            }
        )
    return {
        "port_id": port.id,
        "mac_address": port.mac_address,
        "network_id": port.network_id,
        "ips": ips,
        "enable_snat": bool(router.enable_snat),
        "mtu": _mtu(sess, port.network_id),
    }


def _interface_ports(sess: Session, router: models.Router) -> list[models.Port]:
    return list(
        sess.scalars(
            select(models.Port)
            .where(
                models.Port.device_id == router.id,
                models.Port.device_owner == models.DEVICE_OWNER_ROUTER_INTF,
            )
            .order_by(models.Port.created_at, models.Port.id)
        ).all()
    )


def _interfaces(sess: Session, router: models.Router) -> list[dict[str, Any]]:
    ports = _interface_ports(sess, router)
    subnets = _subnets(sess, {a.subnet_id for port in ports for a in port.fixed_ips})
    interfaces = []
    for port in ports:
        allocs = [a for a in port.fixed_ips if a.subnet_id in subnets]
        if not allocs:
            continue
        v4 = [a for a in allocs if subnets[a.subnet_id].ip_version == 4]
        alloc = (v4 or allocs)[0]
        subnet = subnets[alloc.subnet_id]
        interfaces.append(
            {
                "port_id": port.id,
                "mac_address": port.mac_address,
                "network_id": port.network_id,
                "ip_address": alloc.ip_address,
                "prefixlen": _prefixlen(subnet),
                "subnet_id": subnet.id,
                "cidr": subnet.cidr,
                "mtu": _mtu(sess, port.network_id),
            }
        )
    return interfaces


def _floating_ips(sess: Session, router: models.Router) -> list[dict[str, Any]]:
    fips = sess.scalars(
        select(models.FloatingIP)
        .where(
            models.FloatingIP.router_id == router.id,
            models.FloatingIP.fixed_ip_address.is_not(None),
        )
        .order_by(models.FloatingIP.created_at, models.FloatingIP.id)
    ).all()
    return [
        {
            "id": fip.id,
            "floating_ip_address": fip.floating_ip_address,
            "fixed_ip_address": fip.fixed_ip_address,
            "port_id": fip.fixed_port_id,
        }
        for fip in fips
    ]


def router_details(sess: Session, router: models.Router) -> dict[str, Any]:
    return {
        "id": router.id,
        "project_id": router.project_id,
        "admin_state_up": bool(router.admin_state_up),
        "gateway": _gateway(sess, router),
        "interfaces": _interfaces(sess, router),
        "floating_ips": _floating_ips(sess, router),
    }


Notification = tuple[str, dict[str, Any]]  # (fanout method, its arguments)


def bind_router_ports(sess: Session, router: models.Router, host: str) -> list[Notification]:
    """Bind ``router``'s interface and gateway ports to ``host`` with port security off and no
    security groups; the notifications to send after the commit (a ``port_update`` per port
    changed, a ``security_group_update`` for the groups that lost a member)."""
    ports = _interface_ports(sess, router)
    gateway = sess.get(models.Port, router.gw_port_id) if router.gw_port_id else None
    if gateway is not None:
        ports.append(gateway)
    notifications: list[Notification] = []
    for port in ports:
        previous = port.binding_host_id or ""
        groups = port.security_group_ids()
        if previous == host and not port.port_security_enabled and not groups:
            continue
        port.binding_host_id = host
        port.port_security_enabled = False
        port.security_groups = []
        port.touch()
        LOG.info("router %s: port %s bound to %s (was %r)", router.id, port.id, host, previous)
        notifications.append(
            ("port_update", {"port_id": port.id, "network_id": port.network_id, "host": host,
                             "previous_host": previous})
        )  # fmt: skip
        if groups:
            notifications.append(("security_group_update", {"security_group_ids": groups}))
    return notifications


def get_routers(
    sess_or_database: Session | Database,
    host: str,
    notifications: list[Notification] | None = None,
) -> list[dict[str, Any]]:
    """Every router with what its namespace needs (see the module's docstring), its ports
    bound to ``host`` (every router lives on the single network node); what to notify after
    the commit is appended to ``notifications``."""
    if not isinstance(host, str) or not 0 < len(host) <= 255:
        raise ValueError(f"invalid host {host!r}")
    with _session(sess_or_database) as sess:
        routers = sess.scalars(
            select(models.Router).order_by(models.Router.created_at, models.Router.id)
        ).all()
        for router in routers:
            changed = bind_router_ports(sess, router, host)
            if notifications is not None:
                notifications.extend(changed)
        sess.flush()
        return [router_details(sess, router) for router in routers]


def instance_port(
    sess_or_database: Session | Database, network_id: str, ip_address: str
) -> dict[str, str] | None:
    """The instance port holding ``ip_address`` on ``network_id``: ``{port_id, device_id,
    project_id}``; None when no port has it, or the port has no device or belongs to the
    network itself (``network:*``: routers, DHCP, floating IPs)."""
    if not isinstance(network_id, str) or not _UUID.match(network_id):
        raise ValueError(f"invalid network id {network_id!r}")
    if not isinstance(ip_address, str):
        raise ValueError(f"invalid IP address {ip_address!r}")
    address = str(ipaddress.ip_address(ip_address))  # ValueError when it is none
    with _session(sess_or_database) as sess:
        port = sess.scalars(
            select(models.Port)
            .join(models.IPAllocation, models.IPAllocation.port_id == models.Port.id)
            .where(
                models.IPAllocation.network_id == network_id,
                models.IPAllocation.ip_address == address,
            )
            .order_by(models.Port.created_at)
        ).first()
        if port is None or not port.device_id or port.device_owner.startswith("network:"):
            return None
        return {"port_id": port.id, "device_id": port.device_id, "project_id": port.project_id}


def update_floatingip_statuses(
    sess_or_database: Session | Database, router_id: str, statuses: Mapping[str, str]
) -> int:
    """Set the status of floating IPs of ``router_id`` (``{fip_id: "ACTIVE"|"DOWN"|"ERROR"}``);
    ids of other routers' floating IPs or unknown ids are ignored. Returns how many changed."""
    for status in statuses.values():
        if status not in FLOATINGIP_STATUSES:
            raise ValueError(f"floating IP status must be one of {', '.join(FLOATINGIP_STATUSES)}")
    if not statuses:
        return 0
    changed = 0
    with _session(sess_or_database) as sess:
        fips = sess.scalars(
            select(models.FloatingIP)
            .where(models.FloatingIP.id.in_(sorted(statuses)))
            .with_for_update()
        ).all()
        for fip in fips:
            if fip.router_id != router_id:
                continue
            status = statuses[fip.id]
            if fip.status != status:
                fip.status = status
                fip.touch()
                changed += 1
    return changed
