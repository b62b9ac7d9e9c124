"""dnsmasq for one network: its configuration files (pure functions of what ``get_network_ports``
answers) and its process (started in the network's namespace, tracked by its PID file).

Files, in ``<state_path>/<network id>/``: ``host`` (``--dhcp-hostsfile``: ``mac,name,ip`` per
fixed IP), ``opts`` (``--dhcp-optsfile``: router, DNS servers, MTU and classless static routes
per subnet, each line tagged ``tag:subnet-<id>``), ``pid`` and ``cmdline`` (the arguments the
running dnsmasq got: another command line means a restart, other files only a SIGHUP).

Every value written is validated first (UUIDs, MACs, addresses, prefixes, MTU): a file line or an
argument is never built from unchecked text.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import re
import signal
import subprocess
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agents.network import linux

LOG = logging.getLogger("cirrus.dhcp.dnsmasq")

METADATA_IP = "169.254.169.254"
DEVICE_OWNER_DHCP = "network:dhcp"
DEVICE_OWNER_ROUTER_INTF = "network:router_interface"
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")

Runner = Callable[..., "subprocess.CompletedProcess[str]"]


def valid_uuid(value: Any, what: str = "id") -> str:
    text = str(value).lower()
    if not _UUID.match(text):
        raise ValueError(f"invalid {what} {value!r}")
    return text


def valid_lease_time(value: Any) -> str:
    """``--dhcp-range``'s lease time: seconds (at least 120, as dnsmasq) or ``infinite``."""
    text = str(value).strip().lower()
    if text == "infinite":
        return text
    seconds = int(text.rstrip("s"))
    if seconds < 120:
        raise ValueError(f"lease time must be at least 120 seconds, not {value!r}")
    return f"{seconds}s"


def hostname(ip_address: str) -> str:
    """Neutron's host name of an address without DNS integration: ``host-10-0-0-5``."""
    return "host-" + ip_address.replace(".", "-").replace(":", "-")


@dataclass(frozen=True)
class Subnet:
    """A subnet dnsmasq serves (IPv4 with ``enable_dhcp``), validated."""

    id: str
    network: ipaddress.IPv4Network
    gateway_ip: str | None
    dns_nameservers: tuple[str, ...]
    host_routes: tuple[tuple[str, str], ...]  # (destination prefix, next hop)

    @property
    def tag(self) -> str:
        return f"subnet-{self.id}"


def served_subnets(subnets: Iterable[Mapping[str, Any]]) -> list[Subnet]:
    """The subnets of ``get_network_ports`` that dnsmasq serves, in their order."""
    served: list[Subnet] = []
    for body in subnets:
        if not body.get("enable_dhcp") or int(body.get("ip_version", 4)) != 4:
            continue
        net = ipaddress.ip_network(str(body["cidr"]), strict=True)
        if not isinstance(net, ipaddress.IPv4Network):
            continue
        gateway = body.get("gateway_ip")
        routes = tuple(
            (
                str(ipaddress.ip_network(str(r["destination"]), strict=True)),
                linux.valid_ip(r["nexthop"]),
            )
            for r in body.get("host_routes") or []
        )
        served.append(
            Subnet(
                id=valid_uuid(body["id"], "subnet id"),
                network=net,
                gateway_ip=linux.valid_ip(gateway) if gateway else None,
                dns_nameservers=tuple(linux.valid_ip(d) for d in body.get("dns_nameservers") or []),
                host_routes=routes,
            )
        )
    return served


def _subnet_of(subnets: Sequence[Subnet], subnet_id: str) -> Subnet | None:
    return next((s for s in subnets if s.id == subnet_id), None)


def render_hosts(subnets: Sequence[Subnet], ports: Iterable[Mapping[str, Any]]) -> str:
    """``--dhcp-hostsfile``: ``mac,host-<ip with dashes>,ip`` for every fixed IP of an
    administratively up port on a served subnet. A port with bad data is left out (logged)."""
    lines: list[str] = []
    for port in ports:
        if not port.get("admin_state_up", True):
            continue
        try:
            mac = linux.valid_mac(port["mac_address"])
            for fixed in port.get("fixed_ips") or []:
                subnet = _subnet_of(subnets, str(fixed.get("subnet_id")))
                if subnet is None:
                    continue
                address = ipaddress.ip_address(str(fixed["ip_address"]))
                if address not in subnet.network:
                    raise ValueError(f"{address} is not in {subnet.network}")
                lines.append(f"{mac},{hostname(str(address))},{address}")
        except (KeyError, TypeError, ValueError) as exc:
            LOG.error("port %s left out of the DHCP hosts: %s", port.get("id"), exc)
    return "".join(line + "\n" for line in lines)


def router_interfaces(
    subnets: Sequence[Subnet], ports: Iterable[Mapping[str, Any]]
) -> dict[str, str]:
    """subnet id -> the address of a router interface on it (the metadata route's next hop)."""
    found: dict[str, str] = {}
    for port in ports:
        if port.get("device_owner") != DEVICE_OWNER_ROUTER_INTF:
            continue
        for fixed in port.get("fixed_ips") or []:
            subnet = _subnet_of(subnets, str(fixed.get("subnet_id")))
            if subnet is not None and subnet.id not in found:
                try:
                    found[subnet.id] = linux.valid_ip(fixed.get("ip_address"))
                except ValueError:
                    continue
    return found


def render_opts(
    subnets: Sequence[Subnet],
    ports: Iterable[Mapping[str, Any]],
    mtu: int | None = None,
    default_dns: Sequence[str] = (),
) -> str:
    """``--dhcp-optsfile``, per subnet: ``router`` (option 3; empty without a gateway, else
    dnsmasq would offer itself), ``dns-server`` (6; the subnet's, else ``default_dns``, else
    dnsmasq's own address as dnsmasq does by default), ``mtu`` (26) and
    ``classless-static-route`` (121, and Microsoft's 249): the subnet's host routes,
    ``169.254.169.254/32`` via a router interface on the subnet (metadata) and, since a client
    given option 121 ignores option 3, ``0.0.0.0/0`` via the gateway."""
    routers = router_interfaces(subnets, list(ports))
    lines: list[str] = []
    for subnet in subnets:
        tag = f"tag:{subnet.tag}"
        lines.append(
            f"{tag},option:router" + (f",{subnet.gateway_ip}" if subnet.gateway_ip else "")
        )
        dns = subnet.dns_nameservers or tuple(linux.valid_ip(d) for d in default_dns)
        if dns:
            lines.append(f"{tag},option:dns-server," + ",".join(dns))
        if mtu:
            lines.append(f"{tag},option:mtu,{linux.valid_mtu(mtu)}")
        routes: list[tuple[str, str]] = [r for r in subnet.host_routes if r[0] != "0.0.0.0/0"]
        router = routers.get(subnet.id)
        if router and not any(dest == f"{METADATA_IP}/32" for dest, _ in routes):
            routes.append((f"{METADATA_IP}/32", router))
        if routes:
            default = next((r for r in subnet.host_routes if r[0] == "0.0.0.0/0"), None)
            if default is None and subnet.gateway_ip:
                default = ("0.0.0.0/0", subnet.gateway_ip)
            if default is not None:
                routes.append(default)
            text = ",".join(f"{dest},{hop}" for dest, hop in routes)
            lines.append(f"{tag},option:classless-static-route,{text}")
            lines.append(f"{tag},249,{text}")
    return "".join(line + "\n" for line in lines)


def render_argv(
    binary: str,
    interface: str,
    subnets: Sequence[Subnet],
    files: DnsmasqFiles,
    lease_time: Any = 86400,
) -> list[str]:
    """dnsmasq's command line: DHCP only on ``interface``, static leases only (one
    ``--dhcp-range`` per subnet), no system files read, lease database kept in memory."""
    lease = valid_lease_time(lease_time)
    argv = [
        binary,
        "--no-hosts",
        "--no-resolv",
        "--strict-order",
        "--except-interface=lo",
        "--bind-interfaces",
        f"--interface={linux.valid_ifname(interface)}",
        f"--pid-file={files.pid}",
        f"--dhcp-hostsfile={files.hosts}",
        f"--dhcp-optsfile={files.opts}",
        "--leasefile-ro",
        "--conf-file=/dev/null",
    ]
    for subnet in subnets:
        argv.append(
            f"--dhcp-range=set:{subnet.tag},{subnet.network.network_address},static,"
            f"{subnet.network.netmask},{lease}"
        )
    size = sum(s.network.num_addresses for s in subnets)
    argv.append(f"--dhcp-lease-max={max(size, 16)}")
    return argv


# -- the process -------------------------------------------------------------------------------


@dataclass(frozen=True)
class DnsmasqFiles:
    directory: Path

    @property
    def hosts(self) -> Path:
        return self.directory / "host"

    @property
    def opts(self) -> Path:
        return self.directory / "opts"

    @property
    def pid(self) -> Path:
        return self.directory / "pid"

    @property
    def cmdline(self) -> Path:
        return self.directory / "cmdline"


def _write(path: Path, text: str) -> bool:
    """Replace ``path`` atomically with ``text``, world-readable (dnsmasq re-reads it on SIGHUP
    after dropping root). False when it already held exactly that."""
    try:
        if path.read_text() == text:
            return False
    except FileNotFoundError:
        pass
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.chmod(0o644)
    os.replace(tmp, path)
    return True


class Dnsmasq:
    """The dnsmasq of one network, run in ``netns``. Only a process whose PID is in our PID
    file *and* whose command line names that PID file is ever signalled."""

    def __init__(
        self, directory: Path, netns: str, runner: Runner = subprocess.run, timeout: float = 10.0
    ) -> None:
        self.files = DnsmasqFiles(directory)
        self.netns = linux.valid_netns(netns)
        self._runner = runner
        self.timeout = timeout

    def pid(self) -> int | None:
        """The PID of our running dnsmasq, or None."""
        try:
            pid = int(self.files.pid.read_text().strip())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError):
            return None
        if f"--pid-file={self.files.pid}".encode() not in cmdline:
            return None  # a recycled PID: not ours
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            return None
        return None if state == "Z" else pid

    def ensure(self, argv: list[str], hosts: str, opts: str) -> str:
        """Make dnsmasq run with ``argv`` and these files: ``"started"``, ``"restarted"`` (its
        command line changed: ranges, interface), ``"reloaded"`` (SIGHUP: hosts or options
        changed) or ``"unchanged"``."""
        self.files.directory.mkdir(parents=True, exist_ok=True)
        self.files.directory.chmod(0o755)
        changed = _write(self.files.hosts, hosts)
        changed = _write(self.files.opts, opts) or changed
        pid = self.pid()
        try:
            previous = json.loads(self.files.cmdline.read_text())
        except (OSError, ValueError):
            previous = None
        if pid is not None and previous == argv:
            if changed:
                os.kill(pid, signal.SIGHUP)
                return "reloaded"
            return "unchanged"
        outcome = "started"
        if pid is not None:
            self.stop()
            outcome = "restarted"
        self._start(argv)
        return outcome

    def _start(self, argv: list[str]) -> None:
        self.files.pid.unlink(missing_ok=True)
        command = ["ip", "netns", "exec", self.netns, *argv]
        LOG.info("starting %s", command)
        proc = self._runner(command, capture_output=True, text=True, check=False)
        if proc.returncode != 0:  # dnsmasq checks its arguments before forking
            raise linux.CommandError(command, proc.returncode, proc.stderr or "")
        _write(self.files.cmdline, json.dumps(argv))
        deadline = time.monotonic() + self.timeout
        while self.pid() is None:
            if time.monotonic() > deadline:
                raise RuntimeError(f"dnsmasq wrote no PID file {self.files.pid}")
            time.sleep(0.05)

    def stop(self) -> bool:
        """Stop our dnsmasq (SIGTERM, then SIGKILL); False when none was running."""
        pid = self.pid()
        if pid is None:
            self.files.pid.unlink(missing_ok=True)
            return False
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + self.timeout
        while self.pid() == pid and time.monotonic() < deadline:
            time.sleep(0.05)
        if self.pid() == pid:
            os.kill(pid, signal.SIGKILL)
        self.files.pid.unlink(missing_ok=True)
        return True
