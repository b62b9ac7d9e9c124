"""Thin wrappers over iproute2 (``ip``, ``bridge``) for the network agent.

Every command is an argument list (never a shell string); listings are read as JSON (``-j``).
Every method is idempotent: it states what should exist and changes only what differs. Every
input is validated before it reaches a command line: interface names (Cirrus names from
:mod:`control.network.naming`, or a plain Linux interface name for the physical ones), MAC
addresses, IP addresses, VNIs and MTUs.

``netns`` runs everything inside a network namespace (``ip -n NS``, ``bridge -n NS``): the
integration tests simulate hosts with namespaces; the agent on a real host leaves it unset.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import re
import subprocess
from collections.abc import Callable, Sequence
from typing import Any

from control.network import naming

LOG = logging.getLogger("cirrus.network.linux")

VXLAN_PORT = 4789
ZERO_MAC = "00:00:00:00:00:00"

_MAC = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
_IFNAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,14}$")
_BRIDGE = re.compile(r"^brq[0-9a-f\-]{1,11}$")
_TAP = re.compile(r"^tap[0-9a-f\-]{1,11}$")
_VXLAN = re.compile(r"^vxlan-[1-9][0-9]{0,7}$")
_NETNS = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,63}$")

Runner = Callable[..., "subprocess.CompletedProcess[str]"]


class CommandError(Exception):
    """A command failed: the message names the command and what it printed on stderr."""

    def __init__(self, argv: Sequence[str], returncode: int, stderr: str) -> None:
        super().__init__(f"{' '.join(argv)} failed ({returncode}): {stderr.strip()}")
        self.argv = list(argv)
        self.returncode = returncode
        self.stderr = stderr


# -- validation ----------------------------------------------------------------------------------


def valid_mac(mac: Any) -> str:
    """A MAC address in lower case with colons; anything else raises ValueError."""
    value = str(mac).strip().lower()
    if not _MAC.match(value):
        raise ValueError(f"invalid MAC address {mac!r}")
    return value


def valid_ip(address: Any) -> str:
    """An IPv4 or IPv6 address (no prefix) in its canonical form."""
    try:
        return str(ipaddress.ip_address(str(address).strip()))
    except ValueError:
        raise ValueError(f"invalid IP address {address!r}") from None


def valid_ifname(name: Any) -> str:
    """A Linux interface name: 1-15 characters out of letters, digits, ``_ . -``."""
    value = str(name)
    if not _IFNAME.match(value) or value in (".", ".."):
        raise ValueError(f"invalid interface name {name!r}")
    return value


def valid_netns(name: Any) -> str:
    value = str(name)
    if not _NETNS.match(value):
        raise ValueError(f"invalid network namespace name {name!r}")
    return value


def valid_bridge(name: str) -> str:
    if not _BRIDGE.match(name):
        raise ValueError(f"not a Cirrus bridge name: {name!r}")
    return name


def valid_tap(name: str) -> str:
    if not _TAP.match(name):
        raise ValueError(f"not a Cirrus tap name: {name!r}")
    return name


def valid_vxlan(name: str) -> str:
    if not _VXLAN.match(name):
        raise ValueError(f"not a Cirrus VXLAN interface name: {name!r}")
    return name


def is_cirrus_bridge(name: str) -> bool:
    return bool(_BRIDGE.match(name))


def is_cirrus_vxlan(name: str) -> bool:
    return bool(_VXLAN.match(name))


def is_cirrus_tap(name: str) -> bool:
    return bool(_TAP.match(name))


def valid_mtu(mtu: Any) -> int:
    value = int(mtu)
    if not 68 <= value <= 65535:
        raise ValueError(f"invalid MTU {mtu!r}")
    return value


def vlan_name(interface: str, vlan_id: int) -> str:
    """The VLAN subinterface of a physical interface: ``<iface>.<vid>`` (must fit 15 chars)."""
    if not 1 <= int(vlan_id) <= 4094:
        raise ValueError(f"invalid VLAN id {vlan_id!r}")
    return valid_ifname(f"{valid_ifname(interface)}.{int(vlan_id)}")


# -- iproute2 --------------------------------------------------------------------------------------


class IpRoute:
    """The host's (or one namespace's) links, bridges and FDB, through ``ip`` and ``bridge``."""

    def __init__(self, netns: str | None = None, runner: Runner = subprocess.run) -> None:
        self.netns = valid_netns(netns) if netns is not None else None
        self._runner = runner

    def run(self, tool: str, args: Sequence[str], stdin: str | None = None) -> str:
        """Run ``tool`` (``ip``, ``bridge``) with ``args``; stdout, or :class:`CommandError`."""
        if tool not in ("ip", "bridge"):
            raise ValueError(f"unknown tool {tool!r}")
        argv = [tool, *(["-n", self.netns] if self.netns else []), *args]
        LOG.debug("running %s", argv)
        proc = self._runner(argv, input=stdin, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise CommandError(argv, proc.returncode, proc.stderr or "")
        return str(proc.stdout or "")

    def _json(self, tool: str, args: Sequence[str]) -> list[dict[str, Any]]:
        out = self.run(tool, ["-j", *args]).strip()
        if not out:
            return []
        data = json.loads(out)
        return [item for item in data if isinstance(item, dict)]

    # -- links ---------------------------------------------------------------------------------

    def links(self) -> dict[str, dict[str, Any]]:
        """Every link by name, with details (``ip -j -d link show``)."""
        return {link["ifname"]: link for link in self._json("ip", ["-d", "link", "show"])}

    def link(self, name: str) -> dict[str, Any] | None:
        try:
            found = self._json("ip", ["-d", "link", "show", "dev", valid_ifname(name)])
        except CommandError as exc:
            if "does not exist" in exc.stderr or "Cannot find device" in exc.stderr:
                return None
            raise
        return found[0] if found else None

    def delete_link(self, name: str) -> bool:
        """Delete a Cirrus bridge, VXLAN or VLAN interface; False when it was already gone."""
        if self.link(valid_ifname(name)) is None:
            return False
        self.run("ip", ["link", "del", "dev", name])
        return True

    def set_up(self, name: str, mtu: int | None = None) -> None:
        args = ["link", "set", "dev", valid_ifname(name)]
        if mtu is not None:
            args += ["mtu", str(valid_mtu(mtu))]
        self.run("ip", [*args, "up"])

    def ensure_bridge(self, name: str, mtu: int | None = None) -> bool:
        """A Linux bridge, up, STP off, forwarding at once, its traffic handed to the ``inet``
        family hooks (``nf_call_iptables``: see nftables.py). True when it was created."""
        valid_bridge(name)
        created = False
        if self.link(name) is None:
            self.run(
                "ip",
                [
                    "link",
                    "add",
                    "name",
                    name,
                    "type",
                    "bridge",
                    "stp_state",
                    "0",
                    "forward_delay",
                    "0",
                ],
            )
            created = True
        self.run(
            "ip",
            ["link", "set", "dev", name, "type", "bridge", "nf_call_iptables", "1",
             "nf_call_ip6tables", "1"],
        )  # fmt: skip
        self.set_up(name, mtu)
        return created

    def ensure_vxlan(
        self,
        vni: int,
        local_ip: str,
        bridge: str,
        mtu: int | None = None,
        device: str | None = None,
    ) -> bool:
        """``vxlan-<vni>``: unicast only (no group, ``nolearning``: the FDB is written by the
        agent), UDP 4789 from ``local_ip``, a port of ``bridge``. A VXLAN interface of that name
        with other parameters is recreated. True when it was (re)created."""
        name = naming.vxlan(int(vni))
        local = valid_ip(local_ip)
        valid_bridge(bridge)
        existing = self.link(name)
        if existing is not None and not _vxlan_matches(existing, int(vni), local):
            LOG.info("recreating %s: its parameters changed", name)
            self.run("ip", ["link", "del", "dev", name])
            existing = None
        created = False
        if existing is None:
            args = ["link", "add", name, "type", "vxlan", "id", str(int(vni)), "local", local]
            args += ["dstport", str(VXLAN_PORT), "nolearning"]
            if device:
                args += ["dev", valid_ifname(device)]
            self.run("ip", args)
            created = True
        self.attach(name, bridge, mtu)
        return created

    def ensure_vlan(self, interface: str, vlan_id: int) -> str:
        """The VLAN subinterface ``<iface>.<vid>`` of a physical interface; its name."""
        name = vlan_name(interface, vlan_id)
        if self.link(name) is None:
            self.run(
                "ip",
                ["link", "add", "link", interface, "name", name, "type", "vlan", "id",
                 str(int(vlan_id))],
            )  # fmt: skip
        self.set_up(name)
        return name

    def attach(self, name: str, bridge: str, mtu: int | None = None) -> None:
        """Make ``name`` a port of ``bridge`` (and up, with ``mtu`` when given)."""
        valid_bridge(bridge)
        args = ["link", "set", "dev", valid_ifname(name)]
        if mtu is not None:
            args += ["mtu", str(valid_mtu(mtu))]
        self.run("ip", [*args, "master", bridge, "up"])

    def detach(self, name: str) -> None:
        """Take ``name`` out of whatever bridge it is in (nothing when it is in none)."""
        link = self.link(valid_ifname(name))
        if link is not None and link.get("master"):
            self.run("ip", ["link", "set", "dev", name, "nomaster"])

    # -- forwarding database -------------------------------------------------------------------

    def fdb(self, device: str) -> list[dict[str, Any]]:
        """The FDB entries of a VXLAN interface that carry a remote VTEP (``dst``)."""
        entries = self._json("bridge", ["fdb", "show", "dev", valid_vxlan(device)])
        return [e for e in entries if e.get("dst")]

    def fdb_append(self, device: str, mac: str, dst: str) -> None:
        """A flooding entry (``00:00:00:00:00:00``): BUM traffic goes to ``dst`` too."""
        self.run(
            "bridge",
            ["fdb", "append", valid_mac(mac), "dev", valid_vxlan(device), "dst", valid_ip(dst)],
        )

    def fdb_replace(self, device: str, mac: str, dst: str) -> None:
        """``mac`` lives behind the VTEP ``dst``."""
        self.run(
            "bridge",
            ["fdb", "replace", valid_mac(mac), "dev", valid_vxlan(device), "dst", valid_ip(dst)],
        )

    def fdb_delete(self, device: str, mac: str, dst: str) -> None:
        self.run(
            "bridge",
            ["fdb", "del", valid_mac(mac), "dev", valid_vxlan(device), "dst", valid_ip(dst)],
        )

    def sync_fdb(self, device: str, wanted: set[tuple[str, str]]) -> tuple[int, int]:
        """Make the remote entries of ``device`` exactly ``wanted`` ((mac, dst) pairs; the zero
        MAC floods). Returns (added, removed)."""
        wanted = {(valid_mac(mac), valid_ip(dst)) for mac, dst in wanted}
        current = {(str(e["mac"]).lower(), str(e["dst"])) for e in self.fdb(device)}
        removed = 0
        for mac, dst in sorted(current - wanted):
            self.fdb_delete(device, mac, dst)
            removed += 1
        added = 0
        for mac, dst in sorted(wanted - current):
            if mac == ZERO_MAC:
                self.fdb_append(device, mac, dst)
            else:
                self.fdb_replace(device, mac, dst)
            added += 1
        return added, removed


def _vxlan_matches(link: dict[str, Any], vni: int, local: str) -> bool:
    info = link.get("linkinfo") or {}
    data = info.get("info_data") or {}
    return (
        info.get("info_kind") == "vxlan"
        and data.get("id") == vni
        and data.get("local") == local
        and data.get("port") == VXLAN_PORT
        and data.get("learning") is False
        and not data.get("group")
    )
