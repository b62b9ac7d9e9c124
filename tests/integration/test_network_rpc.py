"""The network RPC contract against the private RabbitMQ and MariaDB: agents' calls to the
``network`` topic (report_state, get_host_ports, get_network_ports, get_vxlan_peers,
update_port_status) and the API's fanout notifications after commits."""

from __future__ import annotations

import secrets
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from control.common import rpc
from control.common.context import RequestContext
from control.common.db import Database
from control.network.rpc import FANOUT, TOPIC, NetworkAPI, NetworkEndpoint
from tests.api import network_env
from tests.api.network_env import NetworkEnv
from tests.fixtures.identity_server import IdentityServer

pytestmark = [pytest.mark.rabbitmq, pytest.mark.mariadb]


class Listener:
    """A fake agent's fanout endpoint: records every notification."""

    target_version = "1.0"

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.seen: list[tuple[str, dict[str, Any]]] = []

    def _add(self, method: str, kwargs: dict[str, Any]) -> None:
        with self.cond:
            self.seen.append((method, kwargs))
            self.cond.notify_all()

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

    def wait_for(self, method: str, timeout: float = 10.0, **match: Any) -> dict[str, Any]:
        def found() -> dict[str, Any] | None:
            for name, kwargs in self.seen:
                if name == method and all(kwargs.get(k) == v for k, v in match.items()):
                    return kwargs
            return None

        with self.cond:
            assert self.cond.wait_for(lambda: found() is not None, timeout), (
                f"no {method} {match} in {self.seen}"
            )
            result = found()
            assert result is not None
            return result


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
        server = rpc.RPCServer(
            transport, TOPIC, [NetworkEndpoint(database, agent_down_time=5)], executor_threads=2
        )
        agent = rpc.RPCServer(transport, "network.agent-test", [listener], fanout=FANOUT)
        server.start()
        agent.start()
        try:
            yield env, NetworkAPI(transport, timeout=10), listener
        finally:
            for part in (agent, server):
                part.stop()
                part.wait()
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
