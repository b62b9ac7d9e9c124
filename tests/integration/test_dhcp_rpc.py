"""The DHCP agent's RPC calls (control/network/rpc_dhcp.py) against the private MariaDB and
RabbitMQ: DhcpEndpoint served beside NetworkEndpoint on topic ``network``, called through
DhcpAPI as the agent does; what it notifies recorded by a stand-in notifier."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Any

import pytest

from control.common import rpc
from control.common.context import RequestContext
from control.common.db import Database
from control.network import models
from control.network.rpc import TOPIC, NetworkEndpoint
from control.network.rpc_dhcp import DhcpAPI, DhcpEndpoint, dhcp_device_id
from tests.api import network_env
from tests.api.network_env import NetworkEnv
from tests.fixtures.identity_server import IdentityServer

pytestmark = [pytest.mark.rabbitmq, pytest.mark.mariadb]


class Recorder:
    """The endpoint's notifier: remembers what it would publish."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, Any]]] = []

    def publish(self, ctxt: RequestContext, method: str, **kwargs: Any) -> None:
        self.sent.append((method, kwargs))


NOTIFIED = Recorder()


@pytest.fixture(scope="module")
def env(
    mariadb: Any,
    identity_server: IdentityServer,
    rabbitmq: Any,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[NetworkEnv, DhcpAPI]]:
    exchange = f"cirrus-dhcp-{secrets.token_hex(4)}"
    for env in network_env.env_fixture(mariadb, identity_server, tmp_path_factory):
        database = Database(env.db_url)
        transport = rpc.Transport(rabbitmq.url, exchange=exchange)
        endpoints = [NetworkEndpoint(database), DhcpEndpoint(database, notifier=NOTIFIED)]
        server = rpc.RPCServer(transport, TOPIC, endpoints, executor_threads=2)
        server.start()
        try:
            yield env, DhcpAPI(transport, timeout=10)
        finally:
            server.stop()
            server.wait()
            transport.close()
            database.dispose()


def test_dhcp_port_created_once_and_released(env: tuple[NetworkEnv, DhcpAPI]) -> None:
    network, api = env
    ctxt = RequestContext(roles=["admin", "service"])
    host = f"netnode-{secrets.token_hex(3)}"
    net = network.network(cidr="10.210.0.0/24")
    plain = network.network()  # no subnet: no DHCP
    vm = network.create("port", network_id=net["id"])

    assert net["id"] in api.get_dhcp_networks(ctxt, host)
    assert plain["id"] not in api.get_dhcp_networks(ctxt, host)
    assert api.get_or_create_dhcp_port(ctxt, host, plain["id"]) is None

    NOTIFIED.sent.clear()
    port = api.get_or_create_dhcp_port(ctxt, host, net["id"])
    assert port is not None
    update = {"port_id": port["id"], "network_id": net["id"], "host": host, "previous_host": ""}
    assert NOTIFIED.sent == [("port_update", update)]  # that host's network agent wires it now
    assert api.get_or_create_dhcp_port(ctxt, host, net["id"]) == port  # idempotent
    assert len(NOTIFIED.sent) == 1  # nothing changed, nothing notified

    # unbound behind its back: bound again, and notified
    with network.app.extensions["cirrus.db"].transaction() as sess:
        found = sess.get(models.Port, port["id"])
        assert found is not None
        found.binding_host_id = "elsewhere"
    assert api.get_or_create_dhcp_port(ctxt, host, net["id"]) == port
    assert NOTIFIED.sent[-1] == ("port_update", {**update, "previous_host": "elsewhere"})
    assert port["device_owner"] == "network:dhcp"
    assert port["device_id"] == dhcp_device_id(host, net["id"])
    assert port["binding:host_id"] == host
    (fixed,) = port["fixed_ips"]
    assert fixed["subnet_id"] == net["_subnet"]
    assert fixed["ip_address"] not in {vm["fixed_ips"][0]["ip_address"], "10.210.0.1"}

    shown = network.show("port", port["id"], "admin")
    assert shown["port_security_enabled"] is False
    assert shown["security_groups"] == []
    listed = api.get_network_ports(ctxt, net["id"])["ports"]
    assert {p["id"] for p in listed} == {vm["id"], port["id"]}

    # a DHCP port does not keep its network from being deleted; disabling DHCP releases it
    network.put(f"/subnets/{net['_subnet']}", {"subnet": {"enable_dhcp": False}})
    assert net["id"] not in api.get_dhcp_networks(ctxt, host)
    assert api.get_or_create_dhcp_port(ctxt, host, net["id"]) is None
    assert api.release_dhcp_port(ctxt, host, net["id"]) is True
    assert NOTIFIED.sent[-1] == (
        "port_delete",
        {"port_id": port["id"], "network_id": net["id"], "host": host,
         "mac_address": port["mac_address"]},
    )  # fmt: skip
    assert api.release_dhcp_port(ctxt, host, net["id"]) is False
    assert network.listing("port", f"network_id={net['id']}&device_owner=network:dhcp") == []
