"""The DHCP agent's dnsmasq files and command line, from what get_network_ports answers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from agents.dhcp import dnsmasq

NET = "6c998daa-adb4-4bbb-987b-566342491861"
SUB = "dfc4a7f9-3709-4cbf-b05c-c551c59d0857"
SUB2 = "0b7e3c1a-1111-4222-8333-944455556666"


def subnet(**extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": SUB,
        "network_id": NET,
        "ip_version": 4,
        "cidr": "10.0.0.0/24",
        "gateway_ip": "10.0.0.1",
        "allocation_pools": [{"start": "10.0.0.2", "end": "10.0.0.254"}],
        "enable_dhcp": True,
        "dns_nameservers": [],
        "host_routes": [],
    }
    body.update(extra)
    return body


def port(mac: str, *ips: str, owner: str = "compute:nova", up: bool = True) -> dict[str, Any]:
    return {
        "id": "11111111-2222-4333-8444-555555555555",
        "mac_address": mac,
        "device_owner": owner,
        "admin_state_up": up,
        "fixed_ips": [
            {"subnet_id": SUB, "ip_address": ip, "hostname": dnsmasq.hostname(ip)} for ip in ips
        ],
    }


def test_served_subnets_keep_ipv4_with_dhcp_only() -> None:
    bodies = [
        subnet(),
        subnet(id=SUB2, cidr="10.1.0.0/24", enable_dhcp=False),
        subnet(id=SUB2, cidr="fd00::/64", ip_version=6, gateway_ip="fd00::1"),
    ]
    served = dnsmasq.served_subnets(bodies)
    assert [s.id for s in served] == [SUB]
    assert served[0].tag == f"subnet-{SUB}"


def test_hosts_file_lines() -> None:
    subnets = dnsmasq.served_subnets([subnet()])
    ports = [
        port("FA:16:3E:00:00:0A", "10.0.0.10"),
        port("fa:16:3e:00:00:0b", "10.0.0.11", up=False),  # admin down: no lease
        port("fa:16:3e:00:00:0c", "10.9.9.9"),  # not in the subnet: left out
        {
            **port("fa:16:3e:00:00:0d", "10.0.0.13"),
            "fixed_ips": [{"subnet_id": "other", "ip_address": "10.0.0.13"}],
        },
        port("not-a-mac", "10.0.0.14"),
        port("fa:16:3e:00:00:0f", "10.0.0.15", "10.0.0.16"),
    ]
    assert dnsmasq.render_hosts(subnets, ports) == (
        "fa:16:3e:00:00:0a,host-10-0-0-10,10.0.0.10\n"
        "fa:16:3e:00:00:0f,host-10-0-0-15,10.0.0.15\n"
        "fa:16:3e:00:00:0f,host-10-0-0-16,10.0.0.16\n"
    )


def test_opts_router_dns_mtu_and_metadata_route() -> None:
    subnets = dnsmasq.served_subnets(
        [subnet(dns_nameservers=["192.0.2.53", "192.0.2.54"],
                host_routes=[{"destination": "172.16.0.0/16", "nexthop": "10.0.0.254"}])]
    )  # fmt: skip
    ports = [port("fa:16:3e:00:00:01", "10.0.0.1", owner="network:router_interface")]
    tag = f"tag:subnet-{SUB}"
    routes = "172.16.0.0/16,10.0.0.254,169.254.169.254/32,10.0.0.1,0.0.0.0/0,10.0.0.1"
    assert dnsmasq.render_opts(subnets, ports, mtu=1450) == (
        f"{tag},option:router,10.0.0.1\n"
        f"{tag},option:dns-server,192.0.2.53,192.0.2.54\n"
        f"{tag},option:mtu,1450\n"
        f"{tag},option:classless-static-route,{routes}\n"
        f"{tag},249,{routes}\n"
    )


def test_opts_without_router_interface_nor_gateway() -> None:
    subnets = dnsmasq.served_subnets([subnet(gateway_ip=None)])
    tag = f"tag:subnet-{SUB}"
    # an empty router option: dnsmasq would otherwise offer its own address as the router
    assert dnsmasq.render_opts(subnets, [], mtu=None, default_dns=["9.9.9.9"]) == (
        f"{tag},option:router\n{tag},option:dns-server,9.9.9.9\n"
    )


def test_opts_metadata_route_via_router_interface_not_gateway() -> None:
    subnets = dnsmasq.served_subnets([subnet()])
    ports = [port("fa:16:3e:00:00:01", "10.0.0.5", owner="network:router_interface")]
    text = dnsmasq.render_opts(subnets, ports)
    assert (
        f"tag:subnet-{SUB},option:classless-static-route,"
        "169.254.169.254/32,10.0.0.5,0.0.0.0/0,10.0.0.1\n"
    ) in text
    assert "option:mtu" not in text


def test_argv() -> None:
    subnets = dnsmasq.served_subnets([subnet(), subnet(id=SUB2, cidr="10.1.0.0/16")])
    files = dnsmasq.DnsmasqFiles(Path("/var/lib/cirrus/dhcp") / NET)
    argv = dnsmasq.render_argv("dnsmasq", "ns-11111111-22", subnets, files, 3600)
    assert argv[0] == "dnsmasq"
    for flag in ("--no-hosts", "--no-resolv", "--strict-order", "--except-interface=lo",
                 "--bind-interfaces", "--leasefile-ro", "--conf-file=/dev/null",
                 "--interface=ns-11111111-22",
                 f"--pid-file=/var/lib/cirrus/dhcp/{NET}/pid",
                 f"--dhcp-hostsfile=/var/lib/cirrus/dhcp/{NET}/host",
                 f"--dhcp-optsfile=/var/lib/cirrus/dhcp/{NET}/opts"):  # fmt: skip
        assert flag in argv
    assert f"--dhcp-range=set:subnet-{SUB},10.0.0.0,static,255.255.255.0,3600s" in argv
    assert f"--dhcp-range=set:subnet-{SUB2},10.1.0.0,static,255.255.0.0,3600s" in argv


@pytest.mark.parametrize(
    "bad",
    [
        subnet(id="x,y"),
        subnet(cidr="10.0.0.5/24"),
        subnet(gateway_ip="10.0.0.1,evil"),
        subnet(dns_nameservers=["8.8.8.8,evil"]),
        subnet(host_routes=[{"destination": "1.2.3.0/24", "nexthop": "nope"}]),
    ],
)
def test_invalid_subnet_data_is_refused(bad: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        dnsmasq.served_subnets([bad])


def test_lease_time() -> None:
    assert dnsmasq.valid_lease_time(86400) == "86400s"
    assert dnsmasq.valid_lease_time("infinite") == "infinite"
    with pytest.raises(ValueError):
        dnsmasq.valid_lease_time(30)
