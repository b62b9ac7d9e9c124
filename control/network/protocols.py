"""The IP protocols of security group rules, shared by the API (which validates and stores
them) and the network agent (which turns them into nftables rules).

Neutron accepts a protocol as one of these names or as its IANA number (0 to 255).
"""

from __future__ import annotations

# IANA numbers of the protocol names Neutron accepts.
PROTOCOLS = {
    "ah": 51,
    "dccp": 33,
    "egp": 8,
    "esp": 50,
    "gre": 47,
    "hopopt": 0,
    "icmp": 1,
    "igmp": 2,
    "ipip": 4,
    "ipv6-encap": 41,
    "ipv6-frag": 44,
    "ipv6-icmp": 58,
    "icmpv6": 58,
    "ipv6-nonxt": 59,
    "ipv6-opts": 60,
    "ipv6-route": 43,
    "ospf": 89,
    "pgm": 113,
    "rsvp": 46,
    "sctp": 132,
    "tcp": 6,
    "udp": 17,
    "udplite": 136,
    "vrrp": 112,
}
# Protocols whose rules take a port range (tcp, udp, dccp, sctp, udplite).
PORT_PROTOCOLS = frozenset({6, 17, 33, 132, 136})
# ICMP and ICMPv6: their rules take an ICMP type and code in the port range fields.
ICMP_PROTOCOLS = frozenset({1, 58})
