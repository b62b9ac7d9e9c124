"""The network RPC contract against the private RabbitMQ and MariaDB: agents' calls to the
``network`` topic (report_state, get_host_ports, get_network_ports, get_vxlan_peers,
update_port_status, get_routers binding router ports, get_instance_port) and the fanout
notifications published after commits by the API and by the endpoint itself."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Any

import pytest

from control.common import rpc
from control.common.context import RequestContext
from control.common.db import Database
from control.network import models
from control.network.rpc import FANOUT, TOPIC, AgentNotifier, NetworkAPI, NetworkEndpoint
from tests.api import network_env
from tests.api.network_env import NetworkEnv
from tests.fixtures.identity_server import IdentityServer
from tests.fixtures.recording import Recorder

pytestmark = [pytest.mark.rabbitmq, pytest.mark.mariadb]


class Listener(Recorder):
    """A fake agent's fanout endpoint: records every notification."""

    def port_update(self, ctxt: RequestContext, **kwargs: Any) -> None:
        self._add("port_update", kwargs)

    def port_delete(self, ctxt: RequestContext, **kwargs: Any) -> None:
        self._add("port_delete", kwargs)

    def security_group_update(self, ctxt: RequestContext, **kwargs: Any) -> None:
        self._add("security_group_update", kwargs)

    def network_delete(self, ctxt: RequestContext, **kwargs: Any) -> None:
        self._add("network_delete", kwargs)

    def router_update(self, ctxt: RequestContext, **kwargs: Any) -> None:
        self._add("router_update", kwargs)


@pytest.fixture(scope="module")
def env(
    mariadb: Any,
    identity_server: IdentityServer,
    rabbitmq: Any,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[NetworkEnv, NetworkAPI, Listener]]:
    exchange = f"cirrus-net-{secrets.token_hex(4)}"
    rpc_settings = {"rpc": {"transport_url": rabbitmq.url, "exchange": exchange}}
    for env in network_env.env_fixture(
        mariadb, identity_server, tmp_path_factory, settings=rpc_settings
    ):
        database = Database(env.db_url)
        transport = rpc.Transport(rabbitmq.url, exchange=exchange)
        listener = Listener()
        notifier = AgentNotifier(rabbitmq.url, exchange=exchange)
        endpoint = NetworkEndpoint(database, agent_down_time=5, notifier=notifier)
        server = rpc.RPCServer(transport, TOPIC, [endpoint], executor_threads=2)
        agent = rpc.RPCServer(transport, "network.agent-test", [listener], fanout=FANOUT)
        server.start()
        agent.start()
        try:
            yield env, NetworkAPI(transport, timeout=10), listener
        finally:
            for part in (agent, server):
                part.stop()
                part.wait()
            notifier.close()
            transport.close()
            database.dispose()


def test_report_state_makes_a_live_agent(env: tuple[NetworkEnv, NetworkAPI, Listener]) -> None:
    network, api, _ = env
    host = f"compute-{secrets.token_hex(3)}"

    answer = api.report_state(
        RequestContext(),
        host,
        "Linux bridge agent",
        "cirrus-network-agent",
        {"tunneling_ip": "192.0.2.10", "tunnel_types": ["vxlan"]},
    )

    agents = network.listing("agent", f"host={host}", "admin")
    assert [a["id"] for a in agents] == [answer["id"]]
    assert agents[0]["alive"] is True
    assert answer["admin_state_up"] is True
    assert api.get_vxlan_peers(RequestContext())[host] == "192.0.2.10"


def test_bound_port_details_and_notifications(
    env: tuple[NetworkEnv, NetworkAPI, Listener],
) -> None:
    network, api, listener = env
    host = f"compute-{secrets.token_hex(3)}"
    net = network.network(cidr="10.200.0.0/24")
    web = network.create("security_group", name="web")
    rule = network.create(
        "security_group_rule",
        security_group_id=web["id"],
        direction="ingress",
        protocol="tcp",
        port_range_min=80,
        port_range_max=80,
        remote_group_id=web["id"],
    )
    port = network.create(
        "port",
        network_id=net["id"],
        security_groups=[web["id"]],
        allowed_address_pairs=[{"ip_address": "10.200.0.99"}],
    )
    peer = network.create("port", network_id=net["id"], security_groups=[web["id"]])
    resp = network.put(
        f"/ports/{port['id']}",
        {"port": {"binding:host_id": host, "device_id": "vm-1", "device_owner": "compute:nova"}},
        "admin",
    )
    assert resp.status_code == 200, resp.get_json()

    notified = listener.wait_for("port_update", port_id=port["id"], host=host)
    assert notified["network_id"] == net["id"]

    (details,) = api.get_host_ports(RequestContext(), host)
    admin_net = network.show("network", net["id"], "admin")
    assert details["id"] == port["id"]
    assert details["mac_address"] == port["mac_address"]
    assert details["fixed_ips"] == port["fixed_ips"]
    assert details["network"]["network_type"] == "vxlan"
    assert details["network"]["segmentation_id"] == admin_net["provider:segmentation_id"]
    assert details["network"]["mtu"] == 1450
    assert details["network"]["bridge_name"] == f"brq{net['id'][:11]}"
    assert details["binding:vif_type"] == "bridge"
    assert details["allowed_address_pairs"][0]["ip_address"] == "10.200.0.99"
    assert details["security_group_ids"] == [web["id"]]
    http = next(r for r in details["security_group_rules"] if r["id"] == rule["id"])
    members = {port["fixed_ips"][0]["ip_address"], peer["fixed_ips"][0]["ip_address"]}
    assert set(http["remote_ips"]) == members | {"10.200.0.99"}
    assert (http["protocol"], http["port_range_min"], http["direction"]) == ("tcp", 80, "ingress")
    egress = [r for r in details["security_group_rules"] if r["direction"] == "egress"]
    assert {r["ethertype"] for r in egress} == {"IPv4", "IPv6"}

    dhcp = api.get_network_ports(RequestContext(), net["id"])
    address = port["fixed_ips"][0]["ip_address"]
    entry = next(p for p in dhcp["ports"] if p["id"] == port["id"])
    assert entry["fixed_ips"][0]["hostname"] == "host-" + address.replace(".", "-")
    assert dhcp["subnets"][0]["cidr"] == "10.200.0.0/24"

    assert api.update_port_status(RequestContext(), port["id"], "ACTIVE") is True
    assert network.show("port", port["id"])["status"] == "ACTIVE"
    assert api.update_port_status(RequestContext(), "gone", "ACTIVE") is False

    network.delete(f"/ports/{peer['id']}")
    listener.wait_for("port_delete", port_id=peer["id"])
    listener.wait_for("security_group_update", security_group_ids=[web["id"]])
    (details,) = api.get_host_ports(RequestContext(), host)
    http = next(r for r in details["security_group_rules"] if r["id"] == rule["id"])
    assert peer["fixed_ips"][0]["ip_address"] not in http["remote_ips"]


def test_router_ports_bound_to_the_l3_host(env: tuple[NetworkEnv, NetworkAPI, Listener]) -> None:
    network, api, listener = env
    ctxt = RequestContext(roles=["admin", "service"])
    host = f"network-{secrets.token_hex(3)}"
    external = network.network(
        "admin",
        **{"router:external": True, "provider:network_type": "flat",
           "provider:physical_network": "physnet2"},
    )  # fmt: skip
    network.create("subnet", "admin", network_id=external["id"], ip_version=4,
                   cidr="198.51.100.0/24")  # fmt: skip
    inner = network.network(cidr="10.201.0.0/24")
    router = network.create("router", external_gateway_info={"network_id": external["id"]})
    resp = network.put(
        f"/routers/{router['id']}/add_router_interface", {"subnet_id": inner["_subnet"]}
    )
    assert resp.status_code == 200, resp.get_json()
    intf = resp.get_json()["port_id"]
    gw = next(
        p["id"]
        for p in network.listing("port", f"device_id={router['id']}", "admin")
        if p["device_owner"] == "network:router_gateway"
    )
    # an older router port: bound elsewhere, port security on, in the default group
    default = network.listing("security_group", "name=default")[0]["id"]
    with network.app.extensions["cirrus.db"].transaction() as sess:
        port = sess.get(models.Port, intf)
        port.binding_host_id = "elsewhere"
        port.port_security_enabled = True
        port.security_groups = [
            models.PortSecurityGroup(port_id=intf, security_group_id=default)
        ]

    assert router["id"] in {r["id"] for r in api.get_routers(ctxt, host)}
    assert listener.wait_for("port_update", port_id=intf, host=host)["previous_host"] == (
        "elsewhere"
    )
    assert listener.wait_for("port_update", port_id=gw, host=host)["previous_host"] == ""
    listener.wait_for("security_group_update", security_group_ids=[default])
    for port_id in (intf, gw):
        shown = network.show("port", port_id, "admin")
        assert shown["binding:host_id"] == host
        assert shown["binding:vif_type"] == "bridge"
        assert shown["port_security_enabled"] is False
        assert shown["security_groups"] == []
    wired = {p["id"]: p for p in api.get_host_ports(ctxt, host)}
    assert set(wired) == {intf, gw}
    assert wired[intf]["security_group_ids"] == []
    revision = network.show("port", intf, "admin")["revision_number"]
    api.get_routers(ctxt, host)  # nothing left to change
    assert network.show("port", intf, "admin")["revision_number"] == revision

    # the metadata proxy's question: which instance has this address on this network?
    vm = network.create("port", network_id=inner["id"])
    resp = network.put(
        f"/ports/{vm['id']}",
        {"port": {"device_id": "4a1c9a52-3b0e-4d7a-9c6e-0b3f2a1d4e5f",
                  "device_owner": "compute:nova"}},
        "admin",
    )  # fmt: skip
    assert resp.status_code == 200, resp.get_json()
    address = vm["fixed_ips"][0]["ip_address"]
    assert api.get_instance_port(ctxt, inner["id"], address) == {
        "port_id": vm["id"],
        "device_id": "4a1c9a52-3b0e-4d7a-9c6e-0b3f2a1d4e5f",
        "project_id": network.project_id("a"),
    }
    assert api.get_instance_port(ctxt, inner["id"], "10.201.0.1") is None  # the router's
    assert api.get_instance_port(ctxt, inner["id"], "10.201.0.250") is None
    assert api.get_instance_port(ctxt, external["id"], address) is None
    with pytest.raises(rpc.RemoteError):
        api.get_instance_port(ctxt, inner["id"], "10.201.0.1; reboot")
