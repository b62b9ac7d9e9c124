"""The DHCP agent: one dnsmasq per network with a DHCP subnet, in namespace ``qdhcp-<network>``.

Per network it serves: the network's DHCP port (``network:dhcp``, created by the RPC endpoint,
see :mod:`control.network.rpc_dhcp`), a veth ``tap<port[:11]>`` (host side, a port of the
network's bridge ``brq<network[:11]>``, created when missing: the network agent adopts it) /
``ns-<port[:11]>`` (in the namespace, with the port's MAC and addresses), and dnsmasq with the
hosts and options files rendered by :mod:`agents.dhcp.dnsmasq`.

Like the network agent it keeps no state that matters: a resync asks network-api which networks
need DHCP and what their ports are, and fixes the difference. It resyncs on start, after every
broker reconnect, every ``resync_interval`` seconds, and (debounced) after fanout
notifications: ``port_update``/``port_delete`` resync that network, ``network_delete`` and
``router_update`` everything. What it tears down (namespace, dnsmasq, files) is only what it
made: networks with a directory in ``state_path``.

Collaborators come in: ``api`` has the methods of :class:`control.network.rpc_dhcp.DhcpAPI`
(NetworkAPI's ``report_state`` and ``get_network_ports``, plus ``get_dhcp_networks``,
``get_or_create_dhcp_port``, ``release_dhcp_port``); ``ip`` is the host's
:class:`~agents.network.linux.IpRoute` (the tests give it a namespace standing for a host).
"""

from __future__ import annotations

import ipaddress
import json
import logging
import shutil
import subprocess
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from agents.dhcp import dnsmasq
from agents.network import linux
from control.common.context import RequestContext
from control.network import naming

LOG = logging.getLogger("cirrus.dhcp.agent")

AGENT_TYPE = "DHCP agent"
BINARY = "cirrus-dhcp-agent"
TOPIC = "dhcp"


class DhcpRPC(Protocol):
    def report_state(
        self,
        ctxt: RequestContext,
        host: str,
        agent_type: str,
        binary: str,
        configurations: dict[str, Any] | None = None,
        **extra: Any,
    ) -> dict[str, Any]: ...

    def get_network_ports(self, ctxt: RequestContext, network_id: str) -> dict[str, Any]: ...

    def get_dhcp_networks(self, ctxt: RequestContext, host: str) -> list[str]: ...

    def get_or_create_dhcp_port(
        self, ctxt: RequestContext, host: str, network_id: str
    ) -> dict[str, Any] | None: ...

    def release_dhcp_port(self, ctxt: RequestContext, host: str, network_id: str) -> bool: ...


@dataclass
class SyncResult:
    served: dict[str, str] = field(default_factory=dict)  # network id -> dnsmasq outcome
    removed: list[str] = field(default_factory=list)  # network ids torn down
    failed: list[str] = field(default_factory=list)  # network ids that raised (retried later)


class DhcpAgent:
    target_version = "1.0"  # the fanout notifications' version

    def __init__(
        self,
        host: str,
        api: DhcpRPC,
        ip: linux.IpRoute,
        state_path: str | Path,
        dnsmasq_binary: str = "dnsmasq",
        lease_time: Any = 86400,
        dns_servers: Sequence[str] = (),
        resync_interval: float = 30.0,
        report_interval: float = 10.0,
        debounce: float = 0.5,
    ) -> None:
        self.host = host
        self.api = api
        self.ip = ip
        self.state_path = Path(state_path)
        self.binary = dnsmasq_binary
        self.lease_time = dnsmasq.valid_lease_time(lease_time)
        self.dns_servers = [linux.valid_ip(d) for d in dns_servers]
        self.resync_interval = resync_interval
        self.report_interval = report_interval
        self.debounce = debounce
        self._lock = threading.Lock()
        self._dirty = threading.Event()
        self._pending: set[str | None] = set()  # network ids; None: everything
        self._pending_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._started = False
        self._counts: dict[str, int] = {"networks": 0, "subnets": 0, "ports": 0}
        self.connected: Any = None  # callable -> bool: is the RPC server consuming?

    def _ctxt(self) -> RequestContext:
        return RequestContext(roles=["admin", "service"])

    # -- state reports -------------------------------------------------------------------------

    def configurations(self) -> dict[str, Any]:
        return {"dhcp_driver": "dnsmasq", "dhcp_lease_duration": self.lease_time, **self._counts}

    def report_state(self) -> dict[str, Any]:
        result = self.api.report_state(
            self._ctxt(),
            self.host,
            AGENT_TYPE,
            BINARY,
            self.configurations(),
            topic=TOPIC,
            start_flag=not self._started,
        )
        self._started = True
        return result

    # -- resync --------------------------------------------------------------------------------

    def owned_networks(self) -> set[str]:
        """Networks this agent set up: a directory of theirs in ``state_path``."""
        if not self.state_path.is_dir():
            return set()
        owned = set()
        for entry in self.state_path.iterdir():
            try:
                owned.add(dnsmasq.valid_uuid(entry.name, "network id"))
            except ValueError:
                continue
        return owned

    def resync(self) -> SyncResult:
        """Serve every network that needs DHCP; tear down the others this agent set up."""
        with self._lock:
            result = SyncResult()
            wanted = set(self.api.get_dhcp_networks(self._ctxt(), self.host))
            counts = {"networks": 0, "subnets": 0, "ports": 0}
            for network_id in sorted(wanted):
                self._sync_one(network_id, result, counts)
            for network_id in sorted(self.owned_networks() - wanted):
                self.teardown(network_id)
                result.removed.append(network_id)
                try:  # the network may be gone (its DHCP port with it)
                    self.api.release_dhcp_port(self._ctxt(), self.host, network_id)
                except Exception as exc:
                    LOG.warning("network %s: DHCP port not released: %s", network_id, exc)
            self._counts = counts
            return result

    def sync_network(self, network_id: str) -> SyncResult:
        """Resync one network (after a port notification)."""
        with self._lock:
            result = SyncResult()
            self._sync_one(network_id, result, {"networks": 0, "subnets": 0, "ports": 0})
            return result

    def _sync_one(self, network_id: str, result: SyncResult, counts: dict[str, int]) -> None:
        try:
            outcome = self._sync_network(dnsmasq.valid_uuid(network_id, "network id"), counts)
        except Exception:
            LOG.exception("network %s: DHCP not set up this time", network_id)
            result.failed.append(network_id)
            return
        if outcome is None:
            result.removed.append(network_id)
        else:
            result.served[network_id] = outcome

    def _sync_network(self, network_id: str, counts: dict[str, int]) -> str | None:
        ctxt = self._ctxt()
        info = self.api.get_network_ports(ctxt, network_id)
        network = info.get("network")
        subnets = dnsmasq.served_subnets(info.get("subnets") or []) if network else []
        if not subnets:
            self.teardown(network_id)
            if network:
                self.api.release_dhcp_port(ctxt, self.host, network_id)
            return None
        port = self.api.get_or_create_dhcp_port(ctxt, self.host, network_id)
        if port is None:
            self.teardown(network_id)
            return None
        assert network is not None
        mtu = linux.valid_mtu(network["mtu"]) if network.get("mtu") else None
        interface = self.plug(network_id, port, subnets, mtu)
        ports = list(info.get("ports") or [])
        if not any(p.get("id") == port["id"] for p in ports):
            ports.append(port)  # created just now: the listing did not have it yet
        proc = self.process(network_id)
        argv = dnsmasq.render_argv(self.binary, interface, subnets, proc.files, self.lease_time)
        hosts = dnsmasq.render_hosts(subnets, ports)
        opts = dnsmasq.render_opts(subnets, ports, mtu, self.dns_servers)
        outcome = proc.ensure(argv, hosts, opts)
        counts["networks"] += 1
        counts["subnets"] += len(subnets)
        counts["ports"] += len(ports)
        LOG.debug("network %s: dnsmasq %s", network_id, outcome)
        return outcome

    # -- namespace and interfaces --------------------------------------------------------------

    def process(self, network_id: str) -> dnsmasq.Dnsmasq:
        return dnsmasq.Dnsmasq(self.state_path / network_id, naming.dhcp_namespace(network_id))

    def plug(
        self,
        network_id: str,
        port: dict[str, Any],
        subnets: Sequence[dnsmasq.Subnet],
        mtu: int | None,
    ) -> str:
        """Namespace, veth, bridge, MAC and addresses of the DHCP port; the interface name."""
        port_id = dnsmasq.valid_uuid(port["id"], "port id")
        mac = linux.valid_mac(port["mac_address"])
        ns = naming.dhcp_namespace(network_id)
        bridge = naming.bridge(network_id)
        dev = naming.device("ns-", port_id)
        tap = naming.tap(port_id)
        if ns not in _netns_list():
            _run(["ip", "netns", "add", ns])
        inside = linux.IpRoute(netns=ns)
        links = inside.links()
        for name in links:  # the device of an earlier DHCP port
            if name.startswith("ns-") and name != dev:
                inside.delete_link(name)
        if dev not in links:
            if self.ip.link(tap) is not None:
                self.ip.delete_link(tap)
            self.ip.run(
                "ip", ["link", "add", tap, "type", "veth", "peer", "name", dev, "netns", ns]
            )
        self.ip.ensure_bridge(bridge)
        self.ip.attach(tap, bridge, mtu)
        link = inside.link(dev) or {}
        if str(link.get("address", "")).lower() != mac:
            inside.run("ip", ["link", "set", "dev", dev, "address", mac])
        inside.set_up("lo")
        inside.set_up(dev, mtu)
        wanted = set()
        by_subnet = {str(f.get("subnet_id")): str(f.get("ip_address")) for f in port["fixed_ips"]}
        for subnet in subnets:
            if subnet.id in by_subnet:
                address = ipaddress.ip_address(by_subnet[subnet.id])
                wanted.add(f"{address}/{subnet.network.prefixlen}")
        current = set()
        for entry in json.loads(inside.run("ip", ["-j", "addr", "show", "dev", dev]) or "[]"):
            for info in entry.get("addr_info") or []:
                if info.get("family") == "inet":
                    current.add(f"{info['local']}/{info['prefixlen']}")
        for cidr in sorted(current - wanted):
            inside.run("ip", ["addr", "del", cidr, "dev", dev])
        for cidr in sorted(wanted - current):
            inside.run("ip", ["addr", "add", cidr, "dev", dev])
        return dev

    def teardown(self, network_id: str) -> None:
        """Stop our dnsmasq of the network, delete its namespace (its veth goes with it) and
        its files. Never touches the bridge: the network agent owns bridges."""
        network_id = dnsmasq.valid_uuid(network_id, "network id")
        directory = self.state_path / network_id
        if directory.is_dir():
            self.process(network_id).stop()
        ns = naming.dhcp_namespace(network_id)
        if ns in _netns_list():
            _run(["ip", "netns", "del", ns])
            LOG.info("network %s: DHCP namespace %s deleted", network_id, ns)
        if directory.is_dir():
            shutil.rmtree(directory)

    # -- fanout notifications ------------------------------------------------------------------

    def port_update(self, ctxt: RequestContext, **kwargs: Any) -> None:
        self.schedule(kwargs.get("network_id"))

    def port_delete(self, ctxt: RequestContext, **kwargs: Any) -> None:
        self.schedule(kwargs.get("network_id"))

    def network_delete(self, ctxt: RequestContext, **kwargs: Any) -> None:
        self.schedule(None)

    def router_update(self, ctxt: RequestContext, **kwargs: Any) -> None:
        self.schedule(None)  # router interfaces change the metadata route

    def security_group_update(self, ctxt: RequestContext, **kwargs: Any) -> None:
        """Nothing for DHCP."""

    def schedule(self, network_id: str | None = None) -> None:
        with self._pending_lock:
            self._pending.add(network_id if network_id else None)
        self._dirty.set()

    # -- the loop ------------------------------------------------------------------------------

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._loop, name=f"dhcp-agent-{self.host}", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop the loop; dnsmasq keeps serving (leases survive an agent restart)."""
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
                next_resync = 0.0  # (re)connected: notifications may have been missed
            was_connected = connected
            if now >= next_report:
                try:
                    self.report_state()
                except Exception as exc:
                    LOG.warning("state report failed: %s", exc)
                next_report = now + self.report_interval
            pending: set[str | None] = set()
            if self._dirty.is_set():
                self._stop.wait(self.debounce)  # let a burst of notifications settle
                self._dirty.clear()
                with self._pending_lock:
                    pending, self._pending = self._pending, set()
            try:
                if None in pending or now >= next_resync:
                    result = self.resync()
                    next_resync = time.monotonic() + self.resync_interval
                else:
                    for network_id in sorted(n for n in pending if n):
                        result = self.sync_network(network_id)
                        if result.failed:
                            next_resync = 0.0
                LOG.debug("DHCP resync done")
            except Exception:
                LOG.exception("DHCP resync failed; retrying soon")
                next_resync = time.monotonic() + min(5.0, self.resync_interval)
            timeout = max(0.0, min(next_report, next_resync) - time.monotonic())
            self._dirty.wait(min(timeout, 1.0))


def _run(argv: list[str]) -> str:
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise linux.CommandError(argv, proc.returncode, proc.stderr or "")
    return proc.stdout or ""


def _netns_list() -> set[str]:
    """Names of the named network namespaces (``ip netns list``; global, not per host netns)."""
    out = _run(["ip", "-j", "netns", "list"]).strip()
    if not out:
        return set()
    return {str(item["name"]) for item in json.loads(out) if isinstance(item, dict)}
