"""Routers and floating IPs: gateways, interfaces by subnet and by port, the answers Neutron
gives, routers in use, floating IP allocation, association through a router, and the error when
no router joins the port's subnet to the external network."""

from __future__ import annotations

from typing import Any

import pytest

from tests.api.network_env import NetworkEnv, assert_error, unique

pytestmark = pytest.mark.mariadb


@pytest.fixture(scope="module")
def external(network: NetworkEnv) -> dict[str, Any]:
    """A shared-by-external-ness provider network with one subnet, made by the admin."""
    net = network.network(
        "admin",
        **{
            "router:external": True,
            "provider:network_type": "flat",
            "provider:physical_network": "physnet1",
        },
    )
    net["_subnet"] = network.create(
        "subnet",
        "admin",
        network_id=net["id"],
        ip_version=4,
        cidr="203.0.113.0/24",
        allocation_pools=[{"start": "203.0.113.10", "end": "203.0.113.50"}],
    )["id"]
    return net


def test_external_network_is_visible_to_everyone(
    network: NetworkEnv, external: dict[str, Any]
) -> None:
    listed = network.listing("network", "router:external=true", "b")
    assert external["id"] in {n["id"] for n in listed}
    assert network.show("subnet", external["_subnet"], "b")["cidr"] == "203.0.113.0/24"


def test_router_gateway_and_interfaces(network: NetworkEnv, external: dict[str, Any]) -> None:
    router = network.create("router", name=unique("r"))
    assert router["external_gateway_info"] is None
    assert router["status"] == "ACTIVE"

    resp = network.put(
        f"/routers/{router['id']}",
        {"router": {"external_gateway_info": {"network_id": external["id"]}}},
    )
    assert resp.status_code == 200, resp.get_json()
    info = resp.get_json()["router"]["external_gateway_info"]
    assert info["network_id"] == external["id"]
    assert info["enable_snat"] is True
    assert info["external_fixed_ips"][0]["subnet_id"] == external["_subnet"]

    inner = network.network(cidr="10.110.0.0/24")
    resp = network.put(
        f"/routers/{router['id']}/add_router_interface", {"subnet_id": inner["_subnet"]}
    )
    assert resp.status_code == 200, resp.get_json()
    answer = resp.get_json()
    assert set(answer) == {
        "id",
        "tenant_id",
        "project_id",
        "port_id",
        "network_id",
        "subnet_id",
        "subnet_ids",
    }
    assert answer["subnet_id"] == inner["_subnet"]
    port = network.show("port", answer["port_id"])
    assert port["device_owner"] == "network:router_interface"
    assert port["device_id"] == router["id"]
    assert port["fixed_ips"][0]["ip_address"] == "10.110.0.1"

    resp = network.put(
        f"/routers/{router['id']}/add_router_interface", {"subnet_id": inner["_subnet"]}
    )
    assert_error(resp, 400, None, "already has a port")
    assert_error(network.delete(f"/ports/{answer['port_id']}"), 409, "ServicePortInUse")
    assert_error(network.delete(f"/routers/{router['id']}"), 409, "RouterInUse")
    assert_error(network.delete(f"/subnets/{inner['_subnet']}"), 409, "SubnetInUse")

    # By port.
    other = network.network(cidr="10.111.0.0/24")
    own_port = network.create("port", network_id=other["id"])
    resp = network.put(f"/routers/{router['id']}/add_router_interface", {"port_id": own_port["id"]})
    assert resp.status_code == 200, resp.get_json()
    assert resp.get_json()["port_id"] == own_port["id"]
    assert own_port["port_security_enabled"] is True and own_port["security_groups"]
    # a router port: port security off and no groups, as the ones it makes itself
    for port_id in (own_port["id"], answer["port_id"]):
        shown = network.show("port", port_id, "admin")
        assert shown["port_security_enabled"] is False
        assert shown["security_groups"] == []

    resp = network.put(
        f"/routers/{router['id']}/remove_router_interface", {"subnet_id": inner["_subnet"]}
    )
    assert resp.status_code == 200
    assert resp.get_json()["port_id"] == answer["port_id"]
    assert_error(network.get(f"/ports/{answer['port_id']}"), 404, "PortNotFound")
    resp = network.put(
        f"/routers/{router['id']}/remove_router_interface", {"subnet_id": inner["_subnet"]}
    )
    assert_error(resp, 404, "RouterInterfaceNotFoundForSubnet")
    resp = network.put(
        f"/routers/{router['id']}/remove_router_interface", {"port_id": own_port["id"]}
    )
    assert resp.status_code == 200
    assert_error(network.put(f"/routers/{router['id']}/add_router_interface", {}), 400)

    assert network.delete(f"/routers/{router['id']}").status_code == 204
    assert_error(network.get(f"/routers/{router['id']}"), 404, "RouterNotFound")


def test_router_gateway_rules(network: NetworkEnv, external: dict[str, Any]) -> None:
    internal = network.network()
    resp = network.post(
        "/routers", {"router": {"external_gateway_info": {"network_id": internal["id"]}}}
    )
    assert_error(resp, 400, None, "not a valid external network")
    resp = network.post(
        "/routers",
        {"router": {"external_gateway_info": {"network_id": external["id"], "enable_snat": False}}},
    )
    assert_error(resp, 403, "PolicyNotAuthorized")
    router = network.create("router", "b")
    assert_error(network.get(f"/routers/{router['id']}"), 404, "RouterNotFound")


def test_floating_ip_lifecycle(network: NetworkEnv, external: dict[str, Any]) -> None:
    fip = network.create("floatingip", floating_network_id=external["id"])
    address = fip["floating_ip_address"]
    assert address.startswith("203.0.113.")
    assert fip["port_id"] is None and fip["router_id"] is None
    assert fip["status"] == "DOWN"

    # No router joins the port's subnet to the external network yet.
    inner = network.network(cidr="10.120.0.0/24")
    vm_port = network.create("port", network_id=inner["id"], device_owner="compute:nova")
    resp = network.put(f"/floatingips/{fip['id']}", {"floatingip": {"port_id": vm_port["id"]}})
    assert_error(
        resp,
        404,
        "ExternalGatewayForFloatingIPNotFound",
        f"External network {external['id']} is not reachable from subnet {inner['_subnet']}",
    )

    router = network.create("router", external_gateway_info={"network_id": external["id"]})
    network.put(f"/routers/{router['id']}/add_router_interface", {"subnet_id": inner["_subnet"]})
    resp = network.put(f"/floatingips/{fip['id']}", {"floatingip": {"port_id": vm_port["id"]}})
    assert resp.status_code == 200, resp.get_json()
    associated = resp.get_json()["floatingip"]
    assert associated["port_id"] == vm_port["id"]
    assert associated["fixed_ip_address"] == vm_port["fixed_ips"][0]["ip_address"]
    assert associated["router_id"] == router["id"]
    assert network.listing("floatingip", f"port_id={vm_port['id']}")[0]["id"] == fip["id"]

    # The router's interface and gateway are needed while the floating IP uses them.
    resp = network.put(
        f"/routers/{router['id']}/remove_router_interface", {"subnet_id": inner["_subnet"]}
    )
    assert_error(resp, 409, "RouterInterfaceInUseByFloatingIP")
    resp = network.put(f"/routers/{router['id']}", {"router": {"external_gateway_info": None}})
    assert_error(resp, 409, "RouterExternalGatewayInUseByFloatingIp")
    second = network.post(
        "/floatingips",
        {"floatingip": {"floating_network_id": external["id"], "port_id": vm_port["id"]}},
    )
    assert_error(second, 409, "FloatingIPPortAlreadyAssociated")

    resp = network.put(f"/floatingips/{fip['id']}", {"floatingip": {"port_id": None}})
    assert resp.get_json()["floatingip"]["port_id"] is None
    assert resp.get_json()["floatingip"]["router_id"] is None

    # Created associated; deleting the port disassociates.
    again = network.create("floatingip", floating_network_id=external["id"], port_id=vm_port["id"])
    assert again["router_id"] == router["id"]
    network.delete(f"/ports/{vm_port['id']}")
    assert network.show("floatingip", again["id"])["port_id"] is None

    for ident in (fip["id"], again["id"]):
        assert network.delete(f"/floatingips/{ident}").status_code == 204
    assert_error(network.get(f"/floatingips/{fip['id']}"), 404, "FloatingIPNotFound")
    assert not network.listing("port", f"device_id={fip['id']}", "admin")


def test_floating_ip_rules(network: NetworkEnv, external: dict[str, Any]) -> None:
    internal = network.network(cidr="10.121.0.0/24")
    resp = network.post("/floatingips", {"floatingip": {"floating_network_id": internal["id"]}})
    assert_error(resp, 400, None, "not a valid external network")
    resp = network.post(
        "/floatingips",
        {
            "floatingip": {
                "floating_network_id": external["id"],
                "floating_ip_address": "203.0.113.9",
            }
        },
    )
    assert_error(resp, 403, "PolicyNotAuthorized")
    chosen = network.create(
        "floatingip", "admin", floating_network_id=external["id"], floating_ip_address="203.0.113.9"
    )
    assert chosen["floating_ip_address"] == "203.0.113.9"
    mine = network.create("floatingip", floating_network_id=external["id"])
    assert_error(network.get(f"/floatingips/{mine['id']}", "b"), 404, "FloatingIPNotFound")
    network.delete(f"/floatingips/{chosen['id']}", "admin")
    network.delete(f"/floatingips/{mine['id']}")


def test_router_gateway_cleared_by_an_empty_body(
    network: NetworkEnv, external: dict[str, Any]
) -> None:
    """`openstack router unset --external-gateway` sends `{}`: Neutron clears the gateway; any
    other content without network_id is a 400 naming the field."""
    router = network.create("router", external_gateway_info={"network_id": external["id"]})
    resp = network.put(
        f"/routers/{router['id']}", {"router": {"external_gateway_info": {"enable_snat": False}}}
    )
    assert resp.status_code == 400
    assert "router.external_gateway_info.network_id" in resp.get_json()["NeutronError"]["message"]
    resp = network.put(f"/routers/{router['id']}", {"router": {"external_gateway_info": {}}})
    assert resp.status_code == 200, resp.get_json()
    assert resp.get_json()["router"]["external_gateway_info"] is None
    assert network.listing("port", f"device_id={router['id']}") == []
