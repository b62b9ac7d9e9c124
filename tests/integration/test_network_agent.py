"""The network agent on real kernel objects: two simulated hosts (network namespaces joined by a
veth underlay), one agent per host running its ``ip``/``bridge``/``nft`` commands inside its
namespace, and two "guests" (namespaces whose veth peer, named like the port's tap, sits in the
host namespace as QEMU's tap would). Only the RPC side is fake: an object with the methods of
NetworkAPI answering what control/network/rpc.py's endpoint answers.

Every namespace is named ``cirnt-*-<random>`` and deleted by name at the end, test failed or not.
"""

from __future__ import annotations

import os
import random
import secrets
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from agents.network import linux, nftables
from agents.network.agent import NetworkAgent
from control.common.context import RequestContext
from control.network import naming

pytestmark = [pytest.mark.slow]

VM1_IP = "192.168.77.11"
VM2_IP = "192.168.77.12"
SPOOFED_IP = "192.168.77.99"


def _unavailable() -> str | None:
    if os.geteuid() != 0:
        return "needs root (network namespaces, bridges, VXLAN, nftables)"
    for tool in ("ip", "bridge", "nft"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    return None


# One ICMP echo (raw socket) from inside a guest namespace: exit 0 when answered within 1 s.
# Run as ``python -c`` through ``ip netns exec`` so the tests need no ping binary.
ECHO = """
import os, select, socket, struct, sys
dst, src = sys.argv[1], sys.argv[2]
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
if src:
    s.bind((src, 0))
ident = os.getpid() & 0xFFFF
def csum(b):
    t = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    t = (t >> 16) + (t & 0xFFFF)
    return ~(t + (t >> 16)) & 0xFFFF
body = struct.pack("!BBHHH", 8, 0, 0, ident, 1) + b"cirrus-echo-test"
body = body[:2] + struct.pack("!H", csum(body)) + body[4:]
s.sendto(body, (dst, 0))
while select.select([s], [], [], 1.0)[0]:
    pkt, addr = s.recvfrom(2048)
    icmp = pkt[(pkt[0] & 0x0F) * 4:]
    if addr[0] == dst and icmp[0] == 0 and struct.unpack("!H", icmp[4:6])[0] == ident:
        sys.exit(0)
sys.exit(1)
"""


def sh(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(list(argv), capture_output=True, text=True, check=False, timeout=30)
    if check and proc.returncode != 0:
        raise AssertionError(f"{argv} failed: {proc.stderr}")
    return proc


def rule(direction: str, ethertype: str = "IPv4", **extra: Any) -> dict[str, Any]:
    body = {
        "id": str(uuid.uuid4()),
        "security_group_id": "sg",
        "direction": direction,
        "ethertype": ethertype,
        "protocol": None,
        "port_range_min": None,
        "port_range_max": None,
        "remote_ip_prefix": None,
        "remote_group_id": None,
    }
    body.update(extra)
    return body


BASE_RULES = [rule("egress"), rule("egress", "IPv6"), rule("ingress", protocol="tcp",
              port_range_min=22, port_range_max=22)]  # fmt: skip
ICMP_IN = rule("ingress", protocol="icmp")


@dataclass
class FakeNetworkAPI:
    """NetworkAPI's methods over in-memory ports (what get_host_ports answers)."""

    ports: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    peers: dict[str, str] = field(default_factory=dict)
    statuses: dict[str, str] = field(default_factory=dict)
    reports: list[dict[str, Any]] = field(default_factory=list)

    def report_state(
        self,
        ctxt: RequestContext,
        host: str,
        agent_type: str,
        binary: str,
        configurations: dict[str, Any] | None = None,
        **extra: Any,
    ) -> dict[str, Any]:
        self.reports.append({"host": host, "agent_type": agent_type, **(configurations or {})})
        return {"id": "agent-" + host, "admin_state_up": True}

    def get_host_ports(self, ctxt: RequestContext, host: str) -> list[dict[str, Any]]:
        return [
            {**p, "status": self.statuses.get(p["id"], "DOWN")} for p in self.ports.get(host, [])
        ]

    def get_vxlan_peers(self, ctxt: RequestContext) -> dict[str, str]:
        return dict(self.peers)

    def update_port_status(self, ctxt: RequestContext, port_id: str, status: str) -> bool:
        self.statuses[port_id] = status
        return True


def port_body(port_id: str, net: dict[str, Any], mac: str, ip: str) -> dict[str, Any]:
    return {
        "id": port_id,
        "network_id": net["id"],
        "network": net,
        "mac_address": mac,
        "fixed_ips": [{"subnet_id": "subnet", "ip_address": ip}],
        "device_id": str(uuid.uuid4()),
        "device_owner": "compute:nova",
        "admin_state_up": True,
        "status": "DOWN",
        "port_security_enabled": True,
        "allowed_address_pairs": [],
        "security_group_ids": ["sg"],
        "security_group_rules": list(BASE_RULES),
        "binding:vif_type": "bridge",
        "binding:vif_details": {
            "connectivity": "l2",
            "port_filter": True,
            "bridge_name": naming.bridge(net["id"]),
        },  # fmt: skip
    }


@dataclass
class Cloud:
    api: FakeNetworkAPI
    agents: dict[str, NetworkAgent]
    hosts: dict[str, str]  # host -> namespace
    vms: dict[str, str]  # host -> guest namespace
    vteps: dict[str, str]
    net: dict[str, Any]
    port1: dict[str, Any]
    port2: dict[str, Any]

    def resync(self) -> None:
        for agent in self.agents.values():
            agent.resync()

    def set_rules(self, rules: list[dict[str, Any]]) -> None:
        for port in (self.port1, self.port2):
            port["security_group_rules"] = list(rules)
        self.resync()

    def ping(self, src_vm: str, dst: str, source: str | None = None, count: int = 3) -> bool:
        argv = ["ip", "netns", "exec", self.vms[src_vm], sys.executable, "-c", ECHO]
        argv += [dst, source or ""]
        return any(sh(*argv, check=False).returncode == 0 for _ in range(count))


@pytest.fixture(scope="module")
def cloud() -> Iterator[Cloud]:
    reason = _unavailable()
    if reason:
        pytest.skip(f"network agent integration tests skipped: {reason}")
    tag = secrets.token_hex(3)
    hosts = {"h1": f"cirnt-h1-{tag}", "h2": f"cirnt-h2-{tag}"}
    vms = {"h1": f"cirnt-vm1-{tag}", "h2": f"cirnt-vm2-{tag}"}
    created: list[str] = []
    try:
        for ns in [*hosts.values(), *vms.values()]:
            sh("ip", "netns", "add", ns)
            created.append(ns)
        subnet = random.randint(100, 250)
        vteps = {"h1": f"10.{subnet}.0.1", "h2": f"10.{subnet}.0.2"}
        sh("ip", "-n", hosts["h1"], "link", "add", "under0", "type", "veth", "peer", "name",
           "under0", "netns", hosts["h2"])  # fmt: skip
        for host, ns in hosts.items():
            sh("ip", "-n", ns, "link", "set", "lo", "up")
            sh("ip", "-n", ns, "addr", "add", f"{vteps[host]}/24", "dev", "under0")
            sh("ip", "-n", ns, "link", "set", "under0", "up")
        net = {
            "id": str(uuid.uuid4()),
            "network_type": "vxlan",
            "physical_network": None,
            "segmentation_id": random.randint(1000, 9000),
            "mtu": 1450,
            "admin_state_up": True,
        }
        net["bridge_name"] = naming.bridge(net["id"])
        port1 = port_body(str(uuid.uuid4()), net, "fa:16:3e:10:00:01", VM1_IP)
        port2 = port_body(str(uuid.uuid4()), net, "fa:16:3e:10:00:02", VM2_IP)
        for host, port, ip in (("h1", port1, VM1_IP), ("h2", port2, VM2_IP)):
            vm = vms[host]
            sh("ip", "-n", vm, "link", "add", "eth0", "type", "veth", "peer", "name",
               naming.tap(port["id"]), "netns", hosts[host])  # fmt: skip
            sh("ip", "-n", vm, "link", "set", "eth0", "address", port["mac_address"], "mtu", "1450")
            sh("ip", "-n", vm, "addr", "add", f"{ip}/24", "dev", "eth0")
            sh("ip", "-n", vm, "link", "set", "eth0", "up")
            sh("ip", "-n", vm, "link", "set", "lo", "up")
        api = FakeNetworkAPI(ports={"h1": [port1], "h2": [port2]}, peers=dict(vteps))
        agents = {
            host: NetworkAgent(
                host,
                api,
                linux.IpRoute(netns=ns),
                nftables.Firewall(netns=ns),
                local_ip=vteps[host],
                resync_interval=3600,
            )
            for host, ns in hosts.items()
        }
        yield Cloud(api, agents, hosts, vms, vteps, net, port1, port2)
    finally:
        for ns in reversed(created):
            sh("ip", "netns", "del", ns, check=False)


def test_ping_over_vxlan_with_a_unicast_fdb(cloud: Cloud) -> None:
    cloud.set_rules([*BASE_RULES, ICMP_IN])
    assert cloud.ping("h1", VM2_IP)
    assert cloud.ping("h2", VM1_IP)

    vxlan = naming.vxlan(cloud.net["segmentation_id"])
    h1 = linux.IpRoute(netns=cloud.hosts["h1"])
    info = h1.link(vxlan)
    assert info is not None
    data = info["linkinfo"]["info_data"]
    assert data["local"] == cloud.vteps["h1"] and data["port"] == 4789
    assert "group" not in data and data["learning"] is False  # unicast only, FDB by the agent
    assert info["master"] == naming.bridge(cloud.net["id"])
    fdb = {(e["mac"], e["dst"]) for e in h1.fdb(vxlan)}
    assert fdb == {
        (linux.ZERO_MAC, cloud.vteps["h2"]),
        (cloud.port2["mac_address"], cloud.vteps["h2"]),
    }
    tap = h1.link(naming.tap(cloud.port1["id"]))
    assert tap is not None and tap["master"] == naming.bridge(cloud.net["id"])
    assert cloud.api.statuses == {cloud.port1["id"]: "ACTIVE", cloud.port2["id"]: "ACTIVE"}

    report = cloud.agents["h1"].report_state()
    assert report["admin_state_up"] is True
    assert cloud.api.reports[-1]["tunneling_ip"] == cloud.vteps["h1"]
    assert cloud.api.reports[-1]["tunnel_types"] == ["vxlan"]

    # a second resync changes nothing
    again = cloud.agents["h1"].resync()
    assert again.removed == [] and again.firewall_changed is False


def test_security_group_without_icmp_ingress_blocks_ping(cloud: Cloud) -> None:
    cloud.set_rules(list(BASE_RULES))
    assert not cloud.ping("h1", VM2_IP, count=2)
    cloud.set_rules([*BASE_RULES, ICMP_IN])
    assert cloud.ping("h1", VM2_IP)


def test_spoofed_source_ip_is_dropped(cloud: Cloud) -> None:
    cloud.set_rules([*BASE_RULES, ICMP_IN])
    vm1, vm2 = cloud.vms["h1"], cloud.vms["h2"]
    # The guest claims an address that is not its own; static neighbours so that only the IP
    # packets (not ARP, anti-spoofed too) decide.
    sh("ip", "-n", vm1, "addr", "add", f"{SPOOFED_IP}/32", "dev", "eth0")
    sh("ip", "-n", vm1, "neigh", "replace", VM2_IP, "lladdr", cloud.port2["mac_address"],
       "dev", "eth0", "nud", "permanent")  # fmt: skip
    sh("ip", "-n", vm2, "neigh", "replace", SPOOFED_IP, "lladdr", cloud.port1["mac_address"],
       "dev", "eth0", "nud", "permanent")  # fmt: skip
    try:
        assert cloud.ping("h1", VM2_IP)  # its own address still works
        assert not cloud.ping("h1", VM2_IP, source=SPOOFED_IP, count=2)
        # the same packets pass once the address is an allowed address pair of the port
        cloud.port1["allowed_address_pairs"] = [
            {"ip_address": SPOOFED_IP, "mac_address": cloud.port1["mac_address"]}
        ]
        cloud.resync()
        assert cloud.ping("h1", VM2_IP, source=SPOOFED_IP)
    finally:
        cloud.port1["allowed_address_pairs"] = []
        cloud.resync()
        sh("ip", "-n", vm1, "addr", "del", f"{SPOOFED_IP}/32", "dev", "eth0", check=False)


def test_removing_the_last_port_removes_bridge_and_vxlan(cloud: Cloud) -> None:
    h1 = linux.IpRoute(netns=cloud.hosts["h1"])
    bridge = naming.bridge(cloud.net["id"])
    vxlan = naming.vxlan(cloud.net["segmentation_id"])
    cloud.resync()
    assert h1.link(bridge) is not None and h1.link(vxlan) is not None
    cloud.api.ports["h1"] = []
    try:
        result = cloud.agents["h1"].resync()
        assert set(result.removed) == {bridge, vxlan}
        assert h1.link(bridge) is None and h1.link(vxlan) is None
        tap = h1.link(naming.tap(cloud.port1["id"]))
        assert tap is not None and not tap.get("master")  # QEMU's tap is left to QEMU
        assert cloud.agents["h1"].firewall.list_table("bridge") == ""
        assert cloud.agents["h1"].firewall.list_table("inet") == ""
        # host2 still has its port: its bridge stays
        assert linux.IpRoute(netns=cloud.hosts["h2"]).link(bridge) is not None
    finally:
        cloud.api.ports["h1"] = [cloud.port1]
        cloud.resync()
    assert cloud.ping("h1", VM2_IP)
