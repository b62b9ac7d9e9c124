"""The network agent: Linux bridges, VXLAN with a unicast FDB, tap wiring and security groups.

It keeps no state of its own that matters: each resync asks network-api (``get_host_ports`` of
this host and of every peer, ``get_vxlan_peers``), computes what should exist, changes only the
difference and removes the Cirrus objects (``brq*``, ``vxlan-*``) no port needs any more. It
resyncs on start, after every broker reconnect, every ``resync_interval`` seconds, and (debounced)
after each fanout notification; the notifications only say *that* something changed (neutron's
``_common_agent`` loop, simplified to "always compare everything").

Collaborators come in (nova's virtapi pattern): ``api`` has the methods of
:class:`control.network.rpc.NetworkAPI`, ``ip`` is a :class:`~agents.network.linux.IpRoute` and
``firewall`` a :class:`~agents.network.nftables.Firewall`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from agents.network import linux, nftables
from control.common.context import RequestContext
from control.network import naming

LOG = logging.getLogger("cirrus.network.agent")

AGENT_TYPE = "Linux bridge agent"
BINARY = "neutron-linuxbridge-agent"


class NetworkRPC(Protocol):
    def report_state(
        self,
        ctxt: RequestContext,
        host: str,
        agent_type: str,
        binary: str,
        configurations: dict[str, Any] | None = None,
        **extra: Any,
    ) -> dict[str, Any]: ...

    def get_host_ports(self, ctxt: RequestContext, host: str) -> list[dict[str, Any]]: ...

    def get_vxlan_peers(self, ctxt: RequestContext) -> dict[str, str]: ...

    def update_port_status(self, ctxt: RequestContext, port_id: str, status: str) -> bool: ...


def parse_mappings(items: list[str]) -> dict[str, str]:
    """``physnet:iface`` items (``physical_interface_mappings``) -> {physnet: iface}."""
    mappings: dict[str, str] = {}
    for item in items:
        physnet, sep, iface = item.partition(":")
        if not sep or not physnet.strip():
            raise ValueError(f"physical_interface_mappings: {item!r} is not physnet:interface")
        mappings[physnet.strip()] = linux.valid_ifname(iface.strip())
    return mappings


@dataclass
class SyncResult:
    bridges: list[str] = field(default_factory=list)
    wired: list[str] = field(default_factory=list)  # port ids whose tap is in its bridge
    missing: list[str] = field(default_factory=list)  # port ids without a tap (yet)
    removed: list[str] = field(default_factory=list)  # interfaces deleted
    skipped: list[str] = field(default_factory=list)  # port ids with unusable data
    firewall_changed: bool = False


@dataclass
class _Network:
    id: str
    bridge: str
    network_type: str
    segmentation_id: int | None
    physical_network: str | None
    mtu: int | None
    ports: list[dict[str, Any]] = field(default_factory=list)


class NetworkAgent:
    target_version = "1.0"  # the fanout notifications' version

    def __init__(
        self,
        host: str,
        api: NetworkRPC,
        ip: linux.IpRoute,
        firewall: nftables.Firewall,
        local_ip: str | None = None,
        interface_mappings: Mapping[str, str] | None = None,
        resync_interval: float = 30.0,
        report_interval: float = 10.0,
        debounce: float = 0.5,
    ) -> None:
        self.host = host
        self.api = api
        self.ip = ip
        self.firewall = firewall
        self.local_ip = linux.valid_ip(local_ip) if local_ip else None
        self.mappings = dict(interface_mappings or {})
        self.resync_interval = resync_interval
        self.report_interval = report_interval
        self.debounce = debounce
        self._lock = threading.Lock()
        self._dirty = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._started = False
        self.connected: Any = None  # callable -> bool: is the RPC server consuming? (reconnects)

    def _ctxt(self) -> RequestContext:
        return RequestContext(roles=["admin", "service"])

    # -- state reports -------------------------------------------------------------------------

    def configurations(self) -> dict[str, Any]:
        conf: dict[str, Any] = {
            "bridge_mappings": {},
            "interface_mappings": dict(self.mappings),
            "tunnel_types": ["vxlan"] if self.local_ip else [],
        }
        if self.local_ip:
            conf["tunneling_ip"] = self.local_ip
        return conf

    def report_state(self) -> dict[str, Any]:
        result = self.api.report_state(
            self._ctxt(),
            self.host,
            AGENT_TYPE,
            BINARY,
            self.configurations(),
            topic="network",
            start_flag=not self._started,
        )
        self._started = True
        return result

    # -- the resync ------------------------------------------------------------------------------

    def resync(self, force_firewall: bool = False) -> SyncResult:
        """Compare everything with what network-api says, and fix the difference."""
        with self._lock:
            return self._resync(force_firewall)

    def _resync(self, force_firewall: bool) -> SyncResult:
        ctxt = self._ctxt()
        result = SyncResult()
        ports = self.api.get_host_ports(ctxt, self.host)
        peers = {
            host: linux.valid_ip(address)
            for host, address in (self.api.get_vxlan_peers(ctxt) or {}).items()
            if host != self.host and address and address != self.local_ip
        }
        networks = self._networks(ports, result)
        links = self.ip.links()

        # 1. bridges, uplinks, VXLAN interfaces and their FDB
        uplinks: list[str] = []
        remote = self._remote_macs(ctxt, peers, networks)
        for net in networks.values():
            self.ip.ensure_bridge(net.bridge)
            result.bridges.append(net.bridge)
            uplink = self._uplink(net, remote, peers)
            if uplink:
                uplinks.append(uplink)

        # 2. the firewall before any tap joins a bridge: a guest is never unfiltered
        good = [p for net in networks.values() for p in net.ports]
        result.firewall_changed = self.firewall.apply(good, uplinks, force=force_firewall)

        # 3. taps
        links = self.ip.links()
        wanted_taps: dict[str, str] = {}
        for net in networks.values():
            for port in net.ports:
                tap = naming.tap(port["id"])
                wanted_taps[tap] = net.bridge
                if tap not in links or not port.get("admin_state_up", True):
                    if tap in links and links[tap].get("master"):
                        self.ip.detach(tap)
                    result.missing.append(port["id"])
                    continue
                link = links[tap]
                if link.get("master") != net.bridge or "UP" not in (link.get("flags") or []):
                    self.ip.attach(tap, net.bridge, net.mtu)
                result.wired.append(port["id"])

        # 4. what no port needs any more
        result.removed = self._cleanup(links, set(result.bridges), wanted_taps, set(uplinks))
        if not networks:
            self.firewall.apply([], force=force_firewall)

        # 5. port statuses
        for port in good:
            status = "ACTIVE" if port["id"] in result.wired else "DOWN"
            if port.get("status") != status:
                try:
                    self.api.update_port_status(ctxt, port["id"], status)
                except Exception as exc:  # retried at the next resync
                    LOG.warning("port %s: could not report %s: %s", port["id"], status, exc)
        return result

    def _networks(self, ports: list[dict[str, Any]], result: SyncResult) -> dict[str, _Network]:
        networks: dict[str, _Network] = {}
        for port in ports:
            try:
                nftables.parse_port(port)  # refuse the port now rather than the whole ruleset
                net_body = port["network"]
                net_id = str(net_body["id"])
                net = networks.get(net_id)
                if net is None:
                    net = self._network(net_body)
                    networks[net_id] = net
                net.ports.append(port)
            except (KeyError, TypeError, ValueError) as exc:
                LOG.error("port %s skipped: %s", port.get("id"), exc)
                result.skipped.append(str(port.get("id")))
        return networks

    def _network(self, body: Mapping[str, Any]) -> _Network:
        net_id = str(body["id"])
        bridge = linux.valid_bridge(naming.bridge(net_id))
        network_type = str(body.get("network_type"))
        raw_seg = body.get("segmentation_id")
        seg = int(raw_seg) if raw_seg is not None else None
        physnet = body.get("physical_network")
        mtu = linux.valid_mtu(body["mtu"]) if body.get("mtu") else None
        if network_type == "vxlan":
            if not self.local_ip:
                raise ValueError("a VXLAN network but no [agent] local_ip")
            naming.vxlan(int(seg or 0))
        elif network_type in ("flat", "vlan"):
            if physnet not in self.mappings:
                raise ValueError(f"physical network {physnet!r} is not mapped on this host")
            if network_type == "vlan":
                linux.vlan_name(self.mappings[physnet], int(seg or 0))
        else:
            raise ValueError(f"unsupported network type {network_type!r}")
        return _Network(net_id, bridge, network_type, seg, physnet, mtu)

    def _remote_macs(
        self, ctxt: RequestContext, peers: dict[str, str], networks: dict[str, _Network]
    ) -> dict[str, set[tuple[str, str]]]:
        """network id -> (MAC, VTEP) of the ports other hosts have on our VXLAN networks."""
        remote: dict[str, set[tuple[str, str]]] = {}
        if not any(n.network_type == "vxlan" for n in networks.values()):
            return remote
        for host, vtep in sorted(peers.items()):
            try:
                their_ports = self.api.get_host_ports(ctxt, host)
            except Exception as exc:  # flooding still reaches them
                LOG.warning("ports of %s unknown this time: %s", host, exc)
                continue
            for port in their_ports:
                net_id = str(port.get("network_id"))
                if net_id in networks:
                    try:
                        mac = linux.valid_mac(port.get("mac_address"))
                    except ValueError:
                        continue
                    remote.setdefault(net_id, set()).add((mac, vtep))
        return remote

    def _uplink(
        self,
        net: _Network,
        remote: dict[str, set[tuple[str, str]]],
        peers: dict[str, str],
    ) -> str | None:
        if net.network_type == "vxlan":
            assert self.local_ip is not None and net.segmentation_id is not None
            vni = int(net.segmentation_id)
            self.ip.ensure_vxlan(vni, self.local_ip, net.bridge, net.mtu)
            wanted = {(linux.ZERO_MAC, vtep) for vtep in peers.values()}
            wanted |= remote.get(net.id, set())
            self.ip.sync_fdb(naming.vxlan(vni), wanted)
            return naming.vxlan(vni)
        iface = self.mappings[str(net.physical_network)]
        if net.network_type == "vlan":
            iface = self.ip.ensure_vlan(iface, int(net.segmentation_id or 0))
        self.ip.attach(iface, net.bridge)
        return iface

    def _cleanup(
        self,
        links: dict[str, dict[str, Any]],
        bridges: set[str],
        taps: dict[str, str],
        uplinks: set[str],
    ) -> list[str]:
        removed: list[str] = []
        vlans = {
            name
            for name, link in links.items()
            if (link.get("linkinfo") or {}).get("info_kind") == "vlan"
            and link.get("link") in self.mappings.values()
        }
        for name, link in sorted(links.items()):
            master = link.get("master")
            if not (master and linux.is_cirrus_bridge(master)):
                continue
            if master not in bridges:
                if linux.is_cirrus_vxlan(name) or name in vlans:
                    self.ip.delete_link(name)
                    removed.append(name)
                else:
                    self.ip.detach(name)
            elif linux.is_cirrus_tap(name) and taps.get(name) != master:
                self.ip.detach(name)  # a tap of a port that left this host or network
        for name in sorted(links):
            stale_bridge = linux.is_cirrus_bridge(name) and name not in bridges
            stale_vxlan = linux.is_cirrus_vxlan(name) and name not in uplinks
            if (stale_bridge or stale_vxlan) and name not in removed:
                self.ip.delete_link(name)
                removed.append(name)
        return removed

    # -- fanout notifications (they only trigger a resync) ---------------------------------------

    def port_update(self, ctxt: RequestContext, **kwargs: Any) -> None:
        self.schedule()

    def port_delete(self, ctxt: RequestContext, **kwargs: Any) -> None:
        self.schedule()

    def security_group_update(self, ctxt: RequestContext, **kwargs: Any) -> None:
        self.schedule()

    def network_delete(self, ctxt: RequestContext, **kwargs: Any) -> None:
        self.schedule()

    def router_update(self, ctxt: RequestContext, **kwargs: Any) -> None:
        """For the l3-agent: nothing to wire here."""

    def schedule(self) -> None:
        self._dirty.set()

    # -- the loop ----------------------------------------------------------------------------------

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._loop, name=f"network-agent-{self.host}", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._dirty.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None

    def _loop(self) -> None:
        next_report = 0.0
        next_resync = 0.0
        was_connected = False
        while not self._stop.is_set():
            now = time.monotonic()
            connected = bool(self.connected()) if self.connected is not None else True
            if connected and not was_connected:
                next_resync = 0.0  # (re)connected: the fanout queue is new, resync everything
            was_connected = connected
            if now >= next_report:
                try:
                    self.report_state()
                except Exception as exc:
                    LOG.warning("state report failed: %s", exc)
                next_report = now + self.report_interval
            dirty = self._dirty.is_set()
            if dirty or now >= next_resync:
                if dirty:
                    self._stop.wait(self.debounce)  # let a burst of notifications settle
                    self._dirty.clear()
                try:
                    result = self.resync(force_firewall=not dirty)
                    LOG.debug("resync: %s", result)
                    next_resync = time.monotonic() + self.resync_interval
                except Exception:
                    LOG.exception("resync failed; retrying soon")
                    next_resync = time.monotonic() + min(5.0, self.resync_interval)
            timeout = max(0.0, min(next_report, next_resync) - time.monotonic())
            self._dirty.wait(min(timeout, 1.0))
