"""Security groups and anti-spoofing with nftables, rendered as text and applied atomically.

Why two tables: stateful filtering needs conntrack, and conntrack in the ``bridge`` family needs
the kernel's ``nf_conntrack_bridge`` (``CONFIG_NF_CONNTRACK_BRIDGE``), which is missing on the
machines Cirrus is built and tested on ("Protocol error" on any ``ct`` rule). So:

- ``table bridge cirrus`` sees every frame with its bridge ports: anti-spoofing of each port
  (source MAC, ARP sender, source IP, no DHCP/RA server answers from a guest), and it writes
  the port of each frame into the packet mark: bits 16-31 the port the frame came from
  (``prerouting``), bits 0-15 the port it goes to (``forward``, once per output port);
- ``table inet cirrus`` applies the security group rules with conntrack. Bridged IP packets
  reach it because every Cirrus bridge has ``nf_call_iptables``/``nf_call_ip6tables`` on
  (br_netfilter, per bridge: other bridges of the host are untouched); there the ports are only
  known through the mark, which ``vmap``s turn into a jump to the port's chain.

Both tables are replaced in ONE ``nft -f -`` transaction: the kernel applies all of it or none.
The text is built only from validated values: addresses through :mod:`ipaddress`, MACs by
regex, ports and ICMP types as integers, protocols through a fixed map, interface names by
regex; anything else raises :class:`InvalidInput` before nft is run.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from agents.network import linux
from control.network import naming
from control.network.protocols import ICMP_PROTOCOLS, PORT_PROTOCOLS, PROTOCOLS

LOG = logging.getLogger("cirrus.network.nftables")

TABLE = "cirrus"
MAX_PORTS = 0xFFFF
EGRESS_MASK = 0xFFFF0000
INGRESS_MASK = 0x0000FFFF

_PORT_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class InvalidInput(ValueError):
    """A port or rule carried something that cannot be put in a ruleset safely."""


@dataclass(frozen=True)
class Rule:
    direction: str  # "ingress" | "egress"
    version: int  # 4 | 6
    protocol: int | None = None
    port_min: int | None = None
    port_max: int | None = None
    remotes: tuple[IPNetwork, ...] | None = None  # None: any remote


@dataclass
class FilteredPort:
    id: str
    tap: str
    macs: list[str]
    ipv4: list[ipaddress.IPv4Network]
    ipv6: list[ipaddress.IPv6Network]
    rules: list[Rule] = field(default_factory=list)
    index: int = 0

    @property
    def short(self) -> str:
        return self.id.replace("-", "")[:16]


# -- validation of what get_host_ports answers ---------------------------------------------------


def _port_id(value: Any) -> str:
    text = str(value).lower()
    if not _PORT_ID.match(text):
        raise InvalidInput(f"invalid port id {value!r}")
    return text


def _int(value: Any, what: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise InvalidInput(f"invalid {what} {value!r}")
    try:
        number = int(value)
    except ValueError:
        raise InvalidInput(f"invalid {what} {value!r}") from None
    if not low <= number <= high:
        raise InvalidInput(f"{what} {value!r} out of range {low}-{high}")
    return number


def _network(value: Any) -> IPNetwork:
    try:
        return ipaddress.ip_network(str(value), strict=False)
    except ValueError:
        raise InvalidInput(f"invalid IP address or prefix {value!r}") from None


def protocol_number(value: Any) -> int | None:
    if value is None:
        return None
    text = str(value).strip().lower()
    if text in ("", "any"):
        return None
    if text.isdigit():
        return _int(text, "protocol", 0, 255)
    if text not in PROTOCOLS:
        raise InvalidInput(f"unknown protocol {value!r}")
    return PROTOCOLS[text]


def parse_rule(body: Mapping[str, Any]) -> Rule | None:
    """One security group rule as get_host_ports gives it; None when it can match nothing (a
    remote group without members)."""
    direction = body.get("direction")
    if direction not in ("ingress", "egress"):
        raise InvalidInput(f"invalid rule direction {direction!r}")
    ethertype = body.get("ethertype")
    if ethertype not in ("IPv4", "IPv6"):
        raise InvalidInput(f"invalid rule ethertype {ethertype!r}")
    version = 4 if ethertype == "IPv4" else 6
    protocol = protocol_number(body.get("protocol"))
    if protocol in ICMP_PROTOCOLS:
        protocol = 1 if version == 4 else 58  # Neutron: "icmp" on IPv6 means ICMPv6
    port_min = body.get("port_range_min")
    port_max = body.get("port_range_max")
    if protocol in PORT_PROTOCOLS:
        port_min = None if port_min is None else _int(port_min, "port", 1, 65535)
        port_max = None if port_max is None else _int(port_max, "port", 1, 65535)
        if port_min is not None and port_max is None:
            port_max = port_min
        if port_min is None and port_max is not None:
            raise InvalidInput("port_range_max without port_range_min")
        if port_min is not None and port_max is not None and port_min > port_max:
            raise InvalidInput(f"port range {port_min}-{port_max} is empty")
    elif protocol in ICMP_PROTOCOLS:
        port_min = None if port_min is None else _int(port_min, "ICMP type", 0, 255)
        port_max = None if port_max is None else _int(port_max, "ICMP code", 0, 255)
        if port_min is None and port_max is not None:
            raise InvalidInput("ICMP code without ICMP type")
    elif port_min is not None or port_max is not None:
        raise InvalidInput(f"port range given for protocol {body.get('protocol')!r}")
    remotes: tuple[IPNetwork, ...] | None = None
    if body.get("remote_group_id"):
        nets = [_network(ip) for ip in body.get("remote_ips") or []]
        nets = [net for net in nets if net.version == version]
        if not nets:
            return None
        remotes = tuple(_collapse(nets))
    elif body.get("remote_ip_prefix"):
        net = _network(body["remote_ip_prefix"])
        if net.version != version:
            raise InvalidInput(f"remote_ip_prefix {net} is not {ethertype}")
        if net.prefixlen > 0:
            remotes = (net,)
    return Rule(str(direction), version, protocol, port_min, port_max, remotes)


def _collapse(nets: Iterable[IPNetwork]) -> list[Any]:
    """Overlapping elements are an error in an nft interval set: merge them first."""
    v4 = [n for n in nets if isinstance(n, ipaddress.IPv4Network)]
    v6 = [n for n in nets if isinstance(n, ipaddress.IPv6Network)]
    return [*ipaddress.collapse_addresses(v4), *ipaddress.collapse_addresses(v6)]


def link_local(mac: str) -> ipaddress.IPv6Network:
    """The EUI-64 link-local address a guest derives from its MAC."""
    octets = [int(part, 16) for part in mac.split(":")]
    octets[0] ^= 0x02
    eui = octets[:3] + [0xFF, 0xFE] + octets[3:]
    address = ipaddress.IPv6Address(bytes([0xFE, 0x80, 0, 0, 0, 0, 0, 0, *eui]))
    return ipaddress.IPv6Network(address)


def parse_port(port: Mapping[str, Any]) -> FilteredPort | None:
    """A port of get_host_ports; None when port security is off (no filtering at all)."""
    port_id = _port_id(port.get("id"))
    if not port.get("port_security_enabled", True):
        return None
    mac = linux.valid_mac(port.get("mac_address"))
    macs = [mac]
    nets: list[IPNetwork] = []
    for fixed in port.get("fixed_ips") or []:
        nets.append(ipaddress.ip_network(linux.valid_ip(fixed.get("ip_address"))))
    for pair in port.get("allowed_address_pairs") or []:
        nets.append(_network(pair.get("ip_address")))
        if pair.get("mac_address"):
            pair_mac = linux.valid_mac(pair["mac_address"])
            if pair_mac not in macs:
                macs.append(pair_mac)
    collapsed = _collapse(nets)
    rules = [parse_rule(body) for body in port.get("security_group_rules") or []]
    return FilteredPort(
        id=port_id,
        tap=linux.valid_tap(naming.tap(port_id)),
        macs=macs,
        ipv4=[n for n in collapsed if n.version == 4],
        ipv6=[n for n in collapsed if n.version == 6],
        rules=sorted({r for r in rules if r is not None}, key=_rule_key),
    )


def _rule_key(rule: Rule) -> tuple[Any, ...]:
    return (
        rule.direction,
        rule.version,
        -1 if rule.protocol is None else rule.protocol,
        rule.port_min or 0,
        rule.port_max or 0,
        [str(n) for n in rule.remotes or ()],
    )


# -- rendering -----------------------------------------------------------------------------------


def _set(items: Iterable[Any]) -> str:
    return "{ " + ", ".join(str(item) for item in items) + " }"


def _quoted(name: str) -> str:
    return '"' + linux.valid_ifname(name.rstrip("*")) + ('*"' if name.endswith("*") else '"')


def _rule_match(rule: Rule) -> str:
    parts = ["meta nfproto ipv4" if rule.version == 4 else "meta nfproto ipv6"]
    if rule.remotes is not None:
        field = "saddr" if rule.direction == "ingress" else "daddr"
        family = "ip" if rule.version == 4 else "ip6"
        parts.append(f"{family} {field} {_set(rule.remotes)}")
    if rule.protocol is not None:
        if rule.protocol in ICMP_PROTOCOLS and rule.port_min is not None:
            icmp = "icmp" if rule.protocol == 1 else "icmpv6"
            parts.append(f"{icmp} type {rule.port_min}")
            if rule.port_max is not None:
                parts.append(f"{icmp} code {rule.port_max}")
        else:
            parts.append(f"meta l4proto {rule.protocol}")
            if rule.protocol in PORT_PROTOCOLS and rule.port_min is not None:
                if rule.port_min == rule.port_max:
                    parts.append(f"th dport {rule.port_min}")
                else:
                    parts.append(f"th dport {rule.port_min}-{rule.port_max}")
    return " ".join(parts)


def _spoof_chain(port: FilteredPort) -> list[str]:
    macs = _set(port.macs)
    arp_ips = _set(["0.0.0.0", *port.ipv4])  # 0.0.0.0: ARP probes (duplicate address checks)
    ip6 = _collapse([ipaddress.IPv6Network("::/128"), *port.ipv6, *map(link_local, port.macs)])
    lines = [
        f"\tchain spoof-{port.short} {{",
        f"\t\tmeta mark set 0x{port.index << 16:08x}",
        f"\t\tether saddr != {macs} drop",
        f"\t\tether type arp arp saddr ether != {macs} drop",
        f"\t\tether type arp arp saddr ip != {arp_ips} drop",
        "\t\tether type arp accept",
        "\t\tether type ip udp sport 68 udp dport 67 accept",
        "\t\tether type ip udp sport 67 drop",
    ]
    if port.ipv4:
        lines.append(f"\t\tether type ip ip saddr != {_set(port.ipv4)} drop")
    else:
        lines.append("\t\tether type ip drop")
    lines += [
        "\t\tether type ip6 udp sport 547 drop",
        "\t\tether type ip6 icmpv6 type { nd-router-advert, nd-redirect } drop",
        f"\t\tether type ip6 ip6 saddr != {_set(ip6)} drop",
        "\t\tether type { ip, ip6 } accept",
        "\t\tdrop",
        "\t}",
    ]
    return lines


ND_TYPES = (
    "{ nd-neighbor-solicit, nd-neighbor-advert, nd-router-solicit, nd-router-advert, "
    "mld-listener-query, mld-listener-report, mld-listener-done, mld2-listener-report }"
)


def _port_chain(port: FilteredPort, direction: str) -> list[str]:
    """``egress-*`` (from the guest) ends allowed packets with ``return``, so that the guest
    they go to still gets its say in ``ingress-*``, which ends them with ``accept``; DHCP
    (the guest as client) and neighbour discovery always pass; anything else is dropped."""
    verdict = "return" if direction == "egress" else "accept"
    v4 = ("68", "67") if direction == "egress" else ("67", "68")
    v6 = ("546", "547") if direction == "egress" else ("547", "546")
    lines = [
        f"\tchain {direction}-{port.short} {{",
        f"\t\tct state established,related {verdict}",
        f"\t\tmeta nfproto ipv4 udp sport {v4[0]} udp dport {v4[1]} {verdict}",
        f"\t\tmeta nfproto ipv6 udp sport {v6[0]} udp dport {v6[1]} {verdict}",
        f"\t\tmeta nfproto ipv6 icmpv6 type {ND_TYPES} {verdict}",
    ]
    lines += [f"\t\t{_rule_match(r)} {verdict}" for r in port.rules if r.direction == direction]
    return [*lines, "\t\tdrop", "\t}"]


def render(ports: Sequence[Mapping[str, Any]], unfiltered_interfaces: Sequence[str] = ()) -> str:
    """The whole ruleset (both tables, replacing what exists) for the ports of this host.

    ``unfiltered_interfaces``: the other ports of Cirrus bridges (uplinks, ``vxlan-*``) whose
    packets get mark 0 on the way in, so that no stale mark selects a port's chain."""
    filtered: list[FilteredPort] = []
    unfiltered: list[str] = []
    for body in sorted(ports, key=lambda p: str(p.get("id"))):
        parsed = parse_port(body)
        if parsed is None:
            unfiltered.append(linux.valid_tap(naming.tap(_port_id(body.get("id")))))
        else:
            filtered.append(parsed)
    if len(filtered) > MAX_PORTS:
        raise InvalidInput(f"more than {MAX_PORTS} filtered ports on one host")
    for index, port in enumerate(filtered, start=1):
        port.index = index
    zeroed = ["vxlan-*", *unfiltered, *unfiltered_interfaces]

    out = [
        f"table bridge {TABLE} {{}}",
        f"delete table bridge {TABLE}",
        f"table inet {TABLE} {{}}",
        f"delete table inet {TABLE}",
        f"table bridge {TABLE} {{",
        "\tchain prerouting {",
        "\t\ttype filter hook prerouting priority -200; policy accept;",
    ]
    out += [f"\t\tiifname {_quoted(name)} meta mark set 0x00000000" for name in zeroed]
    out += [f'\t\tiifname "{p.tap}" jump spoof-{p.short}' for p in filtered]
    out += [
        "\t}",
        "\tchain forward {",
        "\t\ttype filter hook forward priority -200; policy accept;",
    ]
    out += [
        f'\t\toifname "{p.tap}" meta mark set meta mark & 0x{EGRESS_MASK:08x} | 0x{p.index:08x}'
        for p in filtered
    ]
    out.append("\t}")
    for port in filtered:
        out += _spoof_chain(port)
    out += [
        "}",
        f"table inet {TABLE} {{",
        "\tchain forward {",
        "\t\ttype filter hook forward priority 0; policy accept;",
    ]
    if filtered:
        egress = _set(f"0x{p.index << 16:08x} : jump egress-{p.short}" for p in filtered)
        ingress = _set(f"0x{p.index:08x} : jump ingress-{p.short}" for p in filtered)
        out.append(f"\t\tmeta mark & 0x{EGRESS_MASK:08x} vmap {egress}")
        out.append(f"\t\tmeta mark & 0x{INGRESS_MASK:08x} vmap {ingress}")
    out.append("\t}")
    for port in filtered:
        out += _port_chain(port, "egress")
        out += _port_chain(port, "ingress")
    out.append("}")
    return "\n".join(out) + "\n"


def empty() -> str:
    """The text that removes both tables (the agent's ports all gone)."""
    return "\n".join(
        [
            f"table bridge {TABLE} {{}}",
            f"delete table bridge {TABLE}",
            f"table inet {TABLE} {{}}",
            f"delete table inet {TABLE}",
        ]
    )


# -- applying ------------------------------------------------------------------------------------


class Firewall:
    """Applies rulesets with ``nft -f -`` (text on stdin), inside ``netns`` when given."""

    def __init__(self, netns: str | None = None, runner: linux.Runner = subprocess.run) -> None:
        self.netns = linux.valid_netns(netns) if netns is not None else None
        self._runner = runner
        self.last: str | None = None

    def _argv(self, *args: str) -> list[str]:
        prefix = ["ip", "netns", "exec", self.netns] if self.netns else []
        return [*prefix, "nft", *args]

    def load(self, text: str, check: bool = False) -> None:
        argv = self._argv(*(["-c"] if check else []), "-f", "-")
        proc = self._runner(argv, input=text, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise linux.CommandError(argv, proc.returncode, proc.stderr or "")

    def apply(
        self,
        ports: Sequence[Mapping[str, Any]],
        unfiltered_interfaces: Sequence[str] = (),
        force: bool = False,
    ) -> bool:
        """Replace the ruleset with the one these ports need; False when the last one applied
        was the same (unless ``force``: the periodic resync repairs changes made behind our
        back)."""
        text = render(ports, unfiltered_interfaces) if ports else empty()
        if text == self.last and not force:
            return False
        self.load(text)
        self.last = text
        return True

    def list_table(self, family: str = "bridge") -> str:
        if family not in ("bridge", "inet"):
            raise ValueError(f"unknown family {family!r}")
        argv = self._argv("list", "table", family, TABLE)
        proc = self._runner(argv, capture_output=True, text=True, check=False)
        return str(proc.stdout or "") if proc.returncode == 0 else ""
