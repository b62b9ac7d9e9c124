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
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from control.common.db import Database
from control.network import models

FLOATINGIP_STATUSES = ("ACTIVE", "DOWN", "ERROR")


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


def _interfaces(sess: Session, router: models.Router) -> list[dict[str, Any]]:
    ports = sess.scalars(
        select(models.Port)
        .where(
            models.Port.device_id == router.id,
            models.Port.device_owner == models.DEVICE_OWNER_ROUTER_INTF,
        )
        .order_by(models.Port.created_at, models.Port.id)
    ).all()
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


def get_routers(sess_or_database: Session | Database, host: str) -> list[dict[str, Any]]:
    """Every router with what its namespace needs (see the module's docstring). ``host`` is
    unused while there is one network node."""
    del host  # every router lives on the single network node
    with _session(sess_or_database) as sess:
        routers = sess.scalars(
            select(models.Router).order_by(models.Router.created_at, models.Router.id)
        ).all()
        return [router_details(sess, router) for router in routers]


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
