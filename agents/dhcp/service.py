"""The DHCP agent process (``cirrus-dhcp-agent``): dnsmasq per network on a network node.

Configuration (``/etc/cirrus/dhcp-agent.conf``)::

    [DEFAULT]
    host = network1                  # default: the host name; the DHCP ports are bound to it
    [rpc]
    transport_url = amqp://...
    exchange = cirrus
    [dhcp]
    state_path = /var/lib/cirrus-dhcp   # per network: host/opts files, PID file (readable by
                                     # dnsmasq once it runs as nobody: not under /var/lib/cirrus)
    lease_time = 86400               # seconds, or "infinite"
    dnsmasq = dnsmasq                # the binary (package dnsmasq-base)
    dns_servers =                    # offered when a subnet has no dns_nameservers
    resync_interval = 30             # seconds between full resyncs
    report_interval = 10             # seconds between report_state heartbeats
"""

from __future__ import annotations

import socket
import sys
from dataclasses import dataclass

from agents.dhcp import agent as agent_mod
from agents.dhcp import dnsmasq
from agents.network import linux
from control.common import config as config_mod
from control.common import rpc, service
from control.network.rpc import FANOUT
from control.network.rpc_dhcp import DhcpAPI

SERVICE = "dhcp-agent"


def topic(host: str) -> str:
    return f"{agent_mod.TOPIC}.{host}"


@dataclass
class Agent:
    agent: agent_mod.DhcpAgent
    server: rpc.RPCServer
    transport: rpc.Transport

    def start(self) -> None:
        self.server.start()
        self.agent.connected = lambda: self.server.wait_ready(0)
        self.agent.start()

    def stop(self) -> None:
        self.agent.stop()
        self.server.stop()
        self.server.wait()
        self.transport.close()


def build(conf: config_mod.Config) -> Agent:
    host = conf.get("DEFAULT", "host", socket.gethostname())
    try:
        lease_time = dnsmasq.valid_lease_time(conf.get("dhcp", "lease_time", "86400"))
        dns_servers = [linux.valid_ip(d) for d in conf.get_list("dhcp", "dns_servers", [])]
    except ValueError as exc:
        raise config_mod.ConfigError(f"{conf.source}: [dhcp] {exc}") from None
    transport = rpc.Transport(
        conf.get("rpc", "transport_url"), exchange=conf.get("rpc", "exchange", "cirrus")
    )
    agent = agent_mod.DhcpAgent(
        host,
        DhcpAPI(transport),
        linux.IpRoute(),
        conf.get("dhcp", "state_path", "/var/lib/cirrus-dhcp"),
        dnsmasq_binary=conf.get("dhcp", "dnsmasq", "dnsmasq"),
        lease_time=lease_time,
        dns_servers=dns_servers,
        resync_interval=conf.get_float("dhcp", "resync_interval", 30.0),
        report_interval=conf.get_float("dhcp", "report_interval", 10.0),
    )
    server = rpc.RPCServer(transport, topic(host), [agent], version="1.0", fanout=FANOUT)
    return Agent(agent, server, transport)


def main(argv: list[str] | None = None) -> int:
    return service.run(SERVICE, argv, build, __doc__ or "", prog="cirrus-dhcp-agent")


if __name__ == "__main__":
    sys.exit(main())
