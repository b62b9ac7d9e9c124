"""Networks, subnets and ports through the Flask test client: discovery, extensions, CRUD,
provider attributes, IPAM (pools, gateway, overlaps, exhaustion, conflicts), filters,
``fields``, sorting, pagination, project isolation and Neutron's error bodies."""

from __future__ import annotations

from typing import Any

import pytest

from tests.api.network_env import NetworkEnv, assert_error, unique

pytestmark = pytest.mark.mariadb


# Discovery and extensions.


def test_version_discovery_without_a_token(network: NetworkEnv) -> None:
    root = network.client.get("/")
    v2 = network.client.get("/v2.0/")

    assert root.status_code == 200
    assert root.get_json() == {
        "versions": [
            {
                "id": "v2.0",
                "status": "CURRENT",
                "links": [{"rel": "self", "href": "http://localhost/v2.0/"}],
            }
        ]
    }
    names = [r["name"] for r in v2.get_json()["resources"]]
    assert names == ["network", "subnet", "port"]


def test_api_needs_a_token_and_errors_are_neutron_errors(network: NetworkEnv) -> None:
    assert_error(network.client.get("/v2.0/networks"), 401)
    assert_error(network.get("/nowhere"), 404, "HTTPNotFound")
    assert_error(network.get("/networks/not-a-network"), 404, "NetworkNotFound", "not-a-network")


def test_extensions_are_listed_by_alias(network: NetworkEnv) -> None:
    extensions = network.get("/extensions").get_json()["extensions"]
    aliases = {e["alias"] for e in extensions}

    assert {
        "security-group",
        "router",
        "external-net",
        "quotas",
        "agent",
        "binding",
        "port-security",
        "allowed-address-pairs",
        "provider",
    } <= aliases
    assert set(extensions[0]) == {"alias", "name", "description", "updated", "links"}
    assert network.get("/extensions/router").get_json()["extension"]["alias"] == "router"
    assert_error(network.get("/extensions/dvr"), 404, "ExtensionNotFound")


# Networks.


def test_network_lifecycle(network: NetworkEnv) -> None:
    name = unique()
    net = network.create("network", name=name, description="blue")

    assert net["name"] == name
    assert net["status"] == "ACTIVE"
    assert net["admin_state_up"] is True
    assert net["shared"] is False
    assert net["router:external"] is False
    assert net["mtu"] == 1450
    assert net["port_security_enabled"] is True
    assert net["subnets"] == []
    assert net["tenant_id"] == net["project_id"] == network.project_id("a")
    assert net["tags"] == []
    assert net["revision_number"] == 0
    assert net["created_at"].endswith("Z")
    assert "provider:network_type" not in net  # admins only

    resp = network.put(f"/networks/{net['id']}", {"network": {"name": name + "-x"}})
    assert resp.status_code == 200
    assert resp.get_json()["network"]["revision_number"] == 1
    assert network.show("network", net["id"])["name"] == name + "-x"

    assert network.delete(f"/networks/{net['id']}").status_code == 204
    assert_error(network.get(f"/networks/{net['id']}"), 404, "NetworkNotFound")


def test_tenant_networks_get_distinct_vnis_from_the_range(network: NetworkEnv) -> None:
    first = network.network()
    second = network.network()

    shown = [network.show("network", n["id"], "admin") for n in (first, second)]

    assert {s["provider:network_type"] for s in shown} == {"vxlan"}
    vnis = [s["provider:segmentation_id"] for s in shown]
    assert len(set(vnis)) == 2
    assert all(100 <= v <= 199 or 500 <= v <= 599 for v in vnis)
    assert all(s["provider:physical_network"] is None for s in shown)


def test_admin_provider_networks(network: NetworkEnv) -> None:
    flat = network.network(
        "admin", **{"provider:network_type": "flat", "provider:physical_network": "physnet1"}
    )
    vlan = network.network(
        "admin",
        **{
            "provider:network_type": "vlan",
            "provider:physical_network": "physnet2",
            "provider:segmentation_id": 1234,
        },
    )
    try:
        assert flat["mtu"] == 1500
        assert flat["provider:network_type"] == "flat"
        assert vlan["provider:segmentation_id"] == 1234
        # The same segment twice is a conflict.
        resp = network.post(
            "/networks",
            {
                "network": {
                    "provider:network_type": "vlan",
                    "provider:physical_network": "physnet2",
                    "provider:segmentation_id": 1234,
                }
            },
            "admin",
        )
        assert_error(resp, 409, "VlanIdInUse", "1234")
        resp = network.post(
            "/networks",
            {"network": {"provider:network_type": "flat", "provider:physical_network": "nope"}},
            "admin",
        )
        assert_error(resp, 400, "InvalidInput", "nope")
        resp = network.post("/networks", {"network": {"provider:network_type": "gre"}}, "admin")
        assert_error(resp, 400, "InvalidInput", "gre")
    finally:
        network.delete(f"/networks/{flat['id']}", "admin")
        network.delete(f"/networks/{vlan['id']}", "admin")


def test_members_may_not_set_admin_attributes(network: NetworkEnv) -> None:
    for attrs in (
        {"shared": True},
        {"router:external": True},
        {"provider:network_type": "vxlan", "provider:segmentation_id": 150},
    ):
        resp = network.post("/networks", {"network": attrs})
        assert_error(resp, 403, "PolicyNotAuthorized")
    # The default values are allowed (the CLI sends router:external false for --internal).
    net = network.network(**{"router:external": False, "shared": False})
    assert net["router:external"] is False


def test_validation_names_the_field(network: NetworkEnv) -> None:
    assert_error(network.post("/networks", {"network": {"name": 5}}), 400, None, "network.name")
    assert_error(
        network.post("/networks", {"network": {"admin_state_up": "x"}}),
        400,
        None,
        "network.admin_state_up",
    )
    assert_error(network.post("/networks", {"netwerk": {}}), 400, None, "network")
    assert_error(network.post("/networks", {"network": {"mtu": 9000}}), 400, "InvalidInput", "MTU")


def test_project_isolation_and_shared_networks(network: NetworkEnv) -> None:
    private = network.network(cidr="10.20.0.0/24")
    shared = network.network("admin", cidr="10.21.0.0/24", shared=True)

    assert_error(network.get(f"/networks/{private['id']}", "b"), 404, "NetworkNotFound")
    ids = {n["id"] for n in network.listing("network", who="b")}
    assert private["id"] not in ids
    assert shared["id"] in ids
    assert_error(network.get(f"/subnets/{private['_subnet']}", "b"), 404, "SubnetNotFound")
    # B cannot use A's private network, but can put a port on the shared one.
    resp = network.post("/ports", {"port": {"network_id": private["id"]}}, "b")
    assert_error(resp, 404, "NetworkNotFound")
    port = network.create("port", "b", network_id=shared["id"])
    assert port["fixed_ips"][0]["subnet_id"] == shared["_subnet"]
    # ... but cannot delete it, nor add subnets to it.
    assert_error(network.delete(f"/networks/{shared['id']}", "b"), 403, "PolicyNotAuthorized")
    resp = network.post(
        "/subnets",
        {"subnet": {"network_id": shared["id"], "ip_version": 4, "cidr": "10.22.0.0/24"}},
        "b",
    )
    assert_error(resp, 403, "PolicyNotAuthorized")
    # A network in use by ports cannot be deleted.
    assert_error(network.delete(f"/networks/{shared['id']}", "admin"), 409, "NetworkInUse")
    assert network.delete(f"/ports/{port['id']}", "b").status_code == 204
    assert network.delete(f"/networks/{shared['id']}", "admin").status_code == 204


# Subnets.


def test_subnet_defaults(network: NetworkEnv) -> None:
    net = network.network()
    subnet = network.create(
        "subnet", network_id=net["id"], ip_version=4, cidr="192.168.7.0/24", name="s"
    )

    assert subnet["gateway_ip"] == "192.168.7.1"
    assert subnet["allocation_pools"] == [{"start": "192.168.7.2", "end": "192.168.7.254"}]
    assert subnet["enable_dhcp"] is True
    assert subnet["dns_nameservers"] == []
    assert subnet["host_routes"] == []
    assert subnet["ipv6_ra_mode"] is None
    assert subnet["subnetpool_id"] is None
    assert network.show("network", net["id"])["subnets"] == [subnet["id"]]


def test_subnet_options_and_update(network: NetworkEnv) -> None:
    net = network.network()
    subnet = network.create(
        "subnet",
        network_id=net["id"],
        ip_version=4,
        cidr="10.30.0.0/24",
        gateway_ip=None,
        allocation_pools=[{"start": "10.30.0.100", "end": "10.30.0.110"}],
        dns_nameservers=["10.0.0.53"],
        host_routes=[{"destination": "10.99.0.0/16", "nexthop": "10.30.0.254"}],
        enable_dhcp=False,
    )
    assert subnet["gateway_ip"] is None
    assert subnet["allocation_pools"] == [{"start": "10.30.0.100", "end": "10.30.0.110"}]

    resp = network.put(
        f"/subnets/{subnet['id']}",
        {"subnet": {"gateway_ip": "10.30.0.1", "dns_nameservers": ["10.0.0.54"]}},
    )
    assert resp.status_code == 200, resp.get_json()
    updated = resp.get_json()["subnet"]
    assert updated["gateway_ip"] == "10.30.0.1"
    assert updated["dns_nameservers"] == ["10.0.0.54"]
    assert updated["revision_number"] == 1
    resp = network.put(f"/subnets/{subnet['id']}", {"subnet": {"gateway_ip": "10.30.0.105"}})
    assert_error(resp, 409, "GatewayConflictWithAllocationPools")
    resp = network.put(f"/subnets/{subnet['id']}", {"subnet": {"cidr": "10.31.0.0/24"}})
    assert_error(resp, 400, None, "cidr")


def test_subnet_validation(network: NetworkEnv) -> None:
    net = network.network(cidr="10.40.0.0/16")

    def create(**attrs: Any) -> Any:
        body = {"network_id": net["id"], "ip_version": 4, **attrs}
        return network.post("/subnets", {"subnet": body})

    assert_error(create(cidr="10.40.5.0/24"), 400, "InvalidInput", "overlaps")
    assert_error(create(cidr="10.41.0.5/24"), 400, "InvalidInput", "10.41.0.0/24")
    assert_error(create(cidr="fd00::/64"), 400, "InvalidInput", "IP version")
    assert_error(create(cidr="nonsense"), 400, None, "cidr")
    assert_error(create(), 400, None, "cidr")
    assert_error(create(cidr="10.42.0.0/24", ip_version=5), 400, None, "subnet.ip_version")
    assert_error(
        create(cidr="10.43.0.0/24", allocation_pools=[{"start": "10.43.0.10", "end": "10.44.0.1"}]),
        400,
        "OutOfBoundsAllocationPool",
    )
    assert_error(
        create(
            cidr="10.45.0.0/24",
            allocation_pools=[
                {"start": "10.45.0.10", "end": "10.45.0.20"},
                {"start": "10.45.0.15", "end": "10.45.0.30"},
            ],
        ),
        409,
        "OverlappingAllocationPools",
    )
    assert_error(
        create(cidr="10.46.0.0/24", gateway_ip="10.47.0.1"), 400, "InvalidInput", "Gateway"
    )
    # The same CIDR on another network (or in another project) is fine.
    other = network.network("b")
    network.create("subnet", "b", network_id=other["id"], ip_version=4, cidr="10.40.0.0/16")


def test_ipv6_subnet(network: NetworkEnv) -> None:
    net = network.network()
    subnet = network.create("subnet", network_id=net["id"], ip_version=6, cidr="fd00:1::/64")
    assert subnet["gateway_ip"] == "fd00:1::1"
    port = network.create("port", network_id=net["id"])
    assert port["fixed_ips"] == [{"subnet_id": subnet["id"], "ip_address": "fd00:1::2"}]


def test_subnet_in_use_cannot_be_deleted(network: NetworkEnv) -> None:
    net = network.network(cidr="10.50.0.0/24")
    port = network.create("port", network_id=net["id"])

    message = assert_error(network.delete(f"/subnets/{net['_subnet']}"), 409, "SubnetInUse")
    assert port["id"] in message

    network.delete(f"/ports/{port['id']}")
    assert network.delete(f"/subnets/{net['_subnet']}").status_code == 204
    assert network.show("network", net["id"])["subnets"] == []


# Ports.


def test_port_defaults(network: NetworkEnv) -> None:
    net = network.network(cidr="10.60.0.0/24")
    port = network.create("port", network_id=net["id"], name="p", device_owner="compute:nova")

    assert port["status"] == "DOWN"
    assert port["mac_address"].startswith("fa:16:3e:")
    assert port["fixed_ips"] == [{"subnet_id": net["_subnet"], "ip_address": "10.60.0.2"}]
    assert port["device_owner"] == "compute:nova"
    assert port["port_security_enabled"] is True
    assert port["allowed_address_pairs"] == []
    default = network.listing("security_group", "name=default")
    assert port["security_groups"] == [default[0]["id"]]
    assert "binding:host_id" not in port  # admins only
    assert port["binding:vnic_type"] == "normal"
    admin_view = network.show("port", port["id"], "admin")
    assert admin_view["binding:vif_type"] == "unbound"
    assert admin_view["binding:host_id"] == ""


def test_fixed_ips_by_subnet_and_address(network: NetworkEnv) -> None:
    net = network.network(cidr="10.61.0.0/24")
    subnet_id = net["_subnet"]

    port = network.create(
        "port",
        network_id=net["id"],
        fixed_ips=[{"subnet_id": subnet_id, "ip_address": "10.61.0.50"}, {"subnet_id": subnet_id}],
    )
    addresses = [f["ip_address"] for f in port["fixed_ips"]]
    assert addresses == ["10.61.0.50", "10.61.0.2"]

    resp = network.post(
        "/ports", {"port": {"network_id": net["id"], "fixed_ips": [{"ip_address": "10.61.0.50"}]}}
    )
    assert_error(
        resp,
        409,
        "IpAddressAlreadyAllocated",
        f"IP address 10.61.0.50 already allocated in subnet {subnet_id}",
    )
    resp = network.post(
        "/ports", {"port": {"network_id": net["id"], "fixed_ips": [{"ip_address": "10.62.0.5"}]}}
    )
    assert_error(resp, 400, "InvalidIpForNetwork")
    # Update: keep one address, replace the other.
    resp = network.put(
        f"/ports/{port['id']}",
        {"port": {"fixed_ips": [{"ip_address": "10.61.0.50"}, {"ip_address": "10.61.0.60"}]}},
    )
    assert resp.status_code == 200, resp.get_json()
    assert [f["ip_address"] for f in resp.get_json()["port"]["fixed_ips"]] == [
        "10.61.0.50",
        "10.61.0.60",
    ]
    # The freed address is given again.
    again = network.create("port", network_id=net["id"])
    assert again["fixed_ips"][0]["ip_address"] == "10.61.0.2"
    # B (another project) may not choose addresses on A's network, even when visible.


def test_ip_exhaustion(network: NetworkEnv) -> None:
    net = network.network()
    network.create(
        "subnet",
        network_id=net["id"],
        ip_version=4,
        cidr="10.70.0.0/29",
        allocation_pools=[{"start": "10.70.0.2", "end": "10.70.0.3"}],
    )
    network.create("port", network_id=net["id"])
    network.create("port", network_id=net["id"])

    resp = network.post("/ports", {"port": {"network_id": net["id"]}})
    assert_error(
        resp,
        409,
        "IpAddressGenerationFailure",
        f"No more IP addresses available on network {net['id']}",
    )
    # An address outside the pools but inside the subnet may still be asked for.
    port = network.create("port", network_id=net["id"], fixed_ips=[{"ip_address": "10.70.0.6"}])
    assert port["fixed_ips"][0]["ip_address"] == "10.70.0.6"


def test_port_without_subnets_and_mac_conflicts(network: NetworkEnv) -> None:
    net = network.network()
    port = network.create("port", network_id=net["id"], mac_address="FA:16:3E:00:00:01")
    assert port["fixed_ips"] == []
    assert port["mac_address"] == "fa:16:3e:00:00:01"

    resp = network.post(
        "/ports", {"port": {"network_id": net["id"], "mac_address": "fa:16:3e:00:00:01"}}
    )
    assert_error(resp, 409, "MacAddressInUse")
    resp = network.post("/ports", {"port": {"network_id": net["id"], "mac_address": "zz"}})
    assert_error(resp, 400, None, "mac_address")
    # Unique per network only.
    other = network.network()
    network.create("port", network_id=other["id"], mac_address="fa:16:3e:00:00:01")


def test_port_security_and_address_pairs(network: NetworkEnv) -> None:
    net = network.network(cidr="10.80.0.0/24")
    port = network.create(
        "port",
        network_id=net["id"],
        allowed_address_pairs=[{"ip_address": "10.80.0.200/32"}],
    )
    assert port["allowed_address_pairs"] == [
        {"ip_address": "10.80.0.200/32", "mac_address": port["mac_address"]}
    ]
    resp = network.put(f"/ports/{port['id']}", {"port": {"port_security_enabled": False}})
    assert_error(resp, 409, "PortSecurityPortHasSecurityGroup")
    resp = network.put(
        f"/ports/{port['id']}",
        {
            "port": {
                "port_security_enabled": False,
                "security_groups": [],
                "allowed_address_pairs": [],
            }
        },
    )
    assert resp.status_code == 200, resp.get_json()
    body = resp.get_json()["port"]
    assert body["port_security_enabled"] is False
    assert body["security_groups"] == []
    bare = network.create("port", network_id=net["id"], port_security_enabled=False)
    assert bare["security_groups"] == []


def test_binding_is_for_admins(network: NetworkEnv) -> None:
    net = network.network(cidr="10.81.0.0/24")
    resp = network.post(
        "/ports", {"port": {"network_id": net["id"], "binding:host_id": "compute1"}}
    )
    assert_error(resp, 403, "PolicyNotAuthorized", "binding:host_id")

    port = network.create("port", network_id=net["id"])
    resp = network.put(
        f"/ports/{port['id']}",
        {"port": {"binding:host_id": "compute1", "device_id": "vm-1"}},
        "admin",
    )
    assert resp.status_code == 200, resp.get_json()
    bound = resp.get_json()["port"]
    assert bound["binding:vif_type"] == "bridge"
    assert bound["binding:vif_details"]["bridge_name"] == f"brq{net['id'][:11]}"
    assert bound["status"] == "DOWN"
    listed = network.listing("port", "binding:host_id=compute1", "admin")
    assert port["id"] in {p["id"] for p in listed}


# Lists.


def test_filters_fields_sorting_and_pagination(network: NetworkEnv) -> None:
    net = network.network(cidr="10.90.0.0/24")
    made = [
        network.create("port", network_id=net["id"], name=f"pg-{i}", device_id=f"dev-{i % 2}")
        for i in range(5)
    ]
    base = f"network_id={net['id']}"

    by_device = network.listing("port", f"{base}&device_id=dev-0")
    assert sorted(p["name"] for p in by_device) == ["pg-0", "pg-2", "pg-4"]
    either = network.listing("port", f"{base}&name=pg-1&name=pg-3")
    assert sorted(p["name"] for p in either) == ["pg-1", "pg-3"]
    by_ip = network.listing("port", f"fixed_ips=ip_address={made[0]['fixed_ips'][0]['ip_address']}")
    assert [p["id"] for p in by_ip if p["network_id"] == net["id"]] == [made[0]["id"]]
    only = network.listing("port", f"{base}&fields=id&fields=name")
    assert all(set(p) == {"id", "name"} for p in only)
    desc = network.listing("port", f"{base}&sort_key=name&sort_dir=desc")
    assert [p["name"] for p in desc] == ["pg-4", "pg-3", "pg-2", "pg-1", "pg-0"]
    assert_error(network.get(f"/ports?{base}&sort_key=bogus"), 400)
    assert network.listing("network", "tags=x") == []

    seen: list[str] = []
    url = f"/ports?{base}&sort_key=name&sort_dir=asc&limit=2"
    while url:
        body = network.get(url).get_json()
        seen.extend(p["name"] for p in body["ports"])
        links = body.get("ports_links", [])
        url = links[0]["href"].removeprefix("http://localhost/v2.0") if links else ""
    assert seen == ["pg-0", "pg-1", "pg-2", "pg-3", "pg-4"]
    assert_error(network.get("/ports?marker=nope&limit=1"), 400)


def test_admin_sees_everything_members_their_own(network: NetworkEnv) -> None:
    mine = network.network()
    theirs = network.network("b")
    admin_ids = {n["id"] for n in network.listing("network", who="admin")}
    a_ids = {n["id"] for n in network.listing("network")}
    project_b = network.listing("network", f"project_id={network.project_id('b')}", "admin")

    assert {mine["id"], theirs["id"]} <= admin_ids
    assert mine["id"] in a_ids and theirs["id"] not in a_ids
    assert theirs["id"] in {n["id"] for n in project_b}
    assert all(n["project_id"] == network.project_id("b") for n in project_b)


def test_concurrent_port_creates_get_distinct_addresses(network: NetworkEnv) -> None:
    """Ports made at the same moment on one subnet (as compute-api and the DHCP agent do) each get
    an address of their own: none fails with a duplicate address (it did, as a 500, while the
    used addresses were read from a snapshot older than the subnet lock)."""
    from concurrent.futures import ThreadPoolExecutor

    net = network.network(cidr="10.77.0.0/24")
    headers = network.headers()

    def create(index: int) -> tuple[int, str]:
        client = network.app.test_client()
        resp = client.post(
            "/v2.0/ports",
            json={"port": {"network_id": net["id"], "name": f"race-{index}"}},
            headers=headers,
        )
        body = resp.get_json() or {}
        address = (body.get("port") or {}).get("fixed_ips", [{}])[0].get("ip_address", "")
        return resp.status_code, address or str(body)

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(create, range(24)))
    assert [status for status, _ in results] == [201] * 24, results
    addresses = [address for _, address in results]
    assert len(set(addresses)) == 24, addresses
