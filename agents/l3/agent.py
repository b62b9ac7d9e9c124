"""The l3-agent: one network namespace per router, wired from what network-api answers.

Per router ``qrouter-<id>``: ``net.ipv4.ip_forward=1`` (inside the namespace only), a veth per
interface ``qr-<port[:11]>`` (the host end ``tap<port[:11]>`` in the network's bridge
``brq<network[:11]>``, created when missing) with the port's MAC and address, the gateway
``qg-<port[:11]>`` the same way on the external network's bridge with its addresses, every
floating IP as a /32 (so the namespace answers ARP for it) and the default route via the
external subnet's ``gateway_ip``; then the NAT table (:mod:`agents.l3.rules`) and the hooks
(the metadata proxy plugs in there: :class:`RouterHook`).

Like the network agent it keeps no state that matters: a resync (on start, after every broker
reconnect, every ``resync_interval`` seconds, and shortly after ``router_update`` notifications)
compares everything and fixes the difference. Namespaces ``qrouter-<uuid>`` of routers that are
gone (or administratively down) are removed with their devices; nothing that is not named like
a Cirrus router object is ever touched. Bridges are left in place: the network agent owns them.

Collaborators come in: ``api`` has :class:`L3RPC`'s methods, ``ip`` is the host's
:class:`~agents.network.linux.IpRoute` (a namespace in the tests: ``host_netns``), ``runner``
runs the commands (``subprocess.run``).
"""

from __future__ import annotations

import ipaddress
import json
import logging
import re
import subprocess
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from agents.l3 import rules
from agents.network import linux, nftables
from control.common.context import RequestContext
from control.network import naming

LOG = logging.getLogger("cirrus.l3.agent")

AGENT_TYPE = "L3 agent"
BINARY = "cirrus-l3-agent"
_ROUTER_NS = re.compile(
    "^" + re.escape(naming.router_namespace("")) + r"[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}$"
)
_ROUTER_DEVICE = re.compile(r"^q[rg]-[0-9a-f\-]{1,11}$")


class L3RPC(Protocol):
    def report_state(
        self,
        ctxt: RequestContext,
        host: str,
        agent_type: str,
        binary: str,
        configurations: dict[str, Any] | None = None,
        **extra: Any,
    ) -> dict[str, Any]: ...

    def get_routers(self, ctxt: RequestContext, host: str) -> list[dict[str, Any]]: ...

    def update_floatingip_statuses(
        self, ctxt: RequestContext, router_id: str, statuses: dict[str, str]
    ) -> Any: ...


class RouterHook(Protocol):
    """Called after a router's namespace is wired (``router_updated``) and before a stale one is
    removed (``router_removed``): the metadata proxy's place."""

    def router_updated(self, router: rules.Router) -> None: ...

    def router_removed(self, router_id: str, namespace: str) -> None: ...


def is_router_namespace(name: str) -> bool:
    return bool(_ROUTER_NS.match(name))


@dataclass
class SyncResult:
    wired: list[str] = field(default_factory=list)  # router ids
    failed: list[str] = field(default_factory=list)  # router ids (invalid data or a command)
    removed: list[str] = field(default_factory=list)  # namespaces deleted


class L3Agent:
    target_version = "1.0"  # the fanout notifications' version

    def __init__(
        self,
        host: str,
        api: L3RPC,
        host_netns: str | None = None,
        resync_interval: float = 30.0,
        report_interval: float = 10.0,
        debounce: float = 0.5,
        hooks: list[RouterHook] | None = None,
        runner: linux.Runner = subprocess.run,
    ) -> None:
        self.host = host
        self.api = api
        self.runner = runner
        self.ip = linux.IpRoute(host_netns, runner=runner)  # bridges and the veths' host ends
        self.root = linux.IpRoute(runner=runner)  # ``ip netns`` itself
        self.resync_interval = resync_interval
        self.report_interval = report_interval
        self.debounce = debounce
        self.hooks = list(hooks or [])
        self.connected: Any = None  # callable -> bool: is the RPC server consuming?
        self._fip_statuses: dict[str, dict[str, str]] = {}  # router id -> last reported
        self._forwarding: set[str] = set()  # namespaces whose ip_forward this process set
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._dirty = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._started = False

    def _ctxt(self) -> RequestContext:
        return RequestContext(roles=["admin", "service"])

    def report_state(self) -> dict[str, Any]:
        result = self.api.report_state(
            self._ctxt(),
            self.host,
            AGENT_TYPE,
            BINARY,
            {"routers": len(self._fip_statuses), "agent_mode": "legacy"},
            topic="l3_agent",
            start_flag=not self._started,
        )
        self._started = True
        return result

    # -- namespaces ----------------------------------------------------------------------------

    def namespaces(self) -> set[str]:
        out = self.root.run("ip", ["-j", "netns", "list"]).strip()
        items = json.loads(out) if out else []
        return {str(item.get("name")) for item in items if isinstance(item, dict)}

    def _ensure_namespace(self, ns: str, existing: set[str]) -> linux.IpRoute:
        if ns not in existing:
            self.root.run("ip", ["netns", "add", linux.valid_netns(ns)])
            self._forwarding.discard(ns)
        inside = linux.IpRoute(ns, runner=self.runner)
        if ns not in self._forwarding:
            inside.set_up("lo")
            self.root.run(
                "ip", ["netns", "exec", ns, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1"]
            )
            self._forwarding.add(ns)
        return inside

    def _remove_namespace(self, ns: str) -> None:
        inside = linux.IpRoute(ns, runner=self.runner)
        for name in sorted(inside.links()):
            if _ROUTER_DEVICE.match(name):  # the veth goes, and its host end with it
                inside.delete_link(name)
        self.root.run("ip", ["netns", "del", linux.valid_netns(ns)])
        self._forwarding.discard(ns)

    # -- devices -------------------------------------------------------------------------------

    def _plug(
        self,
        inside: linux.IpRoute,
        device: str,
        peer: str,
        mac: str,
        bridge: str,
        mtu: int | None,
    ) -> None:
        """The veth ``device`` (in the router's namespace) / ``peer`` (host, in ``bridge``)."""
        ns = str(inside.netns)
        link = inside.link(device)
        if link is None:
            self.ip.delete_link(peer)  # a leftover host end of an earlier veth
            self.ip.run(
                "ip",
                ["link", "add", "name", peer, "type", "veth", "peer", "name", device, "netns", ns],
            )
        if link is None or str(link.get("address", "")).lower() != mac:
            inside.run("ip", ["link", "set", "dev", device, "address", linux.valid_mac(mac)])
        if self.ip.link(bridge) is None:
            self.ip.ensure_bridge(bridge)
        self.ip.attach(peer, bridge, mtu)
        inside.set_up(device, mtu)

    def _sync_addresses(
        self, inside: linux.IpRoute, device: str, wanted: list[ipaddress.IPv4Interface]
    ) -> None:
        shown = json.loads(inside.run("ip", ["-j", "addr", "show", "dev", device]) or "[]")
        current = {
            ipaddress.IPv4Interface(f"{info['local']}/{info['prefixlen']}")
            for item in shown
            for info in item.get("addr_info") or []
            if info.get("family") == "inet"
        }
        for address in sorted(current - set(wanted)):
            inside.run("ip", ["addr", "del", str(address), "dev", device])
        for address in wanted:
            if address not in current:
                inside.run("ip", ["addr", "add", str(address), "dev", device])

    def _sync_default_route(self, inside: linux.IpRoute, gateway: rules.Gateway | None) -> None:
        shown = json.loads(inside.run("ip", ["-j", "-4", "route", "show", "default"]) or "[]")
        if gateway is not None and gateway.gateway_ip is not None:
            if not any(gateway.gateway_ip in a.network for a in gateway.addresses):
                LOG.warning("gateway %s is off every external subnet", gateway.gateway_ip)
            else:
                current = [(r.get("gateway"), r.get("dev")) for r in shown]
                if current != [(str(gateway.gateway_ip), gateway.device)]:
                    inside.run(
                        "ip",
                        ["route", "replace", "default", "via", str(gateway.gateway_ip), "dev",
                         gateway.device],
                    )  # fmt: skip
                return
        if shown:
            inside.run("ip", ["-4", "route", "del", "default"])

    # -- one router ----------------------------------------------------------------------------

    def wire(self, router: rules.Router, existing: set[str]) -> None:
        """Make ``router``'s namespace what it should be."""
        inside = self._ensure_namespace(router.namespace, existing)
        wanted_devices: set[str] = set()
        for intf in router.interfaces:
            self._plug(inside, intf.device, intf.peer, intf.mac, intf.bridge, intf.mtu)
            self._sync_addresses(inside, intf.device, [intf.address])
            wanted_devices.add(intf.device)
        gateway = router.gateway
        if gateway is not None:
            self._plug(inside, gateway.device, gateway.peer, gateway.mac, gateway.bridge,
                       gateway.mtu)  # fmt: skip
            floating = [ipaddress.IPv4Interface(f"{f.floating}/32") for f in router.floating_ips]
            floating = [f for f in floating if f not in gateway.addresses]
            self._sync_addresses(inside, gateway.device, [*gateway.addresses, *floating])
            wanted_devices.add(gateway.device)
        for name in sorted(inside.links()):
            if _ROUTER_DEVICE.match(name) and name not in wanted_devices:
                inside.delete_link(name)
        self._sync_default_route(inside, gateway)
        nftables.Firewall(router.namespace, runner=self.runner).load(rules.render(router))
        for hook in self.hooks:
            hook.router_updated(router)

    # -- the resync ------------------------------------------------------------------------------

    def resync(self) -> SyncResult:
        with self._lock:
            return self._resync()

    def _resync(self) -> SyncResult:
        ctxt = self._ctxt()
        result = SyncResult()
        bodies = self.api.get_routers(ctxt, self.host)
        existing = self.namespaces()
        keep: set[str] = set()
        seen: set[str] = set()
        for body in bodies:
            router_id = str(body.get("id"))
            seen.add(router_id)
            fips = [str(f.get("id")) for f in body.get("floating_ips") or []]
            status = "DOWN"
            try:
                router = rules.parse_router(body)
                if router.admin_state_up:
                    keep.add(router.namespace)
                    self.wire(router, existing)
                    result.wired.append(router.id)
                    status = "ACTIVE" if router.gateway is not None else "DOWN"
            except (rules.InvalidRouter, linux.CommandError, KeyError, TypeError) as exc:
                LOG.error("router %s not wired: %s", router_id, exc)
                result.failed.append(router_id)
                if is_router_namespace(naming.router_namespace(router_id)):
                    keep.add(naming.router_namespace(router_id))  # leave it as it is
            self._report_fips(ctxt, router_id, dict.fromkeys(fips, status))
        for ns in sorted(existing - keep):
            if not is_router_namespace(ns):
                continue
            router_id = ns[len(naming.router_namespace("")) :]
            for hook in self.hooks:
                hook.router_removed(router_id, ns)
            self._remove_namespace(ns)
            result.removed.append(ns)
        for router_id in set(self._fip_statuses) - seen:
            del self._fip_statuses[router_id]
        return result

    def _report_fips(self, ctxt: RequestContext, router_id: str, statuses: dict[str, str]) -> None:
        if not statuses or self._fip_statuses.get(router_id) == statuses:
            self._fip_statuses.setdefault(router_id, statuses)
            return
        try:
            self.api.update_floatingip_statuses(ctxt, router_id, statuses)
            self._fip_statuses[router_id] = statuses
        except Exception as exc:  # reported again at the next resync
            LOG.warning("router %s: floating IP statuses not reported: %s", router_id, exc)

    # -- fanout notifications (they only trigger a resync) ---------------------------------------

    def router_update(self, ctxt: RequestContext, **kwargs: Any) -> None:
        self.schedule()

    def port_delete(self, ctxt: RequestContext, **kwargs: Any) -> None:
        self.schedule()  # a deleted port may take a floating IP's association with it

    def network_delete(self, ctxt: RequestContext, **kwargs: Any) -> None:
        self.schedule()

    def port_update(self, ctxt: RequestContext, **kwargs: Any) -> None:
        """Nothing to do: router changes come as ``router_update``."""

    def security_group_update(self, ctxt: RequestContext, **kwargs: Any) -> None:
        """Routers have no security groups."""

    def schedule(self) -> None:
        self._dirty = True
        self._wake.set()

    # -- the loop ----------------------------------------------------------------------------------

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=f"l3-agent-{self.host}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None

    def _is_connected(self) -> bool:
        return bool(self.connected()) if self.connected is not None else True

    def _run(self) -> None:
        deadlines = {"report": 0.0, "resync": 0.0}
        online = False
        while not self._stop.is_set():
            if self._is_connected() and not online:
                deadlines["resync"] = 0.0  # a new fanout queue: whatever was missed, resync
            online = self._is_connected()
            if time.monotonic() >= deadlines["report"]:
                self._safe_report()
                deadlines["report"] = time.monotonic() + self.report_interval
            if self._dirty:
                self._stop.wait(self.debounce)  # a burst of notifications settles first
                deadlines["resync"] = 0.0
            if time.monotonic() >= deadlines["resync"]:
                self._dirty = False
                deadlines["resync"] = time.monotonic() + self._safe_resync()
            self._wake.clear()
            pause = min(deadlines.values()) - time.monotonic()
            self._wake.wait(max(0.0, min(pause, 1.0)))

    def _safe_report(self) -> None:
        try:
            self.report_state()
        except Exception as exc:
            LOG.warning("state report failed: %s", exc)

    def _safe_resync(self) -> float:
        """Resync; the delay until the next one (shorter after a failure)."""
        try:
            LOG.debug("resync: %s", self.resync())
            return self.resync_interval
        except Exception:
            LOG.exception("resync failed; retrying soon")
            return min(5.0, self.resync_interval)
