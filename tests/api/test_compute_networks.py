"""Servers with ports, end to end: compute-api (``compute_env``, fake-driver agents) finds the real
network API under gunicorn (``network_server``) in identity's catalog, validates ``networks``,
makes and binds the ports, shows them in ``addresses`` and ``os-interface``, and releases them
with the server."""

from __future__ import annotations

import ipaddress
import secrets
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from control.network import naming
from tests.api.compute_env import ComputeEnv, env_fixture, wait_for

pytestmark = [pytest.mark.mariadb, pytest.mark.rabbitmq]


@pytest.fixture(scope="module")
def env(
    mariadb: Any,
    identity_server: Any,
    image_server: Any,
    network_server: Any,
    rabbitmq: Any,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ComputeEnv]:
    # network_server puts the network API in identity's catalog, where compute-api finds it.
    yield from env_fixture(
        mariadb, identity_server, image_server, rabbitmq, tmp_path_factory, agents=1
    )


@pytest.fixture(scope="module")
def tiny(env: ComputeEnv) -> str:
    return env.flavor(f"net-tiny-{secrets.token_hex(3)}")


class Net:
    """The network API as the test's users (and the admin) call it."""

    def __init__(self, env: ComputeEnv, url: str) -> None:
        self.env = env
        self.url = url

    def call(self, method: str, path: str, who: str = "a", body: Any = None) -> requests.Response:
        return requests.request(
            method,
            f"{self.url}/v2.0{path}",
            json=body,
            headers={"X-Auth-Token": self.env.token(who)},
            timeout=30,
        )

    def create(self, kind: str, who: str = "a", **attrs: Any) -> dict[str, Any]:
        resp = self.call("POST", f"/{kind}s", who, {kind: attrs})
        assert resp.status_code == 201, resp.text
        created: dict[str, Any] = resp.json()[kind]
        return created

    def network(self, who: str = "a", cidr: str = "10.20.0.0/24") -> dict[str, Any]:
        net = self.create("network", who, name=f"cn-{secrets.token_hex(3)}")
        net["_subnet"] = self.create("subnet", who, network_id=net["id"], ip_version=4, cidr=cidr)
        return net

    def port(self, port_id: str, who: str = "admin") -> requests.Response:
        return self.call("GET", f"/ports/{port_id}", who)

    def server_ports(self, server_id: str) -> list[dict[str, Any]]:
        resp = self.call("GET", f"/ports?device_id={server_id}", "admin")
        assert resp.status_code == 200, resp.text
        ports: list[dict[str, Any]] = resp.json()["ports"]
        return ports


@pytest.fixture(scope="module")
def net(env: ComputeEnv, network_server: Any) -> Net:
    return Net(env, network_server.url)


def _host(env: ComputeEnv, server_id: str) -> str:
    return str(env.show(server_id, "admin")["OS-EXT-SRV-ATTR:host"])


def test_boot_on_network_makes_binds_shows_and_deletes_the_port(
    env: ComputeEnv, net: Net, tiny: str
) -> None:
    network = net.network("a", "10.21.0.0/24")
    server = env.boot("on-net", tiny, networks=[{"uuid": network["id"]}])
    shown = env.wait_status(server["id"], "ACTIVE")
    host = _host(env, server["id"])
    assert host in env.drivers

    ports = net.server_ports(server["id"])
    assert len(ports) == 1
    port = ports[0]
    assert port["network_id"] == network["id"]
    assert port["device_owner"] == "compute:nova"
    assert port["binding:host_id"] == host
    ip = port["fixed_ips"][0]["ip_address"]
    assert ipaddress.ip_address(ip) in ipaddress.ip_network("10.21.0.0/24")

    assert shown["accessIPv4"] == ""
    assert shown["addresses"] == {
        network["name"]: [
            {
                "addr": ip,
                "version": 4,
                "OS-EXT-IPS:type": "fixed",
                "OS-EXT-IPS-MAC:mac_addr": port["mac_address"],
            }
        ]
    }
    listed = env.get("/servers/detail").get_json()["servers"]
    assert next(s for s in listed if s["id"] == server["id"])["addresses"] == shown["addresses"]

    # The agent got the interface, with the network agent's names.
    (vif,) = env.drivers[host].interfaces[server["id"]]
    assert vif.port_id == port["id"]
    assert vif.network_id == network["id"]
    assert vif.mac_address == port["mac_address"]
    assert vif.bridge == naming.bridge(network["id"])
    assert vif.tap_name == naming.tap(port["id"])
    assert vif.mtu == network["mtu"]
    assert vif.fixed_ips[0]["ip_address"] == ip

    attachments = env.get(f"/servers/{server['id']}/os-interface").get_json()
    assert attachments["interfaceAttachments"] == [
        {
            "port_state": port["status"],
            "fixed_ips": [{"subnet_id": network["_subnet"]["id"], "ip_address": ip}],
            "port_id": port["id"],
            "net_id": network["id"],
            "mac_addr": port["mac_address"],
        }
    ]
    one = env.get(f"/servers/{server['id']}/os-interface/{port['id']}")
    assert one.status_code == 200
    assert one.get_json()["interfaceAttachment"]["port_id"] == port["id"]
    assert env.get(f"/servers/{server['id']}/os-interface/{'0' * 36}").status_code == 404

    groups = env.get(f"/servers/{server['id']}/os-security-groups").get_json()
    assert [g["name"] for g in groups["security_groups"]] == ["default"]

    assert env.delete(f"/servers/{server['id']}").status_code == 204
    env.wait_gone(server["id"])
    assert net.port(port["id"]).status_code == 404


def test_boot_with_a_port_the_user_made_only_unbinds_it(
    env: ComputeEnv, net: Net, tiny: str
) -> None:
    network = net.network("a", "10.22.0.0/24")
    port = net.create("port", "a", network_id=network["id"], name="mine")
    server = env.boot("on-port", tiny, networks=[{"port": port["id"]}])
    shown = env.wait_status(server["id"], "ACTIVE")
    host = _host(env, server["id"])
    bound = net.port(port["id"]).json()["port"]
    assert bound["device_id"] == server["id"]
    assert bound["binding:host_id"] == host
    assert shown["addresses"][network["name"]][0]["OS-EXT-IPS-MAC:mac_addr"] == port["mac_address"]

    # The port is in use now.
    resp = env.post(
        "/servers",
        {
            "server": {
                "name": "again",
                "imageRef": env.image_id,
                "flavorRef": tiny,
                "networks": [{"port": port["id"]}],
            }
        },
    )
    assert resp.status_code == 409, resp.get_json()

    assert env.delete(f"/servers/{server['id']}").status_code == 204
    env.wait_gone(server["id"])
    kept = net.port(port["id"])
    assert kept.status_code == 200
    assert kept.json()["port"]["device_id"] == ""
    assert kept.json()["port"]["device_owner"] == ""
    assert kept.json()["port"]["binding:host_id"] == ""


def test_unknown_network_or_port_is_400(env: ComputeEnv, tiny: str) -> None:
    missing = "0b0c6a43-6a1f-4f4b-9d3e-6f1b7e0c2a11"
    for networks, message in (
        ([{"uuid": missing}], f"Network {missing} could not be found."),
        ([{"port": missing}], f"Port {missing} could not be found."),
    ):
        body = {"name": "x", "imageRef": env.image_id, "flavorRef": tiny, "networks": networks}
        resp = env.post("/servers", {"server": body})
        assert resp.status_code == 400, resp.get_json()
        assert message in str(resp.get_json())
    body = {"name": "x", "imageRef": env.image_id, "flavorRef": tiny, "networks": "bogus"}
    assert env.post("/servers", {"server": body}).status_code == 400


def test_failed_port_creation_sets_error_and_leaves_nothing(
    env: ComputeEnv, net: Net, tiny: str
) -> None:
    network = net.network("a", "10.23.0.0/24")
    # Valid as an address, outside the subnet: the network service refuses the port.
    server = env.boot("bad-ip", tiny, networks=[{"uuid": network["id"], "fixed_ip": "10.99.0.5"}])
    shown = env.wait_status(server["id"], "ERROR")
    assert network["id"] in shown["fault"]["message"]
    assert shown["addresses"] == {}
    assert net.server_ports(server["id"]) == []
    assert env.delete(f"/servers/{server['id']}").status_code == 204
    env.wait_gone(server["id"])


def test_no_networks_requested_uses_the_only_network(env: ComputeEnv, net: Net, tiny: str) -> None:
    # Project b has no network yet: no NIC, as before the network service.
    first = env.boot("none-yet", tiny, who="b")
    assert env.wait_status(first["id"], "ACTIVE", "b")["addresses"] == {}
    only = net.network("b", "10.24.0.0/24")
    second = env.boot("the-only", tiny, who="b")
    shown = env.wait_status(second["id"], "ACTIVE", "b")
    assert list(shown["addresses"]) == [only["name"]]
    third = env.boot("asked-none", tiny, who="b", networks="none")
    assert env.wait_status(third["id"], "ACTIVE", "b")["addresses"] == {}
    net.network("b", "10.25.0.0/24")
    body = {"name": "which", "imageRef": env.image_id, "flavorRef": tiny}
    resp = env.post("/servers", {"server": body}, "b")
    assert resp.status_code == 409, resp.get_json()
    for server in (first, second, third):
        assert env.delete(f"/servers/{server['id']}", "b").status_code == 204
    for server in (first, second, third):
        env.wait_gone(server["id"], "b")
    wait_for(lambda: net.server_ports(second["id"]) == [], "the port of the-only deleted")


def test_attach_and_detach_interfaces(env: ComputeEnv, net: Net, tiny: str) -> None:
    first = net.network("a", "10.26.0.0/24")
    second = net.network("a", "10.27.0.0/24")
    server = env.boot("hotplug", tiny, networks=[{"uuid": first["id"]}])
    env.wait_status(server["id"], "ACTIVE")
    host = _host(env, server["id"])
    path = f"/servers/{server['id']}/os-interface"

    resp = env.post(path, {"interfaceAttachment": {"net_id": second["id"]}})
    assert resp.status_code == 200, resp.get_json()
    attached = resp.get_json()["interfaceAttachment"]
    assert attached["net_id"] == second["id"]
    port = net.port(attached["port_id"]).json()["port"]
    assert port["device_id"] == server["id"]
    assert port["binding:host_id"] == host
    assert [v.port_id for v in env.drivers[host].interfaces[server["id"]]][1] == port["id"]
    shown = env.show(server["id"])
    assert set(shown["addresses"]) == {first["name"], second["name"]}
    listed = env.get(path).get_json()["interfaceAttachments"]
    assert {a["port_id"] for a in listed} >= {port["id"]}

    # A user's port: attached, then detached and only unbound.
    mine = net.create("port", "a", network_id=second["id"], name="mine-hot")
    resp = env.post(path, {"interfaceAttachment": {"port_id": mine["id"]}})
    assert resp.status_code == 200, resp.get_json()
    assert env.post(path, {"interfaceAttachment": {"port_id": mine["id"]}}).status_code == 409
    assert env.delete(f"{path}/{mine['id']}").status_code == 202
    kept = net.port(mine["id"]).json()["port"]
    assert kept["device_id"] == "" and kept["binding:host_id"] == ""

    assert env.delete(f"{path}/{port['id']}").status_code == 202
    assert net.port(port["id"]).status_code == 404
    assert env.delete(f"{path}/{port['id']}").status_code == 404
    assert len(env.drivers[host].interfaces[server["id"]]) == 1
    assert set(env.show(server["id"])["addresses"]) == {first["name"]}

    missing = "0b0c6a43-6a1f-4f4b-9d3e-6f1b7e0c2a11"
    resp = env.post(path, {"interfaceAttachment": {"net_id": missing}})
    assert resp.status_code == 400, resp.get_json()

    assert env.delete(f"/servers/{server['id']}").status_code == 204
    env.wait_gone(server["id"])
    assert net.server_ports(server["id"]) == []
