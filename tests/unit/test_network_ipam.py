"""IP address management without a database: CIDRs, gateways, pools, overlaps, allocation."""

from __future__ import annotations

import ipaddress

import pytest

from control.network import ipam


def ip(value: str) -> ipam.IPAddress:
    return ipaddress.ip_address(value)


def test_cidr_must_be_a_network_address_of_its_version() -> None:
    assert str(ipam.parse_cidr("10.0.0.0/24", 4)) == "10.0.0.0/24"
    with pytest.raises(ipam.IpamError, match="10.0.0.0/24 is recommended"):
        ipam.parse_cidr("10.0.0.5/24", 4)
    with pytest.raises(ipam.IpamError, match="incompatible"):
        ipam.parse_cidr("fd00::/64", 4)
    with pytest.raises(ipam.IpamError, match="not a valid IP subnet"):
        ipam.parse_cidr("10.0.0/33", 4)
    assert ipam.parse_cidr("10.0.0.0/31", 4).num_addresses == 2


def test_default_gateway_and_pools() -> None:
    net = ipam.parse_cidr("10.0.0.0/24", 4)
    gateway = ipam.default_gateway(net)
    assert str(gateway) == "10.0.0.1"
    assert [p.to_dict() for p in ipam.default_pools(net, gateway)] == [
        {"start": "10.0.0.2", "end": "10.0.0.254"}
    ]
    middle = ip("10.0.0.100")
    assert [str(p) for p in ipam.default_pools(net, middle)] == [
        "10.0.0.1-10.0.0.99",
        "10.0.0.101-10.0.0.254",
    ]
    assert [str(p) for p in ipam.default_pools(net, None)] == ["10.0.0.1-10.0.0.254"]
    v6 = ipam.parse_cidr("fd00::/120", 6)
    assert str(ipam.default_gateway(v6)) == "fd00::1"
    assert [str(p) for p in ipam.default_pools(v6, ip("fd00::1"))] == ["fd00::2-fd00::ff"]


def test_pools_are_checked() -> None:
    net = ipam.parse_cidr("10.0.0.0/24", 4)
    pools = ipam.parse_pools(
        net,
        [{"start": "10.0.0.50", "end": "10.0.0.60"}, {"start": "10.0.0.10", "end": "10.0.0.20"}],
    )
    assert [str(p) for p in pools] == ["10.0.0.10-10.0.0.20", "10.0.0.50-10.0.0.60"]
    with pytest.raises(ipam.IpamError) as overlapping:
        ipam.parse_pools(
            net,
            [
                {"start": "10.0.0.10", "end": "10.0.0.20"},
                {"start": "10.0.0.20", "end": "10.0.0.30"},
            ],
        )
    assert (overlapping.value.kind, overlapping.value.code) == ("OverlappingAllocationPools", 409)
    with pytest.raises(ipam.IpamError) as outside:
        ipam.parse_pools(net, [{"start": "10.0.0.0", "end": "10.0.0.5"}])
    assert outside.value.kind == "OutOfBoundsAllocationPool"
    with pytest.raises(ipam.IpamError):
        ipam.parse_pools(net, [{"start": "10.0.0.9", "end": "10.0.0.5"}])
    with pytest.raises(ipam.IpamError) as gateway:
        ipam.check_gateway_outside_pools(ip("10.0.0.15"), pools)
    assert gateway.value.kind == "GatewayConflictWithAllocationPools"
    ipam.check_gateway_outside_pools(ip("10.0.0.1"), pools)


def test_overlaps_only_within_a_network() -> None:
    net = ipam.parse_cidr("10.0.0.0/24", 4)
    ipam.check_no_overlap(net, ["10.0.1.0/24", "fd00::/64"], "n1")
    with pytest.raises(ipam.IpamError, match="overlaps with another subnet"):
        ipam.check_no_overlap(net, ["10.0.0.128/25"], "n1")
    with pytest.raises(ipam.IpamError):
        ipam.check_no_overlap(net, ["10.0.0.0/16"], "n1")


def test_allocation_takes_the_first_free_address_and_reports_exhaustion() -> None:
    pools = ipam.pools_from_dicts(
        [{"start": "10.0.0.2", "end": "10.0.0.3"}, {"start": "10.0.0.10", "end": "10.0.0.10"}]
    )
    used: set[ipam.IPAddress] = set()
    given = []
    while (address := ipam.allocate(pools, used)) is not None:
        used.add(address)
        given.append(str(address))
    assert given == ["10.0.0.2", "10.0.0.3", "10.0.0.10"]
    assert ipam.capacity(pools) == 3
    used.discard(ip("10.0.0.3"))
    assert str(ipam.allocate(pools, used)) == "10.0.0.3"


def test_large_pools_are_not_enumerated_up_front() -> None:
    net = ipam.parse_cidr("10.0.0.0/8", 4)
    pools = ipam.default_pools(net, ipam.default_gateway(net))
    assert ipam.capacity(pools) == 2**24 - 3
    assert str(ipam.allocate(pools, {ip("10.0.0.2")})) == "10.0.0.3"
    v6 = ipam.default_pools(ipam.parse_cidr("fd00::/64", 6), None)
    assert str(ipam.allocate(v6, set())) == "fd00::1"


def test_host_addresses() -> None:
    net = ipam.parse_cidr("10.0.0.0/24", 4)
    assert ipam.is_host_address(net, ip("10.0.0.1"))
    assert not ipam.is_host_address(net, ip("10.0.0.0"))
    assert not ipam.is_host_address(net, ip("10.0.0.255"))
    assert not ipam.is_host_address(net, ip("fd00::1"))
    with pytest.raises(ipam.IpamError, match="Gateway IP 10.0.1.1"):
        ipam.check_gateway(net, ip("10.0.1.1"))
    with pytest.raises(ipam.IpamError, match="not a valid IP address"):
        ipam.parse_address("10.0.0.300")
