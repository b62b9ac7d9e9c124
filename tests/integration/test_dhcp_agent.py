"""The DHCP agent on real kernel objects: a simulated host (a network namespace holding the
network's bridge), the agent's ``qdhcp-<network>`` namespace with a real dnsmasq, and a "guest"
(a namespace whose veth peer is a port of the bridge) running busybox's ``udhcpc``. Only the
RPC side is fake: an object with the DhcpAPI methods the agent uses, answering what
control/network/rpc.py and control/network/rpc_dhcp.py answer.

Every namespace is named ``cirdh-*-<random>`` or ``qdhcp-<random network id>`` and deleted by
name at the end; dnsmasq is stopped through the agent's PID file.
"""

from __future__ import annotations

import os
import random
import secrets
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from agents.dhcp.agent import AGENT_TYPE, BINARY, DhcpAgent
from agents.network import linux
from control.common.context import RequestContext
from control.network import naming
from control.network.rpc import hostname

pytestmark = [pytest.mark.slow]

MTU = 1400


def _unavailable() -> str | None:
    if os.geteuid() != 0:
        return "needs root (network namespaces, bridges, dnsmasq)"
    for tool in ("ip", "bridge"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    if shutil.which("dnsmasq") is None:
        return "dnsmasq is not installed (apt-get install dnsmasq-base)"
    if shutil.which("busybox") is None:
        return "busybox is not installed (udhcpc is the DHCP client)"
    return None


def sh(*argv: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(list(argv), capture_output=True, text=True, check=False, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{argv} failed: {proc.stderr}")
    return proc


def random_mac() -> str:
    return "fa:16:3e:" + ":".join(f"{b:02x}" for b in secrets.token_bytes(3))


@dataclass
class FakeDhcpAPI:
    """The DHCP agent's RPC calls over in-memory records, shaped as the endpoints answer."""

    network: dict[str, Any]
    subnets: list[dict[str, Any]]
    ports: list[dict[str, Any]] = field(default_factory=list)
    dhcp_ip: str = ""
    reports: list[dict[str, Any]] = field(default_factory=list)
    released: list[str] = field(default_factory=list)

    def report_state(
        self,
        ctxt: RequestContext,
        host: str,
        agent_type: str,
        binary: str,
        configurations: dict[str, Any] | None = None,
        **extra: Any,
    ) -> dict[str, Any]:
        self.reports.append({"host": host, "agent_type": agent_type, "binary": binary, **extra})
        return {"id": "agent-" + host, "admin_state_up": True}

    def get_dhcp_networks(self, ctxt: RequestContext, host: str) -> list[str]:
        if any(s["enable_dhcp"] and s["ip_version"] == 4 for s in self.subnets):
            return [self.network["id"]]
        return []

    def get_network_ports(self, ctxt: RequestContext, network_id: str) -> dict[str, Any]:
        if network_id != self.network["id"]:
            return {"network": None, "subnets": [], "ports": []}
        return {
            "network": dict(self.network),
            "subnets": [dict(s) for s in self.subnets],
            "ports": [
                {
                    "id": p["id"],
                    "mac_address": p["mac_address"],
                    "device_owner": p["device_owner"],
                    "admin_state_up": p["admin_state_up"],
                    "fixed_ips": [
                        {**f, "hostname": hostname(f["ip_address"])} for f in p["fixed_ips"]
                    ],
                }
                for p in self.ports
            ],
        }

    def get_or_create_dhcp_port(
        self, ctxt: RequestContext, host: str, network_id: str
    ) -> dict[str, Any] | None:
        if network_id != self.network["id"]:
            return None
        port = next((p for p in self.ports if p["device_owner"] == "network:dhcp"), None)
        if port is None:
            port = {
                "id": str(uuid.uuid4()),
                "network_id": network_id,
                "mac_address": random_mac(),
                "device_id": f"dhcp-{host}-{network_id}",
                "device_owner": "network:dhcp",
                "admin_state_up": True,
                "binding:host_id": host,
                "fixed_ips": [
                    {"subnet_id": s["id"], "ip_address": self.dhcp_ip}
                    for s in self.subnets
                    if s["enable_dhcp"]
                ],
            }
            self.ports.append(port)
        return dict(port)

    def release_dhcp_port(self, ctxt: RequestContext, host: str, network_id: str) -> bool:
        before = len(self.ports)
        self.ports = [p for p in self.ports if p["device_owner"] != "network:dhcp"]
        self.released.append(network_id)
        return len(self.ports) < before


# udhcpc runs this on each event; "bound" writes the environment it got (ip, router, mtu...).
CLIENT_SCRIPT = """#!/bin/sh
if [ "$1" = bound ]; then env > "$(dirname "$0")/lease.env"; fi
exit 0
"""


@dataclass
class Lab:
    api: FakeDhcpAPI
    agent: DhcpAgent
    host_ns: str
    vm_ns: str
    prefix: str
    vm_port: dict[str, Any]
    workdir: Path

    @property
    def qdhcp(self) -> str:
        return naming.dhcp_namespace(self.api.network["id"])

    def dhcp_request(self, mac: str) -> dict[str, str] | None:
        """Run a DHCP client in the guest with ``mac``; the lease's variables, or None."""
        sh("ip", "-n", self.vm_ns, "link", "set", "dev", "eth0", "down")
        sh("ip", "-n", self.vm_ns, "link", "set", "dev", "eth0", "address", mac)
        sh("ip", "-n", self.vm_ns, "link", "set", "dev", "eth0", "up")
        lease = self.workdir / "lease.env"
        lease.unlink(missing_ok=True)
        script = self.workdir / "udhcpc.sh"
        proc = sh(
            "ip", "netns", "exec", self.vm_ns, "busybox", "udhcpc", "-i", "eth0", "-n", "-q",
            "-f", "-t", "4", "-T", "1", "-s", str(script), "-O", "mtu", "-O", "staticroutes",
            check=False,
        )  # fmt: skip
        if proc.returncode != 0 or not lease.exists():
            return None
        env: dict[str, str] = {}
        for line in lease.read_text().splitlines():
            key, sep, value = line.partition("=")
            if sep:
                env[key] = value
        return env

    def dnsmasq_pid(self) -> int | None:
        return self.agent.process(self.api.network["id"]).pid()


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    reason = _unavailable()
    if reason:
        pytest.skip(f"DHCP agent integration tests skipped: {reason}")
    tag = secrets.token_hex(3)
    host_ns, vm_ns = f"cirdh-host-{tag}", f"cirdh-vm-{tag}"
    net_id, subnet_id = str(uuid.uuid4()), str(uuid.uuid4())
    prefix = f"10.{random.randint(100, 250)}.{random.randint(0, 255)}"
    workdir = Path(tempfile.mkdtemp(prefix="cirdh-"))
    workdir.chmod(0o755)  # dnsmasq re-reads its files as nobody after a SIGHUP
    (workdir / "udhcpc.sh").write_text(CLIENT_SCRIPT)
    (workdir / "udhcpc.sh").chmod(0o755)
    network = {
        "id": net_id,
        "network_type": "vxlan",
        "physical_network": None,
        "segmentation_id": 4242,
        "mtu": MTU,
        "admin_state_up": True,
        "bridge_name": naming.bridge(net_id),
    }
    subnet = {
        "id": subnet_id,
        "name": "",
        "network_id": net_id,
        "ip_version": 4,
        "cidr": f"{prefix}.0/24",
        "gateway_ip": f"{prefix}.1",
        "allocation_pools": [{"start": f"{prefix}.2", "end": f"{prefix}.254"}],
        "enable_dhcp": True,
        "dns_nameservers": ["192.0.2.53"],
        "host_routes": [],
        "ipv6_ra_mode": None,
        "ipv6_address_mode": None,
        "subnetpool_id": None,
    }
    vm_port = {
        "id": str(uuid.uuid4()),
        "mac_address": random_mac(),
        "device_owner": "compute:nova",
        "admin_state_up": True,
        "fixed_ips": [{"subnet_id": subnet_id, "ip_address": f"{prefix}.10"}],
    }
    router_port = {
        "id": str(uuid.uuid4()),
        "mac_address": random_mac(),
        "device_owner": "network:router_interface",
        "admin_state_up": True,
        "fixed_ips": [{"subnet_id": subnet_id, "ip_address": f"{prefix}.1"}],
    }
    api = FakeDhcpAPI(network, [subnet], [vm_port, router_port], dhcp_ip=f"{prefix}.2")
    agent = DhcpAgent(
        "netnode", api, linux.IpRoute(netns=host_ns), workdir / "state", lease_time=600
    )
    namespaces = [host_ns, vm_ns, naming.dhcp_namespace(net_id)]
    try:
        sh("ip", "netns", "add", host_ns)
        sh("ip", "netns", "add", vm_ns)
        sh("ip", "-n", host_ns, "link", "set", "lo", "up")
        sh("ip", "-n", vm_ns, "link", "set", "lo", "up")
        sh("ip", "-n", vm_ns, "link", "add", "eth0", "type", "veth", "peer", "name", "vmport",
           "netns", host_ns)  # fmt: skip
        yield Lab(api, agent, host_ns, vm_ns, prefix, vm_port, workdir)
    finally:
        try:
            agent.teardown(net_id)  # dnsmasq by its PID file, the qdhcp namespace
        finally:
            for ns in namespaces:
                sh("ip", "netns", "del", ns, check=False)
            shutil.rmtree(workdir, ignore_errors=True)


def _attach_guest(lab: Lab) -> None:
    bridge = naming.bridge(lab.api.network["id"])
    sh("ip", "-n", lab.host_ns, "link", "set", "dev", "vmport", "master", bridge, "up")


def test_resync_builds_namespace_bridge_and_dnsmasq(lab: Lab) -> None:
    result = lab.agent.resync()
    net_id = lab.api.network["id"]
    assert result.served == {net_id: "started"}, result
    dhcp_port = next(p for p in lab.api.ports if p["device_owner"] == "network:dhcp")
    host_ip = linux.IpRoute(netns=lab.host_ns)
    bridge = naming.bridge(net_id)
    tap = host_ip.link(naming.tap(dhcp_port["id"]))
    assert tap is not None and tap.get("master") == bridge and tap.get("mtu") == MTU
    inside = linux.IpRoute(netns=lab.qdhcp)
    dev = inside.link(naming.device("ns-", dhcp_port["id"]))
    assert dev is not None and dev["address"] == dhcp_port["mac_address"]
    addrs = sh("ip", "-n", lab.qdhcp, "-4", "-o", "addr", "show").stdout
    assert f"{lab.prefix}.2/24" in addrs
    pid = lab.dnsmasq_pid()
    assert pid is not None
    assert lab.agent.resync().served == {net_id: "unchanged"}
    assert lab.dnsmasq_pid() == pid
    hosts = (lab.workdir / "state" / net_id / "host").read_text()
    assert f"{lab.vm_port['mac_address']},host-{lab.prefix.replace('.', '-')}-10" in hosts
    lab.agent.report_state()
    assert lab.api.reports[-1]["agent_type"] == AGENT_TYPE
    assert lab.api.reports[-1]["binary"] == BINARY
    _attach_guest(lab)


def test_guest_gets_its_address_router_and_mtu(lab: Lab) -> None:
    lease = lab.dhcp_request(lab.vm_port["mac_address"])
    assert lease is not None, "no DHCP lease for a known MAC"
    assert lease["ip"] == f"{lab.prefix}.10"
    assert lease["router"].split() == [f"{lab.prefix}.1"]
    assert lease["mtu"] == str(MTU)
    assert lease["subnet"] == "255.255.255.0"
    assert "192.0.2.53" in lease["dns"].split()
    routes = lease["staticroutes"].split()
    assert "169.254.169.254/32" in routes
    assert routes[routes.index("169.254.169.254/32") + 1] == f"{lab.prefix}.1"
    assert "0.0.0.0/0" in routes


def test_unknown_mac_gets_no_lease(lab: Lab) -> None:
    assert lab.dhcp_request(random_mac()) is None


def test_changed_address_after_resync(lab: Lab) -> None:
    pid = lab.dnsmasq_pid()
    lab.vm_port["fixed_ips"] = [
        {"subnet_id": lab.api.subnets[0]["id"], "ip_address": f"{lab.prefix}.20"}
    ]
    assert lab.agent.resync().served == {lab.api.network["id"]: "reloaded"}
    assert lab.dnsmasq_pid() == pid  # a SIGHUP, not a restart
    lease = lab.dhcp_request(lab.vm_port["mac_address"])
    assert lease is not None and lease["ip"] == f"{lab.prefix}.20"


def test_no_dhcp_subnet_tears_everything_down(lab: Lab) -> None:
    pid = lab.dnsmasq_pid()
    assert pid is not None
    lab.api.subnets[0]["enable_dhcp"] = False
    result = lab.agent.resync()
    assert result.removed == [lab.api.network["id"]]
    assert lab.api.released == [lab.api.network["id"]]
    assert lab.dnsmasq_pid() is None
    assert not Path(f"/proc/{pid}").exists() or "dnsmasq" not in Path(
        f"/proc/{pid}/cmdline"
    ).read_text(errors="replace")
    assert lab.qdhcp not in sh("ip", "netns", "list").stdout
    assert not (lab.workdir / "state" / lab.api.network["id"]).exists()
    # the bridge belongs to the network agent: left in place
    assert linux.IpRoute(netns=lab.host_ns).link(naming.bridge(lab.api.network["id"])) is not None
