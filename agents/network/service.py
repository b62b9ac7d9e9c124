"""The network agent process (``cirrus-network-agent``): wires this host's ports.

Configuration (``/etc/cirrus/network-agent.conf``)::

    [DEFAULT]
    host = compute1                  # default: the host name; must match binding:host_id
    [rpc]
    transport_url = amqp://...
    exchange = cirrus
    [agent]
    local_ip = 10.0.0.11             # this host's VTEP address (VXLAN networks need it)
    physical_interface_mappings = physnet1:eth1   # flat on eth1, VLAN on eth1.<vid>
    resync_interval = 30             # seconds between full resyncs
    report_interval = 10             # seconds between report_state heartbeats
"""

from __future__ import annotations

import socket
import sys
from dataclasses import dataclass

from agents.network import linux, nftables
from agents.network.agent import NetworkAgent, parse_mappings
from control.common import config as config_mod
from control.common import rpc, service
from control.network.rpc import FANOUT, NetworkAPI

SERVICE = "network-agent"


def topic(host: str) -> str:
    return f"network.{host}"


@dataclass
class Agent:
    agent: NetworkAgent
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
        mappings = parse_mappings(conf.get_list("agent", "physical_interface_mappings"))
        local_ip = conf.get_optional("agent", "local_ip")
        if local_ip:
            linux.valid_ip(local_ip)
    except ValueError as exc:
        raise config_mod.ConfigError(f"{conf.source}: [agent] {exc}") from None
    transport = rpc.Transport(
        conf.get("rpc", "transport_url"), exchange=conf.get("rpc", "exchange", "cirrus")
    )
    agent = NetworkAgent(
        host,
        NetworkAPI(transport),
        linux.IpRoute(),
        nftables.Firewall(),
        local_ip=local_ip,
        interface_mappings=mappings,
        resync_interval=conf.get_float("agent", "resync_interval", 30.0),
        report_interval=conf.get_float("agent", "report_interval", 10.0),
    )
    server = rpc.RPCServer(transport, topic(host), [agent], version="1.0", fanout=FANOUT)
    return Agent(agent, server, transport)


def main(argv: list[str] | None = None) -> int:
    return service.run(SERVICE, argv, build, __doc__ or "", prog="cirrus-network-agent")


if __name__ == "__main__":
    sys.exit(main())
