"""The DHCP agent's part of the ``network`` RPC topic: which networks need DHCP, and the DHCP
port of a network on a host (``device_owner`` ``network:dhcp``), created on first use.

:class:`DhcpEndpoint` is served next to :class:`control.network.rpc.NetworkEndpoint` by the same
RPC server (the dispatcher takes a list of endpoints; each method lives on one of them);
:class:`DhcpAPI` is the agent's proxy: :class:`~control.network.rpc.NetworkAPI` plus these calls.

As Neutron's: the port belongs to the network's project, its ``device_id`` is
``dhcp<uuid5(host)>-<network id>``, it is bound to the agent's host (so that host's network
agent wires its tap like a guest's), it has port security off (a DHCP server must answer from
its own address to any client) and one fixed IP on every IPv4 subnet with ``enable_dhcp``.

With a ``notifier``, the endpoint publishes ``port_update`` after the commit when it made, rebound
or readdressed a DHCP port (so that host's network agent wires the tap at once, and the other
hosts learn its MAC for their FDB), and ``port_delete`` when it released one.
"""

from __future__ import annotations

import ipaddress
import logging
import secrets
import uuid
from typing import Any

from sqlalchemy import exc, select
from sqlalchemy.orm import Session

from control.common import rpc
from control.common.context import RequestContext
from control.common.db import Database
from control.network import ipam, models
from control.network.rpc import TOPIC, NetworkAPI, Notifier, notify

LOG = logging.getLogger("cirrus.network.dhcp")

VERSION = "1.1"  # 1.0 (NetworkEndpoint) + the calls below
MAC_PREFIX = "fa:16:3e"


def dhcp_device_id(host: str, network_id: str) -> str:
    """Neutron's ``device_id`` of the DHCP port of ``network_id`` served from ``host``."""
    return f"dhcp{uuid.uuid5(uuid.NAMESPACE_DNS, host)}-{network_id}"


def dhcp_subnets(net: models.Network) -> list[models.Subnet]:
    """The subnets dnsmasq serves: IPv4 with ``enable_dhcp`` (IPv6 is not served yet)."""
    return [s for s in net.subnets if s.enable_dhcp and s.ip_version == 4]


def dhcp_port_body(port: models.Port) -> dict[str, Any]:
    return {
        "id": port.id,
        "network_id": port.network_id,
        "mac_address": port.mac_address,
        "device_id": port.device_id,
        "device_owner": port.device_owner,
        "admin_state_up": port.admin_state_up,
        "binding:host_id": port.binding_host_id,
        "fixed_ips": [
            {"subnet_id": a.subnet_id, "ip_address": a.ip_address} for a in port.fixed_ips
        ],
    }


class DhcpEndpoint:
    """Served on topic ``network`` beside NetworkEndpoint. Idempotent: asking twice for the DHCP
    port of a network answers the same port."""

    target_version = VERSION

    def __init__(self, database: Database, notifier: Notifier | None = None) -> None:
        self.database = database
        self.notifier = notifier

    def get_dhcp_networks(self, ctxt: RequestContext, host: str) -> list[str]:
        """Ids of the networks with at least one subnet dnsmasq serves (every DHCP agent serves
        every such network: there is no DHCP agent scheduling)."""
        with self.database.transaction() as sess:
            rows = sess.scalars(
                select(models.Subnet.network_id)
                .where(models.Subnet.enable_dhcp.is_(True), models.Subnet.ip_version == 4)
                .distinct()
                .order_by(models.Subnet.network_id)
            )
            return list(rows)

    def get_or_create_dhcp_port(
        self, ctxt: RequestContext, host: str, network_id: str
    ) -> dict[str, Any] | None:
        """The DHCP port of ``network_id`` on ``host`` with an address on every DHCP subnet
        (missing ones are added, ones on subnets without DHCP any more are freed); None when
        the network is gone or serves no DHCP subnet."""
        for _attempt in range(5):
            try:
                with self.database.transaction() as sess:
                    body, update = self._get_or_create(sess, host, network_id)
            except exc.IntegrityError:
                continue  # a MAC or an address taken concurrently: try again
            if update is not None:
                notify(self.notifier, ctxt, "port_update", **update)
            return body
        raise RuntimeError(f"could not create the DHCP port of network {network_id} on {host}")

    def _get_or_create(
        self, sess: Session, host: str, network_id: str
    ) -> tuple[dict[str, Any] | None, dict[str, str] | None]:
        """The port's body, and the ``port_update`` arguments when it was made or changed."""
        net = sess.get(models.Network, network_id, with_for_update=True)
        if net is None:
            return None, None
        subnets = dhcp_subnets(net)
        if not subnets:
            return None, None
        device_id = dhcp_device_id(host, network_id)
        port = sess.scalars(
            select(models.Port).where(
                models.Port.network_id == network_id,
                models.Port.device_owner == models.DEVICE_OWNER_DHCP,
                models.Port.device_id == device_id,
            )
        ).first()
        created = port is None
        previous_host = "" if port is None else port.binding_host_id or ""
        if port is None:
            port = models.Port(
                id=str(uuid.uuid4()),
                project_id=net.project_id,
                network_id=net.id,
                mac_address=_free_mac(sess, net.id),
                status="DOWN",
                admin_state_up=True,
                device_id=device_id,
                device_owner=models.DEVICE_OWNER_DHCP,
                port_security_enabled=False,
                binding_host_id=host,
                binding_profile={},
                allowed_address_pairs=[],
            )
            sess.add(port)
            LOG.info("DHCP port %s of network %s on %s created", port.id, network_id, host)
        wanted = {s.id: s for s in subnets}
        changed = previous_host != host and not created
        if changed:
            port.binding_host_id = host
            LOG.info("DHCP port %s rebound to %s (was %r)", port.id, host, previous_host)
        for allocation in list(port.fixed_ips):
            if allocation.subnet_id not in wanted:
                port.fixed_ips.remove(allocation)
                changed = True
        have = {a.subnet_id for a in port.fixed_ips}
        sess.flush()
        for subnet in subnets:
            if subnet.id in have:
                continue
            locked = sess.get(models.Subnet, subnet.id, with_for_update=True)
            assert locked is not None
            used = {ipaddress.ip_address(row) for row in models.used_addresses(sess, subnet.id)}
            address = ipam.allocate(ipam.pools_from_dicts(subnet.allocation_pools), used)
            if address is None:
                LOG.warning("subnet %s has no free address for its DHCP port", subnet.id)
                continue
            port.fixed_ips.append(
                models.IPAllocation(subnet_id=subnet.id, ip_address=str(address), network_id=net.id)
            )
            changed = True
            sess.flush()
        if changed and not created:
            port.touch()
        sess.flush()
        update = None
        if created or changed:
            update = {"port_id": port.id, "network_id": port.network_id, "host": host,
                      "previous_host": previous_host}  # fmt: skip
        return dhcp_port_body(port), update

    def release_dhcp_port(self, ctxt: RequestContext, host: str, network_id: str) -> bool:
        """Delete the DHCP port of ``network_id`` on ``host``; False when there was none."""
        with self.database.transaction() as sess:
            port = sess.scalars(
                select(models.Port).where(
                    models.Port.network_id == network_id,
                    models.Port.device_owner == models.DEVICE_OWNER_DHCP,
                    models.Port.device_id == dhcp_device_id(host, network_id),
                )
            ).first()
            if port is None:
                return False
            details = {"port_id": port.id, "network_id": port.network_id,
                       "host": port.binding_host_id, "mac_address": port.mac_address}  # fmt: skip
            sess.delete(port)
        notify(self.notifier, ctxt, "port_delete", **details)
        return True


def _free_mac(sess: Session, network_id: str) -> str:
    used = set(
        sess.scalars(select(models.Port.mac_address).where(models.Port.network_id == network_id))
    )
    for _attempt in range(16):
        mac = f"{MAC_PREFIX}:" + ":".join(f"{b:02x}" for b in secrets.token_bytes(3))
        if mac not in used:
            return mac
    raise RuntimeError(f"no free MAC address on network {network_id}")


class DhcpAPI(NetworkAPI):
    """The DHCP agent's proxy: NetworkAPI's calls (1.0) plus the DHCP port calls (1.1)."""

    def __init__(self, transport: rpc.Transport, timeout: float = 30.0) -> None:
        super().__init__(transport, timeout)
        self.dhcp_client = rpc.RPCClient(transport, TOPIC, version=VERSION, timeout=timeout)

    def get_dhcp_networks(self, ctxt: RequestContext, host: str) -> list[str]:
        result: list[str] = self.dhcp_client.call(ctxt, "get_dhcp_networks", host=host)
        return result

    def get_or_create_dhcp_port(
        self, ctxt: RequestContext, host: str, network_id: str
    ) -> dict[str, Any] | None:
        result: dict[str, Any] | None = self.dhcp_client.call(
            ctxt, "get_or_create_dhcp_port", host=host, network_id=network_id
        )
        return result

    def release_dhcp_port(self, ctxt: RequestContext, host: str, network_id: str) -> bool:
        return bool(
            self.dhcp_client.call(ctxt, "release_dhcp_port", host=host, network_id=network_id)
        )
