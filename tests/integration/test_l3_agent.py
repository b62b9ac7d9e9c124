"""The l3-agent on real kernel objects, and its RPC answer read from a real network database.

Kernel part (root): a simulated network node (namespace ``cirl3-host-<random>`` holding the
bridges and the veths' host ends: the agent runs its host-side ``ip`` commands there), a "VM"
namespace on an internal bridge and an "external" namespace on the external bridge, on random
ranges. The router namespaces are the agent's own ``qrouter-<random uuid>``. Only the RPC side is
fake: an object answering ``get_routers`` with the shape of control/network/rpc_l3.py.
Reachability is checked with a tiny UDP echo that answers the address it saw the request from.
The metadata proxy (agents/l3/metadata_proxy.py) is checked with a guest's HTTP request to
169.254.169.254 answered by a stub metadata API in the test's own namespace that verifies the
signature. Every namespace made here (``cirl3-*-<suffix>``, the routers' ``qrouter-*``) is
deleted by name at the end, test failed or not.

Database part (MariaDB): routers, interfaces, gateways and floating IPs made through the network
API (tests/api/network_env.py), then ``rpc_l3.get_routers`` and ``update_floatingip_statuses``.
"""

from __future__ import annotations

import ipaddress
import json
import os
import random
import secrets
import shutil
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from agents.l3 import rules
from agents.l3.agent import L3Agent
from agents.l3.metadata_proxy import MetadataProxy
from agents.network import linux
from control.common.context import RequestContext
from control.metadata import signing
from control.network import naming

ECHO_SERVER = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", int(sys.argv[1])))
print("ready", flush=True)
while True:
    data, peer = s.recvfrom(512)
    s.sendto(peer[0].encode(), peer)
"""

# Prints the address the echo server saw; exit 1 when no answer came.
ECHO_CLIENT = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(0.5)
for _ in range(8):
    s.sendto(b"who am i", (sys.argv[1], int(sys.argv[2])))
    try:
        print(s.recvfrom(512)[0].decode())
        sys.exit(0)
    except socket.timeout:
        pass
sys.exit(1)
"""

PORT = 4789 + 1000

# A guest's HTTP GET (no proxy from the environment): prints the status, then the body.
HTTP_CLIENT = """
import sys, urllib.error, urllib.request
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
try:
    answer = opener.open(sys.argv[1], timeout=10)
    print(answer.status)
    print(answer.read().decode())
except urllib.error.HTTPError as error:
    print(error.code)
"""


def _unavailable() -> str | None:
    if os.geteuid() != 0:
        return "needs root (network namespaces, bridges, veths, nftables)"
    for tool in ("ip", "nft", "sysctl"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    return None


def sh(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(list(argv), capture_output=True, text=True, check=False, timeout=30)
    if check and proc.returncode != 0:
        raise AssertionError(f"{argv} failed: {proc.stderr}")
    return proc


def mac() -> str:
    return "fa:16:3e:" + ":".join(f"{random.randrange(256):02x}" for _ in range(3))


class FakeAPI:
    """What NetworkAPI's l3 calls answer, from a list the test edits."""

    def __init__(self) -> None:
        self.routers: list[dict[str, Any]] = []
        self.statuses: dict[str, str] = {}
        self.reports: list[dict[str, Any]] = []
        self.instances: dict[tuple[str, str], dict[str, str]] = {}  # (network, ip) -> port

    def report_state(
        self, ctxt: RequestContext, host: str, agent_type: str, binary: str, *a: Any, **k: Any
    ) -> dict[str, Any]:
        self.reports.append({"host": host, "agent_type": agent_type, "binary": binary})
        return {"id": "x", "admin_state_up": True}

    def get_routers(self, ctxt: RequestContext, host: str) -> list[dict[str, Any]]:
        return [dict(r) for r in self.routers]

    def update_floatingip_statuses(
        self, ctxt: RequestContext, router_id: str, statuses: dict[str, str]
    ) -> int:
        self.statuses.update(statuses)
        return len(statuses)

    def get_instance_port(
        self, ctxt: RequestContext, network_id: str, ip_address: str
    ) -> dict[str, str] | None:
        return self.instances.get((network_id, ip_address))


class MetadataStub:
    """metadata-api's stand-in on 127.0.0.1: checks the signature (403 when wrong) and answers
    what it was told, as JSON."""

    def __init__(self, secret: str) -> None:
        seen: list[dict[str, str]] = []
        self.seen = seen

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                instance = self.headers.get(signing.INSTANCE_ID, "")
                seen.append({"path": self.path, **dict(self.headers)})
                ok = signing.verify(secret, instance, self.headers.get(signing.SIGNATURE, ""))
                body = json.dumps({
                    "uuid": instance,
                    "project_id": self.headers.get(signing.TENANT_ID),
                    "address": self.headers.get(signing.FORWARDED_FOR),
                    "path": self.path,
                }).encode()  # fmt: skip
                self.send_response(200 if ok else 403)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Lab:
    """The namespaces and address plan of one test; ``close()`` deletes everything by name."""

    def __init__(self) -> None:
        self.suffix = secrets.token_hex(3)
        self.host = f"cirl3-host-{self.suffix}"
        self.namespaces: list[str] = [self.host]
        self.processes: list[subprocess.Popen[str]] = []
        self.external_net = str(uuid.uuid4())
        b = random.randrange(0, 256)
        self.external = ipaddress.IPv4Network(f"172.{random.randrange(16, 32)}.{b}.0/24")
        self.internal = ipaddress.IPv4Network(
            f"10.{random.randrange(1, 255)}.{random.randrange(0, 256)}.0/24"
        )
        self.api = FakeAPI()
        sh("ip", "netns", "add", self.host)
        sh("ip", "-n", self.host, "link", "set", "lo", "up")
        self.host_ip = linux.IpRoute(self.host)
        self.agent = L3Agent("l3-test", self.api, host_netns=self.host, debounce=0)

    def ext(self, host: int) -> str:
        return str(self.external.network_address + host)

    def intl(self, host: int) -> str:
        return str(self.internal.network_address + host)

    def endpoint(self, role: str, network_id: str, address: str, gateway: str | None) -> str:
        """A namespace with ``eth0`` (``address``/24) whose peer is in the network's bridge."""
        ns = f"cirl3-{role}-{self.suffix}"
        self.namespaces.append(ns)
        sh("ip", "netns", "add", ns)
        bridge = naming.bridge(network_id)
        self.host_ip.ensure_bridge(bridge)
        peer = f"v{role[:4]}{self.suffix}"
        sh("ip", "-n", self.host, "link", "add", peer, "type", "veth", "peer", "name", "eth0",
           "netns", ns)  # fmt: skip
        self.host_ip.attach(peer, bridge)
        sh("ip", "-n", ns, "link", "set", "lo", "up")
        sh("ip", "-n", ns, "link", "set", "eth0", "up")
        sh("ip", "-n", ns, "addr", "add", f"{address}/24", "dev", "eth0")
        if gateway:
            sh("ip", "-n", ns, "route", "add", "default", "via", gateway)
        return ns

    def router(self, internal_net: str, gw_ip: str, fips: list[tuple[str, str]]) -> dict[str, Any]:
        router_id = str(uuid.uuid4())
        self.namespaces.append(naming.router_namespace(router_id))
        body = {
            "id": router_id,
            "project_id": "p",
            "admin_state_up": True,
            "gateway": {
                "port_id": str(uuid.uuid4()),
                "mac_address": mac(),
                "network_id": self.external_net,
                "ips": [
                    {
                        "ip_address": gw_ip,
                        "prefixlen": 24,
                        "subnet_id": str(uuid.uuid4()),
                        "gateway_ip": self.ext(1),
                    }
                ],
                "enable_snat": True,
            },
            "interfaces": [
                {
                    "port_id": str(uuid.uuid4()),
                    "mac_address": mac(),
                    "network_id": internal_net,
                    "ip_address": self.intl(1),
                    "prefixlen": 24,
                    "subnet_id": str(uuid.uuid4()),
                    "cidr": str(self.internal),
                }
            ],
            "floating_ips": [
                {
                    "id": str(uuid.uuid4()),
                    "floating_ip_address": f,
                    "fixed_ip_address": x,
                    "port_id": str(uuid.uuid4()),
                }
                for f, x in fips
            ],  # fmt: skip
        }
        self.api.routers.append(body)
        return body

    def serve(self, ns: str) -> None:
        proc = subprocess.Popen(
            ["ip", "netns", "exec", ns, sys.executable, "-c", ECHO_SERVER, str(PORT)],
            stdout=subprocess.PIPE,
            text=True,
        )
        self.processes.append(proc)
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"

    def seen_as(self, ns: str, dst: str) -> str | None:
        """The source address the echo server at ``dst`` saw ``ns``'s request come from."""
        proc = sh("ip", "netns", "exec", ns, sys.executable, "-c", ECHO_CLIENT, dst, str(PORT),
                  check=False)  # fmt: skip
        return proc.stdout.strip() if proc.returncode == 0 else None

    def fetch(self, ns: str, url: str) -> tuple[int, str]:
        """Status and body of a GET of ``url`` from ``ns``."""
        proc = sh("ip", "netns", "exec", ns, sys.executable, "-c", HTTP_CLIENT, url)
        status, _, body = proc.stdout.partition("\n")
        return int(status), body.strip()

    def close(self) -> None:
        for proc in self.processes:
            proc.kill()
            proc.wait(timeout=10)
            if proc.stdout is not None:
                proc.stdout.close()
        for ns in self.namespaces:
            sh("ip", "netns", "del", ns, check=False)


@pytest.fixture
def lab() -> Iterator[Lab]:
    reason = _unavailable()
    if reason:
        pytest.skip(reason)
    made = Lab()
    try:
        yield made
    finally:
        made.close()


def namespaces() -> set[str]:
    return set(sh("ip", "netns", "list").stdout.split())


@pytest.mark.slow
def test_snat_floating_ip_and_removal(lab: Lab) -> None:
    internal_net = str(uuid.uuid4())
    vm = lab.endpoint("vm", internal_net, lab.intl(5), lab.intl(1))
    outside = lab.endpoint("ext", lab.external_net, lab.ext(100), None)
    lab.serve(outside)
    router = lab.router(internal_net, lab.ext(10), [])
    ns = naming.router_namespace(router["id"])

    result = lab.agent.resync()
    assert result.wired == [router["id"]] and not result.failed
    assert ns in namespaces()
    forward = sh("ip", "netns", "exec", ns, "sysctl", "-n", "net.ipv4.ip_forward").stdout
    assert forward.strip() == "1"
    qr = naming.device("qr-", router["interfaces"][0]["port_id"])
    link = linux.IpRoute(ns).link(qr)
    assert link is not None and link["address"] == router["interfaces"][0]["mac_address"]
    peer = lab.host_ip.link(naming.tap(router["interfaces"][0]["port_id"]))
    assert peer is not None and peer["master"] == naming.bridge(internal_net)

    # SNAT: the VM reaches the outside as the router's gateway address
    assert lab.seen_as(vm, lab.ext(100)) == lab.ext(10)

    # a floating IP: reachable from outside, and the VM's traffic leaves as it
    fip = {"id": str(uuid.uuid4()), "floating_ip_address": lab.ext(20),
           "fixed_ip_address": lab.intl(5), "port_id": str(uuid.uuid4())}  # fmt: skip
    router["floating_ips"].append(fip)
    lab.agent.resync()
    assert lab.api.statuses == {fip["id"]: "ACTIVE"}
    ruleset = sh("ip", "netns", "exec", ns, "nft", "list", "table", "ip", rules.TABLE).stdout
    assert f"dnat to {lab.intl(5)}" in ruleset
    assert lab.seen_as(vm, lab.ext(100)) == lab.ext(20)
    lab.serve(vm)
    assert lab.seen_as(outside, lab.ext(20)) == lab.ext(100)

    # an idempotent resync changes nothing and reports nothing again
    lab.api.statuses.clear()
    assert lab.agent.resync().wired == [router["id"]]
    assert lab.api.statuses == {}
    assert lab.seen_as(vm, lab.ext(100)) == lab.ext(20)

    # the floating IP goes: the /32 and the DNAT with it, SNAT to the gateway again
    router["floating_ips"].clear()
    lab.agent.resync()
    qg = naming.device("qg-", router["gateway"]["port_id"])
    addrs = sh("ip", "-n", ns, "-4", "-o", "addr", "show", "dev", qg).stdout
    assert lab.ext(20) not in addrs and lab.ext(10) in addrs
    assert lab.seen_as(vm, lab.ext(100)) == lab.ext(10)
    assert lab.seen_as(outside, lab.ext(20)) is None

    # the router goes: its namespace and the veths' host ends with it
    lab.api.routers.clear()
    result = lab.agent.resync()
    assert result.removed == [ns]
    assert ns not in namespaces()
    assert lab.host_ip.link(naming.tap(router["interfaces"][0]["port_id"])) is None
    assert lab.seen_as(vm, lab.ext(100)) is None


@pytest.mark.slow
def test_two_routers_with_the_same_internal_cidr(lab: Lab) -> None:
    net1, net2 = str(uuid.uuid4()), str(uuid.uuid4())
    vm1 = lab.endpoint("vm1", net1, lab.intl(5), lab.intl(1))
    vm2 = lab.endpoint("vm2", net2, lab.intl(5), lab.intl(1))
    outside = lab.endpoint("ext", lab.external_net, lab.ext(100), None)
    lab.serve(outside)
    r1 = lab.router(net1, lab.ext(10), [(lab.ext(20), lab.intl(5))])
    r2 = lab.router(net2, lab.ext(11), [])
    result = lab.agent.resync()
    assert sorted(result.wired) == sorted([r1["id"], r2["id"]])

    assert lab.seen_as(vm1, lab.ext(100)) == lab.ext(20)
    assert lab.seen_as(vm2, lab.ext(100)) == lab.ext(11)
    lab.serve(vm1)
    assert lab.seen_as(outside, lab.ext(20)) == lab.ext(100)

    # one router gone, the other still works
    lab.api.routers.remove(r1)
    lab.agent.resync()
    assert naming.router_namespace(r1["id"]) not in namespaces()
    assert naming.router_namespace(r2["id"]) in namespaces()
    assert lab.seen_as(vm2, lab.ext(100)) == lab.ext(11)


@pytest.mark.slow
def test_invalid_router_is_skipped_and_others_wired(lab: Lab) -> None:
    good = lab.router(str(uuid.uuid4()), lab.ext(10), [])
    bad = lab.router(str(uuid.uuid4()), lab.ext(11), [])
    bad["interfaces"][0]["ip_address"] = "10.0.0.1; reboot"
    result = lab.agent.resync()
    assert result.wired == [good["id"]]
    assert result.failed == [bad["id"]]
    assert naming.router_namespace(bad["id"]) not in namespaces()


@pytest.mark.slow
def test_metadata_proxy(lab: Lab) -> None:
    secret = secrets.token_hex(16)
    stub = MetadataStub(secret)
    proxy = MetadataProxy(lab.api, "127.0.0.1", secret, port=stub.port)
    lab.agent.hooks.append(proxy)
    try:
        internal_net = str(uuid.uuid4())
        vm = lab.endpoint("vm", internal_net, lab.intl(5), lab.intl(1))
        stranger = lab.endpoint("vm2", internal_net, lab.intl(6), lab.intl(1))
        router = lab.router(internal_net, lab.ext(10), [])
        router["gateway"] = None  # the metadata proxy needs no gateway
        ns = naming.router_namespace(router["id"])
        instance, project = str(uuid.uuid4()), secrets.token_hex(16)
        lab.api.instances[(internal_net, lab.intl(5))] = {
            "port_id": str(uuid.uuid4()), "device_id": instance, "project_id": project,
        }  # fmt: skip

        assert lab.agent.resync().wired == [router["id"]]
        assert proxy.listening() == {ns}
        table = sh("ip", "netns", "exec", ns, "nft", "list", "table", "ip", "cirrus-metadata")
        assert "redirect to :9697" in table.stdout

        url = "http://169.254.169.254/openstack/latest/meta_data.json?x=1"
        status, body = lab.fetch(vm, url)
        assert status == 200, body
        assert json.loads(body) == {"uuid": instance, "project_id": project,
                                    "address": lab.intl(5),
                                    "path": "/openstack/latest/meta_data.json?x=1"}  # fmt: skip
        assert signing.verify(secret, instance, stub.seen[-1][signing.SIGNATURE])

        # an address no instance port has: 404, and metadata-api is never asked
        asked = len(stub.seen)
        assert lab.fetch(stranger, url)[0] == 404
        assert len(stub.seen) == asked

        # a resync keeps the same listener
        listener = proxy._routers[ns]
        lab.agent.resync()
        assert proxy._routers[ns] is listener
        assert lab.fetch(vm, url)[0] == 200

        # the router goes: its listener is closed before its namespace is deleted
        lab.api.routers.clear()
        assert lab.agent.resync().removed == [ns]
        assert proxy.listening() == set()
        assert listener.server.socket.fileno() == -1
        assert not listener.thread.is_alive()
    finally:
        proxy.stop()
        stub.close()


# -- get_routers against a real network database ---------------------------------------------


@pytest.fixture(scope="module")
def network(mariadb: Any, identity_server: Any, tmp_path_factory: pytest.TempPathFactory) -> Any:
    from tests.api import network_env

    yield from network_env.env_fixture(mariadb, identity_server, tmp_path_factory)


@pytest.mark.mariadb
def test_get_routers_from_the_database(network: Any) -> None:
    from control.network import rpc_l3
    from tests.api.network_env import unique

    external = network.network(
        "admin",
        **{"router:external": True, "provider:network_type": "flat",
           "provider:physical_network": "physnet2"},
    )  # fmt: skip
    ext_subnet = network.create(
        "subnet", "admin", network_id=external["id"], ip_version=4, cidr="198.51.100.0/24",
        allocation_pools=[{"start": "198.51.100.10", "end": "198.51.100.50"}],
    )  # fmt: skip
    inner = network.network(cidr="10.120.0.0/24")
    router = network.create(
        "router", name=unique("r"), external_gateway_info={"network_id": external["id"]}
    )
    resp = network.put(
        f"/routers/{router['id']}/add_router_interface", {"subnet_id": inner["_subnet"]}
    )
    assert resp.status_code == 200, resp.get_json()
    intf_port = resp.get_json()["port_id"]
    vm_port = network.create("port", network_id=inner["id"])
    fip = network.create("floatingip", floating_network_id=external["id"], port_id=vm_port["id"])
    unassociated = network.create("floatingip", floating_network_id=external["id"])
    bare = network.create("router", name=unique("r"))

    database = network.app.extensions["cirrus.db"]
    sent: list[rpc_l3.Notification] = []
    routers = {r["id"]: r for r in rpc_l3.get_routers(database, "net-host", sent)}
    gw_port = routers[router["id"]]["gateway"]["port_id"]
    assert {(m, k["port_id"]) for m, k in sent if k.get("host") == "net-host"} >= {
        ("port_update", intf_port), ("port_update", gw_port)
    }
    for port_id in (intf_port, gw_port):
        shown = network.show("port", port_id, "admin")
        assert shown["binding:host_id"] == "net-host" and shown["port_security_enabled"] is False
    assert network.show("port", vm_port["id"], "admin")["binding:host_id"] == ""
    again: list[rpc_l3.Notification] = []
    rpc_l3.get_routers(database, "net-host", again)
    assert again == []
    with pytest.raises(ValueError):
        rpc_l3.get_routers(database, "")
    address = vm_port["fixed_ips"][0]["ip_address"]
    assert rpc_l3.instance_port(database, inner["id"], address) is None  # no device yet
    assert rpc_l3.instance_port(database, inner["id"], "10.120.0.1") is None  # the router's
    assert routers[bare["id"]]["gateway"] is None
    assert routers[bare["id"]]["interfaces"] == []
    found = routers[router["id"]]
    gateway_port = network.show("router", router["id"])["external_gateway_info"]
    gw_ip = gateway_port["external_fixed_ips"][0]["ip_address"]
    assert found["admin_state_up"] is True
    assert found["project_id"] == network.project_id("a")
    gw = found["gateway"]
    assert gw["network_id"] == external["id"] and gw["enable_snat"] is True
    assert gw["ips"] == [
        {"ip_address": gw_ip, "prefixlen": 24, "subnet_id": ext_subnet["id"],
         "gateway_ip": "198.51.100.1"}
    ]  # fmt: skip
    assert found["interfaces"] == [
        {"port_id": intf_port, "mac_address": network.show("port", intf_port)["mac_address"],
         "network_id": inner["id"], "ip_address": "10.120.0.1", "prefixlen": 24,
         "subnet_id": inner["_subnet"], "cidr": "10.120.0.0/24", "mtu": inner["mtu"]}
    ]  # fmt: skip
    assert found["floating_ips"] == [
        {"id": fip["id"], "floating_ip_address": fip["floating_ip_address"],
         "fixed_ip_address": vm_port["fixed_ips"][0]["ip_address"], "port_id": vm_port["id"]}
    ]  # fmt: skip
    assert unassociated["id"] not in str(routers)
    # what the agent makes of it
    parsed = rules.parse_router(found)
    assert parsed.gateway is not None and str(parsed.gateway.snat_ip) == gw_ip

    # statuses: only this router's floating IPs change
    assert rpc_l3.update_floatingip_statuses(database, router["id"], {fip["id"]: "ACTIVE"}) == 1
    assert network.show("floatingip", fip["id"])["status"] == "ACTIVE"
    assert rpc_l3.update_floatingip_statuses(database, router["id"], {fip["id"]: "ACTIVE"}) == 0
    assert rpc_l3.update_floatingip_statuses(database, bare["id"], {fip["id"]: "DOWN"}) == 0
    with pytest.raises(ValueError):
        rpc_l3.update_floatingip_statuses(database, router["id"], {fip["id"]: "BOGUS"})
