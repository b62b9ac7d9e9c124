"""``python -m control.network.service``: serves the agents' RPC endpoint (topic ``network``,
:class:`control.network.rpc.NetworkEndpoint`). Reads network.conf (the network database,
``[rpc] transport_url``) and::

    [network]
    agent_down_time = 75
    rpc_executor_threads = 8
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

from control.common import config as config_mod
from control.common import db, rpc, service
from control.network import models
from control.network.rpc import FANOUT, TOPIC, NetworkEndpoint
from control.network.rpc_dhcp import DhcpEndpoint

CONFIG = "network"


@dataclass
class NetworkRPC:
    server: rpc.RPCServer
    transport: rpc.Transport
    database: db.Database

    def start(self) -> None:
        self.server.start()

    def stop(self) -> None:
        self.server.stop()
        self.server.wait()
        self.transport.close()
        self.database.dispose()


def build(conf: config_mod.Config) -> NetworkRPC:
    database = db.Database(
        conf.get("database", "connection"),
        pool_size=conf.get_int("database", "pool_size", 10),
        isolation_level=models.ISOLATION,
    )
    transport = rpc.Transport(
        conf.get("rpc", "transport_url"), exchange=conf.get("rpc", "exchange", "cirrus")
    )
    # Router and DHCP ports the endpoint binds are announced to the agents on the fanout
    # (rpc.notify logs a failed publish: a broker hiccup never fails the call).
    notifier = rpc.FanoutPublisher(transport, FANOUT, timeout=5.0)
    endpoint = NetworkEndpoint(
        database, conf.get_float("network", "agent_down_time", 75.0), notifier=notifier
    )
    server = rpc.RPCServer(
        transport,
        TOPIC,
        [endpoint, DhcpEndpoint(database, notifier=notifier)],
        executor_threads=conf.get_int("network", "rpc_executor_threads", 8),
    )
    return NetworkRPC(server, transport, database)


def main(argv: list[str] | None = None) -> int:
    return service.run(CONFIG, argv, build, __doc__ or "", prog="cirrus-network-rpc")


if __name__ == "__main__":
    sys.exit(main())
