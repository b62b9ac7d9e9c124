"""library/cloud_network.py run in playbooks against the real network API.

The ``network_server`` fixture runs network-api under gunicorn beside identity (both on the
session's MariaDB, the network service in identity's catalog). The tests act as a user: a
clouds.yaml with a ``member`` of a fresh project (``cirrus``) and the bootstrap admin
(``cirrus-admin``), plays on localhost run through ansible-runner from the repository root, and
what the network API shows afterwards. The play runner and the accounts are in
``tests/fixtures/ansible_playbook.py``.
"""

from __future__ import annotations

import secrets
from typing import Any

import pytest
import requests

from tests.fixtures.ansible_playbook import NetworkContent, Playbook, network_fixtures

pytestmark = [pytest.mark.mariadb]

network_content, network_playbook = network_fixtures("cloud-network")


def _name(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(3)}"


def _task(title: str, /, **options: Any) -> dict[str, Any]:
    """A cloud_network task called ``title``; a failure does not stop the play, the test reads
    it."""
    return {"name": title, "cloud_network": options, "ignore_errors": True}


def _ok(run: Any, title: str) -> dict[str, Any]:
    result: dict[str, Any] = run.result(title)
    assert not result.get("failed"), run.output()
    return result


def _failed(run: Any, title: str) -> str:
    result = run.result(title)
    assert result.get("failed"), run.output()
    return str(result["msg"])


def _networks(content: NetworkContent, name: str) -> list[dict[str, Any]]:
    return content.listing("networks", name=name)


def _interfaces(content: NetworkContent, router_id: str) -> list[dict[str, Any]]:
    return content.listing("ports", device_id=router_id, device_owner="network:router_interface")


def _subnets_task(net: str, cidr: str, **extra: Any) -> list[dict[str, Any]]:
    return [{"name": f"{net}-v4", "cidr": cidr, **extra}]


# -- behaviour ------------------------------------------------------------------------------------


def test_create_then_a_second_identical_run_reports_no_change(
    network_content: NetworkContent, network_playbook: Playbook
) -> None:
    content, net = network_content, _name("net")
    router_name = _name("r")
    task = {
        "name": "Network, subnet and router",
        "cloud_network": {
            "name": net,
            "mtu": 1400,
            "subnets": _subnets_task(
                net, "10.20.0.0/24", dns_nameservers=["192.0.2.53"], enable_dhcp=True
            ),
            "router": {"name": router_name},
        },
    }
    first = network_playbook.run([task], name="present.yml")
    assert first.returncode == 0, first.output()
    assert first.recap() == {"ok": 1, "changed": 1, "failed": 0}
    result = first.result("Network, subnet and router")
    assert result["actions"] == [
        f"create network '{net}'",
        f"create subnet '{net}-v4' (10.20.0.0/24)",
        f"create router '{router_name}'",
        f"add an interface on subnet '{net}-v4' to router '{router_name}'",
    ]
    second = network_playbook.run([task], name="present.yml")
    assert second.returncode == 0, second.output()
    assert second.recap() == {"ok": 1, "changed": 0, "failed": 0}
    assert second.result("Network, subnet and router")["actions"] == []

    (network,) = _networks(content, net)
    assert network["project_id"] == content.project_id
    assert network["mtu"] == 1400
    assert result["id"] == network["id"]
    (subnet,) = content.listing("subnets", network_id=network["id"])
    assert network["subnets"] == [subnet["id"]]
    assert subnet["name"] == f"{net}-v4" and subnet["cidr"] == "10.20.0.0/24"
    assert subnet["gateway_ip"] == "10.20.0.1"
    assert subnet["dns_nameservers"] == ["192.0.2.53"]
    assert [s["id"] for s in result["subnets"]] == [subnet["id"]]
    (router,) = content.listing("routers", name=router_name)
    assert router["external_gateway_info"] is None
    (interface,) = _interfaces(content, router["id"])
    assert interface["network_id"] == network["id"]
    assert interface["fixed_ips"] == [{"subnet_id": subnet["id"], "ip_address": "10.20.0.1"}]


def test_check_mode_reports_without_writing(
    network_content: NetworkContent, network_playbook: Playbook
) -> None:
    content, net = network_content, _name("never")
    router_name = _name("r-never")
    options = {
        "name": net,
        "subnets": _subnets_task(net, "10.21.0.0/24"),
        "router": {"name": router_name},
    }
    run = network_playbook.run([_task("create", **options)], "--check")
    created = _ok(run, "create")
    assert created["changed"] is True
    assert created["actions"] == [
        f"create network '{net}'",
        f"create subnet '{net}-v4' (10.21.0.0/24)",
        f"create router '{router_name}'",
        f"add an interface on subnet '{net}-v4' to router '{router_name}'",
    ]
    assert _networks(content, net) == []
    assert content.listing("routers", name=router_name) == []

    # An existing network: check mode reports the update and the deletion, and does neither.
    run = network_playbook.run([_task("create", **options)])
    network_id = _ok(run, "create")["id"]
    run = network_playbook.run(
        [
            _task(
                "dns",
                **{
                    **options,
                    "subnets": _subnets_task(net, "10.21.0.0/24", dns_nameservers=["192.0.2.1"]),
                },
            ),
            _task("delete", name=net, state="absent"),
        ],
        "--check",
    )
    assert _ok(run, "dns")["actions"] == [f"update subnet '{net}-v4': dns_nameservers"]
    assert _ok(run, "delete")["changed"] is True
    (network,) = _networks(content, net)
    assert network["id"] == network_id
    (subnet,) = content.listing("subnets", network_id=network_id)
    assert subnet["dns_nameservers"] == []
    (router,) = content.listing("routers", name=router_name)
    assert len(_interfaces(content, router["id"])) == 1


def test_updates_are_applied_and_an_immutable_cidr_fails(
    network_content: NetworkContent, network_playbook: Playbook
) -> None:
    content, net = network_content, _name("upd")
    subnet = {"name": f"{net}-v4", "cidr": "10.22.0.0/24"}
    run = network_playbook.run([_task("create", name=net, subnets=[subnet])])
    network_id = _ok(run, "create")["id"]

    changed = {
        **subnet,
        "dns_nameservers": ["192.0.2.53", "192.0.2.54"],
        "host_routes": [{"destination": "192.168.0.0/16", "nexthop": "10.22.0.254"}],
        "enable_dhcp": False,
    }
    run = network_playbook.run(
        [
            _task("update", name=net, port_security_enabled=False, subnets=[changed]),
            _task("again", name=net, port_security_enabled=False, subnets=[changed]),
            _task("cidr", name=net, subnets=[{**subnet, "cidr": "10.99.0.0/24"}]),
        ]
    )
    update = _ok(run, "update")
    assert update["changed"] is True
    assert update["actions"] == [
        f"update network '{net}': port_security_enabled",
        f"update subnet '{net}-v4': dns_nameservers, enable_dhcp, host_routes",
    ]
    assert _ok(run, "again")["changed"] is False
    cidr = _failed(run, "cidr")
    assert f"subnet '{net}-v4'" in cidr
    assert "has cidr 10.22.0.0/24, the task wants 10.99.0.0/24" in cidr
    assert "cidr cannot be changed: delete the subnet" in cidr

    (shown,) = content.listing("subnets", network_id=network_id)
    assert shown["cidr"] == "10.22.0.0/24"
    assert shown["dns_nameservers"] == ["192.0.2.53", "192.0.2.54"]
    assert shown["host_routes"] == [{"destination": "192.168.0.0/16", "nexthop": "10.22.0.254"}]
    assert shown["enable_dhcp"] is False
    assert (
        content.get(f"/networks/{network_id}").json()["network"]["port_security_enabled"] is False
    )


def test_a_router_gateway_on_an_admin_created_external_network(
    network_content: NetworkContent, network_playbook: Playbook
) -> None:
    content = network_content
    ext, net, router_name = _name("ext"), _name("gw"), _name("r-gw")
    external = {
        "cloud": content.admin_cloud,
        "name": ext,
        "external": True,
        "provider_network_type": "vlan",
        "provider_physical_network": "physnet1",
        "provider_segmentation_id": 2000 + secrets.randbelow(2000),
        "subnets": [
            {
                "name": f"{ext}-v4",
                "cidr": "198.51.100.0/24",
                "enable_dhcp": False,
                "allocation_pools": [{"start": "198.51.100.100", "end": "198.51.100.199"}],
            }
        ],
    }
    member = {
        "name": net,
        "subnets": _subnets_task(net, "10.23.0.0/24"),
        "router": {"name": router_name, "external_network": ext},
    }
    run = network_playbook.run(
        [
            _task("external", **external),
            _task("external again", **external),
            _task("routed", **member),
            _task("routed again", **member),
            _task("other type", **{**external, "provider_network_type": "flat"}),
        ]
    )
    ext_result = _ok(run, "external")
    assert ext_result["changed"] is True
    assert ext_result["network"]["router:external"] is True
    assert ext_result["network"]["provider:network_type"] == "vlan"
    assert _ok(run, "external again")["changed"] is False
    routed = _ok(run, "routed")
    assert routed["changed"] is True
    assert f"create router '{router_name}' with a gateway on '{ext}'" in routed["actions"]
    assert _ok(run, "routed again")["changed"] is False
    other = _failed(run, "other type")
    assert "has provider:network_type 'vlan', the task wants 'flat'" in other
    assert "delete the network (state=absent)" in other

    ext_id = ext_result["id"]
    (ext_subnet,) = content.listing("subnets", network_id=ext_id)
    (router,) = content.listing("routers", name=router_name)
    assert routed["router"]["id"] == router["id"]
    gateway = router["external_gateway_info"]
    assert gateway["network_id"] == ext_id and gateway["enable_snat"] is True
    (fixed,) = gateway["external_fixed_ips"]
    assert fixed["subnet_id"] == ext_subnet["id"]
    assert fixed["ip_address"].startswith("198.51.100.1")
    (interface,) = _interfaces(content, router["id"])
    assert interface["fixed_ips"][0]["ip_address"] == "10.23.0.1"

    # The member cannot set SNAT (admin only by policy): the API's 403 names the rule.
    run = network_playbook.run(
        [
            _task(
                "snat",
                **{**member, "router": {**member["router"], "enable_snat": False}},
            )
        ]
    )
    snat = _failed(run, "snat")
    assert f"set the gateway of router '{router_name}' ({router['id']})" in snat
    assert "answered 403" in snat
    assert "update_router:external_gateway_info:enable_snat is disallowed by policy" in snat


def test_absent_removes_interfaces_subnets_and_the_network(
    network_content: NetworkContent, network_playbook: Playbook
) -> None:
    content, net, router_name = network_content, _name("gone"), _name("r-gone")
    subnets = [
        {"name": f"{net}-a", "cidr": "10.24.0.0/24"},
        {"name": f"{net}-b", "cidr": "10.25.0.0/24", "gateway_ip": "10.25.0.254"},
    ]
    run = network_playbook.run(
        [_task("create", name=net, subnets=subnets, router={"name": router_name})]
    )
    created = _ok(run, "create")
    network_id = created["id"]
    subnet_ids = [s["id"] for s in created["subnets"]]
    router_id = created["router"]["id"]
    assert len(_interfaces(content, router_id)) == 2

    # A server's port on the network blocks the deletion, and is named.
    port = content.post(
        "ports",
        {
            "network_id": network_id,
            "device_owner": "compute:nova",
            "device_id": "6f8b2c1e-4d0a-4c55-9a3e-0f2b7a9d1c44",
        },
    )
    run = network_playbook.run([_task("blocked", name=net, state="absent")])
    blocked = _failed(run, "blocked")
    assert f"network '{net}' ({network_id}) cannot be deleted" in blocked
    assert (
        f"port {port['id']} (compute:nova, device 6f8b2c1e-4d0a-4c55-9a3e-0f2b7a9d1c44)" in blocked
    )
    assert "delete those servers or ports first" in blocked
    assert len(_interfaces(content, router_id)) == 2
    response = content.get(f"/ports/{port['id']}")
    assert response.status_code == 200
    deleted = requests.delete(
        f"{content.network_url}/ports/{port['id']}", headers=content.headers(), timeout=30
    )
    assert deleted.status_code == 204, deleted.text

    run = network_playbook.run(
        [_task("absent", name=net, state="absent"), _task("absent again", name=net, state="absent")]
    )
    absent = _ok(run, "absent")
    assert absent["changed"] is True and absent["id"] == network_id
    assert _ok(run, "absent again")["changed"] is False
    assert content.get(f"/networks/{network_id}").status_code == 404
    for subnet_id in subnet_ids:
        assert content.get(f"/subnets/{subnet_id}").status_code == 404
    assert _interfaces(content, router_id) == []
    assert content.get(f"/routers/{router_id}").status_code == 200  # the router stays


def test_bad_input_and_api_errors_fail_with_what_to_do(
    network_content: NetworkContent, network_playbook: Playbook
) -> None:
    content = network_content
    net, twin = _name("bad"), _name("twin")
    twins = [content.post("networks", {"name": twin}) for _ in range(2)]
    run = network_playbook.run(
        [
            _task("cidr", name=net, subnets=_subnets_task(net, "10.26.0.300/24")),
            _task("host bits", name=net, subnets=_subnets_task(net, "10.26.0.5/24")),
            _task("shared", name=net, shared=True),
            _task(
                "no gateway",
                name=net,
                subnets=_subnets_task(net, "10.26.0.0/24", disable_gateway_ip=True),
                router={"name": "r"},
            ),
            _task("external", name=net, router={"name": "r", "external_network": "nowhere"}),
            _task("twins", name=twin),
            _task(
                "gateway",
                name=net,
                subnets=_subnets_task(net, "10.26.0.0/24", gateway_ip="10.27.0.1"),
            ),
        ]
    )
    cidr = _failed(run, "cidr")
    assert cidr == (
        f"subnets[0] ('{net}-v4'): cidr '10.26.0.300/24' is not a valid IP network; give a "
        "network address with its prefix length, e.g. 10.10.0.0/24 or fd00:10::/64"
    )
    assert "use the network address 10.26.0.0/24" in _failed(run, "host bits")
    assert "disable_gateway_ip=true leaves it none" in _failed(run, "no gateway")
    shared = _failed(run, "shared")
    assert shared.startswith(
        f"create network '{net}' failed: POST {content.network_url}/networks answered 403"
    )
    assert "rule:create_network:shared is disallowed by policy" in shared
    external = _failed(run, "external")
    assert "external network 'nowhere' not found in the network service" in external
    twins_failure = _failed(run, "twins")
    for found in twins:
        assert found["id"] in twins_failure
    assert "delete or rename the extra ones" in twins_failure
    # Only the API knows the gateway is wrong: its 400 and message, naming the subnet.
    gateway = _failed(run, "gateway")
    assert gateway.startswith(
        f"create subnet '{net}-v4' (10.26.0.0/24) on network '{net}' failed: POST "
        f"{content.network_url}/subnets answered 400"
    )
    assert "Gateway IP 10.27.0.1 is not a valid host address of subnet 10.26.0.0/24" in gateway
    # Everything before the gateway task was refused before any write.
    (network,) = _networks(content, net)
    assert network["subnets"] == []
    assert content.listing("routers", name="r") == []
