"""Names of the host-side network objects, shared by every agent that builds or plugs them (the
network, dhcp and l3 agents, and the compute agent's libvirt driver plugging a guest's NIC).
They follow Neutron's Linux bridge names, so an operator who knows Neutron reads them at once.

Linux limits interface names to 15 characters (IFNAMSIZ - 1); every name here fits.
"""

from __future__ import annotations

IFNAME_MAX = 15


def bridge(network_id: str) -> str:
    """The Linux bridge of a network on a host: ``brq`` + the first 11 characters of its id."""
    return "brq" + network_id[:11]


def tap(port_id: str) -> str:
    """A guest NIC's tap device (created by QEMU through libvirt): ``tap`` + 11 of the port id."""
    return "tap" + port_id[:11]


def vxlan(segmentation_id: int) -> str:
    """The VXLAN interface of a VXLAN network's segment: ``vxlan-<VNI>`` (VNI < 2**24)."""
    if not 0 < segmentation_id < 2**24:
        raise ValueError(f"VXLAN VNI out of range: {segmentation_id}")
    return f"vxlan-{segmentation_id}"


def dhcp_namespace(network_id: str) -> str:
    """The network namespace of a network's dnsmasq: ``qdhcp-<network id>``."""
    return "qdhcp-" + network_id


def router_namespace(router_id: str) -> str:
    """The network namespace of a router: ``qrouter-<router id>``."""
    return "qrouter-" + router_id


def device(prefix: str, port_id: str) -> str:
    """A port's device inside a namespace: ``ns-`` (DHCP), ``qr-`` (router interface) or ``qg-``
    (router gateway) + 11 of the port id."""
    if prefix not in ("ns-", "qr-", "qg-"):
        raise ValueError(f"unknown device prefix {prefix!r}")
    return prefix + port_id[:11]
