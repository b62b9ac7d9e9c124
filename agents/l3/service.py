"""The l3-agent process (``cirrus-l3-agent``): router namespaces, SNAT and floating IPs.

Configuration (``/etc/cirrus/l3-agent.conf``)::

    [DEFAULT]
    host = network1                  # default: the host name
    [rpc]
    transport_url = amqp://...
    exchange = cirrus
    [l3]
    resync_interval = 30             # seconds between full resyncs
    report_interval = 10             # seconds between report_state heartbeats
"""

from __future__ import annotations

import socket
import sys
from dataclasses import dataclass

from agents.l3.agent import L3Agent
from control.common import config as config_mod
from control.common import rpc, service
from control.network.rpc import FANOUT, NetworkAPI

SERVICE = "l3-agent"


def topic(host: str) -> str:
    return f"l3.{host}"


@dataclass
class Agent:
    agent: L3Agent
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
    transport = rpc.Transport(
        conf.get("rpc", "transport_url"), exchange=conf.get("rpc", "exchange", "cirrus")
    )
    agent = L3Agent(
        host,
        NetworkAPI(transport),
        resync_interval=conf.get_float("l3", "resync_interval", 30.0),
        report_interval=conf.get_float("l3", "report_interval", 10.0),
    )
    server = rpc.RPCServer(transport, topic(host), [agent], version="1.0", fanout=FANOUT)
    return Agent(agent, server, transport)


def main(argv: list[str] | None = None) -> int:
    return service.run(SERVICE, argv, build, __doc__ or "", prog="cirrus-l3-agent")


if __name__ == "__main__":
    sys.exit(main())
