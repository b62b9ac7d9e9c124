"""A router as the l3-agent wires it: the answer of ``get_routers`` validated into
:class:`Router`, and its NAT ruleset rendered as nftables text.

Every value is checked before it reaches a command line or a ruleset: ids as UUIDs, MACs by
regex (:func:`agents.network.linux.valid_mac`), addresses and prefixes through :mod:`ipaddress`
(IPv4 only: the NAT is IPv4, as Neutron's), device names from :mod:`control.network.naming`.
Anything else raises :class:`InvalidRouter`.

The ruleset is one table, ``table ip cirrus-nat``, inside the router's namespace, replaced in
one ``nft -f -`` transaction::

    table ip cirrus-nat {
        chain prerouting {            # floating IP -> fixed IP, arriving on the gateway
            type nat hook prerouting priority dstnat; policy accept;
            iifname "qg-..." ip daddr 172.24.4.20 dnat to 10.0.0.5
        }
        chain postrouting {           # fixed IP -> its floating IP, then the router's SNAT
            type nat hook postrouting priority srcnat; policy accept;
            oifname "qg-..." ip saddr 10.0.0.5 snat to 172.24.4.20
            oifname "qg-..." ip saddr { 10.0.0.0/24 } snat to 172.24.4.10
        }
    }
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from agents.network import linux
from control.network import naming

TABLE = "cirrus-nat"
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


class InvalidRouter(ValueError):
    """A router carried something that cannot be wired or put in a ruleset safely."""


@dataclass(frozen=True)
class RouterPort:
    """A router port: a veth ``<prefix><port[:11]>`` in the router's namespace whose host end
    ``tap<port[:11]>`` (Neutron's linuxbridge name) is a port of the network's bridge."""

    prefix: ClassVar[str] = "qr-"
    port_id: str
    network_id: str
    mac: str

    @property
    def device(self) -> str:
        return naming.device(self.prefix, self.port_id)

    @property
    def peer(self) -> str:
        return linux.valid_tap(naming.tap(self.port_id))

    @property
    def bridge(self) -> str:
        return linux.valid_bridge(naming.bridge(self.network_id))


@dataclass(frozen=True)
class Interface(RouterPort):
    address: ipaddress.IPv4Interface = ipaddress.IPv4Interface("0.0.0.0/32")  # with its prefix
    mtu: int | None = None


@dataclass(frozen=True)
class Gateway(RouterPort):
    prefix: ClassVar[str] = "qg-"
    addresses: tuple[ipaddress.IPv4Interface, ...] = ()
    gateway_ip: ipaddress.IPv4Address | None = None
    enable_snat: bool = True
    mtu: int | None = None

    @property
    def snat_ip(self) -> ipaddress.IPv4Address:
        return self.addresses[0].ip


@dataclass(frozen=True)
class FloatingIP:
    id: str
    floating: ipaddress.IPv4Address
    fixed: ipaddress.IPv4Address


@dataclass
class Router:
    id: str
    admin_state_up: bool
    gateway: Gateway | None
    interfaces: list[Interface] = field(default_factory=list)
    floating_ips: list[FloatingIP] = field(default_factory=list)

    @property
    def namespace(self) -> str:
        return linux.valid_netns(naming.router_namespace(self.id))


# -- validation ----------------------------------------------------------------------------------


def valid_id(value: Any, what: str = "id") -> str:
    text = str(value).lower()
    if not isinstance(value, str) or not _UUID.match(text):
        raise InvalidRouter(f"invalid {what} {value!r}")
    return text


def _mac(value: Any) -> str:
    try:
        return linux.valid_mac(value)
    except ValueError as exc:
        raise InvalidRouter(str(exc)) from None


def _ipv4(value: Any, what: str) -> ipaddress.IPv4Address:
    if not isinstance(value, str):
        raise InvalidRouter(f"invalid {what} {value!r}")
    try:
        return ipaddress.IPv4Address(value.strip())
    except ValueError:
        raise InvalidRouter(f"invalid {what} {value!r} (an IPv4 address)") from None


def _prefixlen(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 32:
        raise InvalidRouter(f"invalid prefix length {value!r}")
    return value


def _mtu(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 68 <= value <= 65535:
        raise InvalidRouter(f"invalid MTU {value!r}")
    return value


def _is_v6(value: Any) -> bool:
    """An IPv6 address: skipped (the NAT and routing here are IPv4)."""
    try:
        return isinstance(ipaddress.ip_address(str(value)), ipaddress.IPv6Address)
    except ValueError:
        return False


def parse_interface(body: Mapping[str, Any]) -> Interface | None:
    """None for an IPv6-only interface (no IPv4 routing to do)."""
    if _is_v6(body.get("ip_address")):
        return None
    address = _ipv4(body.get("ip_address"), "interface address")
    prefixlen = _prefixlen(body.get("prefixlen"))
    return Interface(
        port_id=valid_id(body.get("port_id"), "port id"),
        network_id=valid_id(body.get("network_id"), "network id"),
        mac=_mac(body.get("mac_address")),
        address=ipaddress.IPv4Interface(f"{address}/{prefixlen}"),
        mtu=_mtu(body.get("mtu")),
    )


def parse_gateway(body: Mapping[str, Any]) -> Gateway | None:
    """None when the gateway has no IPv4 address (nothing to NAT to)."""
    addresses: list[ipaddress.IPv4Interface] = []
    gateway_ip: ipaddress.IPv4Address | None = None
    for ip in body.get("ips") or []:
        if _is_v6(ip.get("ip_address")):
            continue
        address = _ipv4(ip.get("ip_address"), "gateway address")
        addresses.append(ipaddress.IPv4Interface(f"{address}/{_prefixlen(ip.get('prefixlen'))}"))
        if gateway_ip is None and ip.get("gateway_ip"):
            gateway_ip = _ipv4(ip.get("gateway_ip"), "external gateway_ip")
    if not addresses:
        return None
    enable_snat = body.get("enable_snat", True)
    if not isinstance(enable_snat, bool):
        raise InvalidRouter(f"invalid enable_snat {enable_snat!r}")
    return Gateway(
        port_id=valid_id(body.get("port_id"), "port id"),
        network_id=valid_id(body.get("network_id"), "network id"),
        mac=_mac(body.get("mac_address")),
        addresses=tuple(addresses),
        gateway_ip=gateway_ip,
        enable_snat=enable_snat,
        mtu=_mtu(body.get("mtu")),
    )


def parse_router(body: Mapping[str, Any]) -> Router:
    """A router of ``get_routers``; :class:`InvalidRouter` when anything is unusable."""
    router_id = valid_id(body.get("id"), "router id")
    admin_state_up = body.get("admin_state_up", True)
    if not isinstance(admin_state_up, bool):
        raise InvalidRouter(f"invalid admin_state_up {admin_state_up!r}")
    gateway = parse_gateway(body["gateway"]) if body.get("gateway") else None
    interfaces: list[Interface] = []
    for item in body.get("interfaces") or []:
        parsed = parse_interface(item)
        if parsed is None:
            continue
        if any(parsed.device == i.device for i in interfaces):
            raise InvalidRouter(f"two interfaces named {parsed.device}")
        interfaces.append(parsed)
    floating: list[FloatingIP] = []
    seen: set[ipaddress.IPv4Address] = set()
    for item in body.get("floating_ips") or []:
        if _is_v6(item.get("fixed_ip_address")):
            continue
        fip = FloatingIP(
            id=valid_id(item.get("id"), "floating IP id"),
            floating=_ipv4(item.get("floating_ip_address"), "floating IP address"),
            fixed=_ipv4(item.get("fixed_ip_address"), "fixed IP address"),
        )
        if fip.floating in seen:
            raise InvalidRouter(f"floating IP {fip.floating} given twice")
        seen.add(fip.floating)
        floating.append(fip)
    if gateway is not None and gateway.device in {i.device for i in interfaces}:
        raise InvalidRouter(f"gateway and interface share the device {gateway.device}")
    return Router(router_id, admin_state_up, gateway, interfaces, floating)


# -- rendering -----------------------------------------------------------------------------------


def _quoted(name: str) -> str:
    return '"' + linux.valid_ifname(name) + '"'


def render(router: Router) -> str:
    """The whole NAT table of ``router`` (replacing what exists); without a gateway the table is
    only removed (floating IPs and SNAT both need one)."""
    out = [f"table ip {TABLE} {{}}", f"delete table ip {TABLE}"]
    gateway = router.gateway
    if gateway is None:
        return "\n".join(out) + "\n"
    qg = _quoted(gateway.device)
    out += [
        f"table ip {TABLE} {{",
        "\tchain prerouting {",
        "\t\ttype nat hook prerouting priority dstnat; policy accept;",
    ]
    out += [
        f"\t\tiifname {qg} ip daddr {fip.floating} dnat to {fip.fixed}"
        for fip in router.floating_ips
    ]
    out += [
        "\t}",
        "\tchain postrouting {",
        "\t\ttype nat hook postrouting priority srcnat; policy accept;",
    ]
    out += [
        f"\t\toifname {qg} ip saddr {fip.fixed} snat to {fip.floating}"
        for fip in router.floating_ips
    ]
    subnets = sorted(
        ipaddress.collapse_addresses(i.address.network for i in router.interfaces),
        key=lambda n: (int(n.network_address), n.prefixlen),
    )
    if gateway.enable_snat and subnets:
        elements = ", ".join(str(net) for net in subnets)
        out.append(f"\t\toifname {qg} ip saddr {{ {elements} }} snat to {gateway.snat_ip}")
    out += ["\t}", "}"]
    return "\n".join(out) + "\n"
