"""The RPC contract between network-api and the host agents (network-agent, dhcp-agent, l3-agent).

Agents hold no database credentials. They call the endpoint :class:`NetworkEndpoint`, served on
topic ``network`` by ``python -m control.network.service`` (see :mod:`control.network.service`),
through the client proxy :class:`NetworkAPI`; and they listen to the fanout ``network``
(``RPCServer(..., fanout="network")``) where the API publishes, after each commit:

- ``port_update(port_id, network_id, host, previous_host)``: a port was made or changed;
- ``port_delete(port_id, network_id, host, mac_address)``;
- ``security_group_update(security_group_ids)``: rules or members of the groups changed;
- ``network_delete(network_id)``;
- ``router_update(router_id)``: interfaces, gateway or floating IPs of a router changed.

The RPC endpoints publish some too (with a ``notifier``, see :class:`Notifier`): ``port_update``
when ``get_routers`` binds router ports to the l3 agent's host and when the DHCP port of a
network is made or rebound, ``port_delete`` when a DHCP port is released.

Notifications say *what* changed; agents then ask ``get_host_ports`` (or
``get_network_ports``) for the state, and resync everything when they reconnect (fanout queues
only exist while connected).

Versions:
    1.0 - report_state, get_host_ports, get_network_ports, get_vxlan_peers, update_port_status,
          get_routers, update_floatingip_statuses (the L3 agent),
          get_instance_port (the L3 agent's metadata proxy)
"""

from __future__ import annotations

import ipaddress
import logging
import threading
import uuid
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import exc, select
from sqlalchemy.orm import Session

from control.common import rpc
from control.common.context import RequestContext
from control.common.db import Database, utcnow
from control.network import models, render, rpc_l3

LOG = logging.getLogger("cirrus.network")

TOPIC = "network"
FANOUT = "network"
VERSION = "1.0"
PORT_STATUSES = ("ACTIVE", "DOWN", "BUILD", "ERROR")


class Notifier(Protocol):
    """What publishes fanout notifications (:class:`AgentNotifier`)."""

    def publish(self, ctxt: RequestContext, method: str, **kwargs: Any) -> None: ...


def notify(notifier: Notifier | None, ctxt: RequestContext, method: str, **kwargs: Any) -> None:
    """Publish after a commit when there is a notifier; a failure is logged, never raised (the
    agents resync periodically anyway)."""
    if notifier is None:
        return
    try:
        notifier.publish(ctxt, method, **kwargs)
    except Exception as error:
        LOG.warning("could not notify agents of %s %s: %s", method, kwargs, error)


def is_alive(agent: models.Agent, down_time: float, now: datetime | None = None) -> bool:
    return (now or utcnow()) - agent.heartbeat_timestamp <= timedelta(seconds=down_time)


# -- server side ---------------------------------------------------------------------------------


class NetworkEndpoint:
    """Served on topic ``network``. Every method is idempotent: reports set absolute values and
    reads change nothing, so a redelivered message is harmless."""

    target_version = VERSION

    def __init__(
        self,
        database: Database,
        agent_down_time: float = 75.0,
        notifier: Notifier | None = None,
    ) -> None:
        self.database = database
        self.agent_down_time = agent_down_time
        self.notifier = notifier

    def report_state(
        self,
        ctxt: RequestContext,
        host: str,
        agent_type: str,
        binary: str,
        configurations: dict[str, Any] | None = None,
        topic: str | None = None,
        availability_zone: str | None = None,
        start_flag: bool = False,
    ) -> dict[str, Any]:
        """Heartbeat: create or refresh the agent row of (``agent_type``, ``host``). Answers
        ``{"id", "admin_state_up"}`` so an agent an operator disabled can stand down."""
        for _attempt in range(5):
            try:
                with self.database.transaction() as sess:
                    agent = sess.scalars(
                        select(models.Agent).where(
                            models.Agent.agent_type == agent_type, models.Agent.host == host
                        )
                    ).first()
                    now = utcnow()
                    if agent is None:
                        agent = models.Agent(
                            id=str(uuid.uuid4()),
                            agent_type=agent_type,
                            host=host,
                            created_at=now,
                            started_at=now,
                            admin_state_up=True,
                        )
                        sess.add(agent)
                    elif start_flag:
                        agent.started_at = now
                    agent.binary = binary
                    agent.topic = topic or TOPIC
                    agent.availability_zone = availability_zone
                    agent.configurations = dict(configurations or {})
                    agent.heartbeat_timestamp = now
                    sess.flush()
                    return {"id": agent.id, "admin_state_up": agent.admin_state_up}
            except exc.IntegrityError:
                continue  # the same agent's first two reports crossed: update the winner's row
        raise RuntimeError(f"could not record the state of {agent_type} on {host}")

    def get_host_ports(self, ctxt: RequestContext, host: str) -> list[dict[str, Any]]:
        """Every port bound to ``host`` with what wiring it needs: its network's segment, MAC,
        fixed IPs, allowed address pairs and its security group rules, where a rule naming a
        remote group carries ``remote_ips``: the addresses of that group's member ports."""
        with self.database.transaction() as sess:
            ports = sess.scalars(
                select(models.Port)
                .where(models.Port.binding_host_id == host)
                .order_by(models.Port.created_at)
            ).all()
            resolver = _RuleResolver(sess)
            return [port_details(sess, port, resolver) for port in ports]

    def get_network_ports(self, ctxt: RequestContext, network_id: str) -> dict[str, Any]:
        """For DHCP: the network, its subnets and every port's MAC, IPs and host name
        (``host-10-0-0-5``, as Neutron names them without DNS integration)."""
        with self.database.transaction() as sess:
            net = sess.get(models.Network, network_id)
            if net is None:
                return {"network": None, "subnets": [], "ports": []}
            ports = sess.scalars(
                select(models.Port)
                .where(models.Port.network_id == network_id)
                .order_by(models.Port.created_at)
            ).all()
            return {
                "network": segment(net),
                "subnets": [render.subnet(sub) for sub in net.subnets],
                "ports": [
                    {
                        "id": port.id,
                        "mac_address": port.mac_address,
                        "device_owner": port.device_owner,
                        "admin_state_up": port.admin_state_up,
                        "fixed_ips": [
                            {
                                "subnet_id": a.subnet_id,
                                "ip_address": a.ip_address,
                                "hostname": hostname(a.ip_address),
                            }
                            for a in port.fixed_ips
                        ],
                    }
                    for port in ports
                ],
            }

    def get_vxlan_peers(self, ctxt: RequestContext) -> dict[str, str]:
        """Host -> VTEP address of every live agent that reported ``tunneling_ip``."""
        with self.database.transaction() as sess:
            peers: dict[str, str] = {}
            for agent in sess.scalars(select(models.Agent).order_by(models.Agent.host)):
                address = (agent.configurations or {}).get("tunneling_ip")
                if address and is_alive(agent, self.agent_down_time):
                    peers[agent.host] = str(address)
            return peers

    def update_port_status(self, ctxt: RequestContext, port_id: str, status: str) -> bool:
        """Set a port's status (ACTIVE once wired, DOWN when unplugged); False when the port
        is gone."""
        if status not in PORT_STATUSES:
            raise ValueError(f"port status must be one of {', '.join(PORT_STATUSES)}")
        with self.database.transaction() as sess:
            port = sess.get(models.Port, port_id, with_for_update=True)
            if port is None:
                return False
            if port.status != status:
                port.status = status
                port.touch()
            return True

    def get_routers(self, ctxt: RequestContext, host: str) -> list[dict[str, Any]]:
        """The routers the L3 agent on ``host`` wires (``control/network/rpc_l3.py``); their
        ports are bound to ``host`` (port security off), and the network agents told so."""
        notifications: list[rpc_l3.Notification] = []
        routers = rpc_l3.get_routers(self.database, host, notifications)
        for method, kwargs in notifications:
            notify(self.notifier, ctxt, method, **kwargs)
        return routers

    def get_instance_port(
        self, ctxt: RequestContext, network_id: str, ip_address: str
    ) -> dict[str, str] | None:
        """For the metadata proxy: ``{port_id, device_id, project_id}`` of the instance's port
        holding ``ip_address`` on ``network_id``; None when no instance's port has it."""
        return rpc_l3.instance_port(self.database, network_id, ip_address)

    def update_floatingip_statuses(
        self, ctxt: RequestContext, router_id: str, statuses: dict[str, str]
    ) -> int:
        """Set the statuses of a router's floating IPs; how many changed."""
        return rpc_l3.update_floatingip_statuses(self.database, router_id, statuses)


def hostname(ip_address: str) -> str:
    return "host-" + ip_address.replace(".", "-").replace(":", "-")


def segment(net: models.Network) -> dict[str, Any]:
    return {
        "id": net.id,
        "network_type": net.network_type,
        "physical_network": net.physical_network,
        "segmentation_id": net.segmentation_id,
        "mtu": net.mtu,
        "admin_state_up": net.admin_state_up,
        "bridge_name": render.bridge_name(net.id),
    }


class _RuleResolver:
    """Security group rules with remote groups turned into addresses (cached per call)."""

    def __init__(self, sess: Session) -> None:
        self.sess = sess
        self.members: dict[str, list[str]] = {}
        self.rules: dict[str, list[dict[str, Any]]] = {}

    def member_addresses(self, group_id: str) -> list[str]:
        if group_id not in self.members:
            ports = self.sess.scalars(
                select(models.Port)
                .join(models.PortSecurityGroup)
                .where(models.PortSecurityGroup.security_group_id == group_id)
            ).all()
            addresses = {a.ip_address for port in ports for a in port.fixed_ips}
            addresses.update(
                pair["ip_address"] for port in ports for pair in port.allowed_address_pairs or []
            )
            self.members[group_id] = sorted(addresses)
        return self.members[group_id]

    def group_rules(self, group_id: str) -> list[dict[str, Any]]:
        if group_id not in self.rules:
            group = self.sess.get(models.SecurityGroup, group_id)
            resolved = []
            for rule in group.rules if group is not None else []:
                body = render.security_group_rule(rule)
                for key in ("tenant_id", "project_id", "description", "created_at"):
                    body.pop(key, None)
                body.pop("updated_at", None)
                body.pop("revision_number", None)
                if rule.remote_group_id:
                    version = 4 if rule.ethertype == "IPv4" else 6
                    body["remote_ips"] = [
                        address
                        for address in self.member_addresses(rule.remote_group_id)
                        if ipaddress.ip_network(address, strict=False).version == version
                    ]
                resolved.append(body)
            self.rules[group_id] = resolved
        return self.rules[group_id]


def port_details(sess: Session, port: models.Port, resolver: _RuleResolver) -> dict[str, Any]:
    net = sess.get(models.Network, port.network_id)
    assert net is not None
    group_ids = port.security_group_ids() if port.port_security_enabled else []
    return {
        "id": port.id,
        "network_id": port.network_id,
        "network": segment(net),
        "mac_address": port.mac_address,
        "fixed_ips": [
            {"subnet_id": a.subnet_id, "ip_address": a.ip_address} for a in port.fixed_ips
        ],
        "device_id": port.device_id,
        "device_owner": port.device_owner,
        "admin_state_up": port.admin_state_up,
        "status": port.status,
        "port_security_enabled": port.port_security_enabled,
        "allowed_address_pairs": list(port.allowed_address_pairs or []),
        "security_group_ids": group_ids,
        "security_group_rules": [
            rule for group_id in group_ids for rule in resolver.group_rules(group_id)
        ],
        "binding:vif_type": render.vif_type(port),
        "binding:vif_details": render.vif_details(port),
    }


# -- client side ---------------------------------------------------------------------------------


class NetworkAPI:
    """The agents' proxy to :class:`NetworkEndpoint` (every method a call, version 1.0)."""

    def __init__(self, transport: rpc.Transport, timeout: float = 30.0) -> None:
        self.client = rpc.RPCClient(transport, TOPIC, version=VERSION, timeout=timeout)

    def report_state(
        self,
        ctxt: RequestContext,
        host: str,
        agent_type: str,
        binary: str,
        configurations: dict[str, Any] | None = None,
        **extra: Any,
    ) -> dict[str, Any]:
        result: dict[str, Any] = self.client.call(
            ctxt,
            "report_state",
            host=host,
            agent_type=agent_type,
            binary=binary,
            configurations=configurations or {},
            **extra,
        )
        return result

    def get_host_ports(self, ctxt: RequestContext, host: str) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.client.call(ctxt, "get_host_ports", host=host)
        return result

    def get_network_ports(self, ctxt: RequestContext, network_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self.client.call(ctxt, "get_network_ports", network_id=network_id)
        return result

    def get_vxlan_peers(self, ctxt: RequestContext) -> dict[str, str]:
        result: dict[str, str] = self.client.call(ctxt, "get_vxlan_peers")
        return result

    def update_port_status(self, ctxt: RequestContext, port_id: str, status: str) -> bool:
        return bool(self.client.call(ctxt, "update_port_status", port_id=port_id, status=status))

    def get_routers(self, ctxt: RequestContext, host: str) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.client.call(ctxt, "get_routers", host=host)
        return result

    def get_instance_port(
        self, ctxt: RequestContext, network_id: str, ip_address: str
    ) -> dict[str, str] | None:
        result: dict[str, str] | None = self.client.call(
            ctxt, "get_instance_port", network_id=network_id, ip_address=ip_address
        )
        return result

    def update_floatingip_statuses(
        self, ctxt: RequestContext, router_id: str, statuses: dict[str, str]
    ) -> int:
        return int(
            self.client.call(
                ctxt, "update_floatingip_statuses", router_id=router_id, statuses=statuses
            )
        )


class AgentNotifier:
    """The API's fanout publisher, created on first use (after gunicorn forks). A failed
    publish is logged, never raised: the change is committed, and agents resync anyway."""

    def __init__(self, url: str, exchange: str = "cirrus", timeout: float = 5.0) -> None:
        self.url = url
        self.exchange = exchange
        self.timeout = timeout
        self._transport: rpc.Transport | None = None
        self._publisher: rpc.FanoutPublisher | None = None
        self._lock = threading.Lock()

    def _get(self) -> rpc.FanoutPublisher:
        with self._lock:
            if self._publisher is None:
                self._transport = rpc.Transport(self.url, exchange=self.exchange)
                self._publisher = rpc.FanoutPublisher(
                    self._transport, FANOUT, version=VERSION, timeout=self.timeout
                )
            return self._publisher

    def publish(self, ctxt: RequestContext, method: str, **kwargs: Any) -> None:
        try:
            self._get().publish(ctxt, method, **kwargs)
        except Exception as error:
            LOG.warning("could not notify agents of %s %s: %s", method, kwargs, error)

    def close(self) -> None:
        with self._lock:
            if self._transport is not None:
                self._transport.close()
            self._transport = None
            self._publisher = None
