"""IP address management, pure logic (no database): subnet CIDRs, gateways, allocation pools,
overlap checks and picking a free address. The API keeps the state (``ip_allocations``) and
serialises allocations on a subnet by locking its row.

Rules, as Neutron's:

- a CIDR must be a network address (``10.0.0.5/24`` is refused, naming ``10.0.0.0/24``);
- the gateway defaults to the first host address (``.1``); ``null`` means no gateway;
- the default pools are every host address but the gateway (IPv4: not the network and broadcast
  addresses); given pools must be inside the CIDR, must not overlap each other and must not hold
  the gateway;
- subnets of one network must not overlap; across networks (and projects) they may;
- a fixed IP given by address may be any host address of the subnet, in a pool or not.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def _le(low: IPAddress, address: IPAddress, high: IPAddress) -> bool:
    return int(low) <= int(address) <= int(high)


def overlapping(one: IPNetwork, other: IPNetwork) -> bool:
    return int(one.network_address) <= int(other.broadcast_address) and int(
        other.network_address
    ) <= int(one.broadcast_address)


class IpamError(ValueError):
    """A request that cannot be satisfied; ``kind`` is Neutron's error type, ``code`` the
    HTTP status."""

    def __init__(self, message: str, kind: str = "InvalidInput", code: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.kind = kind
        self.code = code


@dataclass(frozen=True)
class Pool:
    start: IPAddress
    end: IPAddress

    def __contains__(self, address: object) -> bool:
        if not isinstance(address, ipaddress.IPv4Address | ipaddress.IPv6Address):
            return False
        return address.version == self.start.version and _le(self.start, address, self.end)

    def overlaps(self, other: Pool) -> bool:
        return int(self.start) <= int(other.end) and int(other.start) <= int(self.end)

    def size(self) -> int:
        return int(self.end) - int(self.start) + 1

    def to_dict(self) -> dict[str, str]:
        return {"start": str(self.start), "end": str(self.end)}

    def __str__(self) -> str:
        return f"{self.start}-{self.end}"


def parse_cidr(cidr: object, ip_version: int) -> IPNetwork:
    """The subnet ``cidr`` of ``ip_version``; 400 when malformed, of the other version, not a
    network address, or too small to hold an address."""
    if not isinstance(cidr, str):
        raise IpamError(f"Invalid input for cidr. Reason: '{cidr}' is not a valid IP subnet.")
    try:
        loose = ipaddress.ip_network(cidr, strict=False)
    except ValueError:
        raise IpamError(
            f"Invalid input for cidr. Reason: '{cidr}' is not a valid IP subnet."
        ) from None
    if loose.version != ip_version:
        raise IpamError(
            "Invalid input for operation: Cidr and IP version are incompatible. "
            f"cidr {cidr} is IPv{loose.version}, ip_version is {ip_version}."
        )
    try:
        ipaddress.ip_network(cidr, strict=True)
    except ValueError:
        raise IpamError(
            f"Invalid input for operation: {cidr} isn't a recognized IP subnet cidr, "
            f"{loose} is recommended."
        ) from None
    if int(first_host(loose)) > int(last_host(loose)):
        raise IpamError(f"Invalid input for cidr. Reason: {cidr} holds no usable address.")
    return loose


def first_host(net: IPNetwork) -> IPAddress:
    if net.version == 4 and net.prefixlen >= 31:
        return net.network_address
    return net.network_address + 1


def last_host(net: IPNetwork) -> IPAddress:
    if net.version == 4 and net.prefixlen < 31:
        return net.broadcast_address - 1
    return net.broadcast_address


def parse_address(value: object, field: str = "ip_address") -> IPAddress:
    if not isinstance(value, str):
        raise IpamError(f"Invalid input for {field}. Reason: '{value}' is not a valid IP address.")
    try:
        return ipaddress.ip_address(value)
    except ValueError:
        raise IpamError(
            f"Invalid input for {field}. Reason: '{value}' is not a valid IP address."
        ) from None


def is_host_address(net: IPNetwork, address: IPAddress) -> bool:
    return address.version == net.version and _le(first_host(net), address, last_host(net))


def default_gateway(net: IPNetwork) -> IPAddress:
    return first_host(net)


def check_gateway(net: IPNetwork, gateway: IPAddress) -> None:
    if not is_host_address(net, gateway):
        raise IpamError(
            f"Invalid input for operation: Gateway IP {gateway} is not a valid host address "
            f"of subnet {net}."
        )


def default_pools(net: IPNetwork, gateway: IPAddress | None) -> list[Pool]:
    """Every host address of ``net`` but the gateway, as one or two ranges."""
    start, end = first_host(net), last_host(net)
    if gateway is None or not _le(start, gateway, end):
        return [Pool(start, end)]
    pools = []
    if int(start) < int(gateway):
        pools.append(Pool(start, gateway - 1))
    if int(gateway) < int(end):
        pools.append(Pool(gateway + 1, end))
    return pools


def parse_pools(net: IPNetwork, raw: Iterable[object]) -> list[Pool]:
    """Pools given as ``[{"start", "end"}]``: inside ``net``, ordered, not overlapping."""
    pools: list[Pool] = []
    for item in raw:
        if not isinstance(item, dict) or set(item) != {"start", "end"}:
            raise IpamError(
                "Invalid input for allocation_pools. Reason: each pool needs exactly "
                "'start' and 'end'."
            )
        start = parse_address(item["start"], "allocation_pools")
        end = parse_address(item["end"], "allocation_pools")
        if start.version != net.version or end.version != net.version or int(start) > int(end):
            raise IpamError(
                f"Invalid input for operation: The allocation pool {start}-{end} is not valid."
            )
        if not (is_host_address(net, start) and is_host_address(net, end)):
            raise IpamError(
                f"The allocation pool {start}-{end} spans beyond the subnet cidr {net}.",
                kind="OutOfBoundsAllocationPool",
            )
        pools.append(Pool(start, end))
    pools.sort(key=lambda pool: pool.start)
    for before, after in zip(pools, pools[1:], strict=False):
        if before.overlaps(after):
            raise IpamError(
                f"Found overlapping allocation pools: {before} and {after} for subnet {net}.",
                kind="OverlappingAllocationPools",
                code=409,
            )
    return pools


def check_gateway_outside_pools(gateway: IPAddress | None, pools: Iterable[Pool]) -> None:
    if gateway is None:
        return
    for pool in pools:
        if gateway in pool:
            raise IpamError(
                f"Gateway ip {gateway} conflicts with allocation pool {pool}.",
                kind="GatewayConflictWithAllocationPools",
                code=409,
            )


def check_no_overlap(net: IPNetwork, others: Iterable[str], network_id: str) -> None:
    """A subnet must not overlap another subnet of the same network."""
    for other in others:
        other_net = ipaddress.ip_network(other)
        if other_net.version == net.version and overlapping(net, other_net):
            raise IpamError(
                f"Invalid input for operation: Requested subnet with cidr: {net} for network: "
                f"{network_id} overlaps with another subnet."
            )


def pools_from_dicts(raw: Iterable[dict[str, str]]) -> list[Pool]:
    return [Pool(ipaddress.ip_address(p["start"]), ipaddress.ip_address(p["end"])) for p in raw]


def free_addresses(pools: Iterable[Pool], used: set[IPAddress]) -> Iterator[IPAddress]:
    """Free addresses of ``pools`` in order (lazily: a /8 is not enumerated up front)."""
    for pool in pools:
        for value in range(int(pool.start), int(pool.end) + 1):
            address: IPAddress = (
                ipaddress.IPv4Address(value)
                if pool.start.version == 4
                else ipaddress.IPv6Address(value)
            )
            if address not in used:
                yield address


def allocate(pools: Iterable[Pool], used: set[IPAddress]) -> IPAddress | None:
    """The first free address of the pools, or None when they are exhausted."""
    return next(free_addresses(pools, used), None)


def capacity(pools: Iterable[Pool]) -> int:
    return sum(pool.size() for pool in pools)
